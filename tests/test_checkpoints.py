"""checkpoint:PATH models and safe reading of weights files, on files written in the genuine
on-disk layouts (torch.save state dicts and wrappers, DataParallel / torch.compile prefixes, the
robustness library's AttackerModel layout, safetensors, legacy pickles, TorchScript, whole
pickled modules), and every kind of bad input: one line, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch
from click.testing import CliRunner

from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench.models.checkpoint_reading import read_checkpoint
from pagbench.cli import build_cli
from pagbench.errors import PagbenchError
from pagbench.models.loading import build_architecture, load_model

from .malicious import Malicious

ZOO = "resnet18-synthetic-standard-0"  # a small CIFAR-style ResNet18, never trained here


def _zoo_width():
    from pagbench_plugins.zoo.recipes import DATASET_DEFAULTS

    return DATASET_DEFAULTS["synthetic"]["width"]


@pytest.fixture(scope="module")
def dataset():
    from pagbench.extensions.registry import datasets

    return datasets().get("synthetic").factory(None)


@pytest.fixture(scope="module")
def images(dataset):
    return dataset.split("test").batch(list(range(4))).images


@pytest.fixture(scope="module")
def source(dataset):
    """A zoo ResNet18 with non-default weights and BatchNorm statistics: what a checkpoint holds."""
    module, _ = build_architecture(ZOO, dataset)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() > 3:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return module.eval()


def _state(module, drop_normalizer=False):
    state = {key: value.clone() for key, value in module.state_dict().items()}
    if drop_normalizer:
        state = {key: value for key, value in state.items() if not key.startswith("normalize.")}
    return state


def _load(name, dataset, **options):
    return load_model(name, dataset, "cpu", options)


def _same_outputs(loaded, reference, images):
    with torch.no_grad():
        assert torch.allclose(loaded.module(images), reference(images), atol=1e-5)


LAYOUTS = {
    "raw state dict": lambda s: s,
    "state_dict wrapper": lambda s: {"state_dict": s, "epoch": 3, "best_acc": 0.9},
    "model wrapper": lambda s: {"model": s, "optimizer": {"state": {}, "param_groups": []}},
    "ema wrapper": lambda s: {"ema": s},
    "net wrapper": lambda s: {"net": s, "acc": 91.2},
    "DataParallel prefix": lambda s: {f"module.{k}": v for k, v in s.items()},
    "model. prefix": lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}},
    "torch.compile of DataParallel": lambda s: {f"_orig_mod.module.{k}": v for k, v in s.items()},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_checkpoint_layouts_load_exactly(layout, tmp_path, dataset, source, images):
    path = tmp_path / "weights.pt"
    torch.save(LAYOUTS[layout](_state(source)), path)
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO)
    _same_outputs(loaded, source, images)
    card = loaded.card
    assert card.architecture.endswith(f"({ZOO})") and card.requires_finetuning is False
    assert card.provenance["sha256"] and card.provenance["format"] == "torch"


def test_legacy_format_and_argparse_namespace_load_safely(tmp_path, dataset, source, images):
    import argparse

    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": _state(source), "args": argparse.Namespace(lr=0.1)}, path, _use_new_zipfile_serialization=False)
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO)
    assert loaded.card.provenance["format"] == "torch-legacy"
    _same_outputs(loaded, source, images)


def test_safetensors_recognised_by_content_not_name(tmp_path, dataset, source, images):
    from safetensors.torch import save_file

    path = tmp_path / "weights.bin"  # misleading extension on purpose
    save_file({k: v.contiguous() for k, v in _state(source).items()}, str(path))
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO)
    assert loaded.card.provenance["format"] == "safetensors"
    _same_outputs(loaded, source, images)


def test_robustness_library_layout_keeps_model_drops_attacker_uses_normalizer(tmp_path, dataset, source, images):
    network = _state(source, drop_normalizer=True)
    mean, std = torch.tensor([0.4, 0.45, 0.5]), torch.tensor([0.2, 0.25, 0.3])
    state = {f"module.model.{k}": v for k, v in network.items()}
    state.update({f"module.attacker.model.{k}": torch.zeros_like(v) for k, v in network.items()})
    state.update({
        "module.normalizer.new_mean": mean.view(3, 1, 1), "module.normalizer.new_std": std.view(3, 1, 1),
        "module.attacker.normalize.new_mean": mean.view(3, 1, 1), "module.attacker.normalize.new_std": std.view(3, 1, 1),
    })
    path = tmp_path / "robust.pt"
    torch.save({"model": state, "optimizer": {}, "schedule": None, "epoch": 150}, path)
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO)
    provenance = loaded.card.provenance
    assert "robustness library" in provenance["layout"] and "normalizer" in provenance["normalization"]
    assert provenance["mean"] == pytest.approx(mean.tolist()) and provenance["std"] == pytest.approx(std.tolist())
    assert "defaults_kept_for" not in provenance
    reference = source
    reference.normalize.mean.copy_(mean.view(1, 3, 1, 1))
    reference.normalize.std.copy_(std.view(1, 3, 1, 1))
    _same_outputs(loaded, reference, images)  # the attacker's zero weights were not used


def test_robustness_library_layout_keeps_the_library_clamp_and_records_it(tmp_path, dataset, source, images):
    """The library's normaliser clamps to [0,1] first: outside [0,1] the loaded model equals
    clamp-then-normalise (zero gradient at saturated pixels); other layouts are not clamped."""
    from pagbench_plugins.robustness_models.layout import CLAMP_KEPT

    network = _state(source, drop_normalizer=True)
    mean, std = torch.tensor([0.4, 0.45, 0.5]), torch.tensor([0.2, 0.25, 0.3])
    state = {f"model.{k}": v for k, v in network.items()}  # saved without DataParallel's module.
    state.update({"normalizer.new_mean": mean.view(3, 1, 1), "normalizer.new_std": std.view(3, 1, 1)})
    path = tmp_path / "robust.pt"
    torch.save({"model": state, "epoch": 2}, path)
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO)
    assert loaded.card.provenance["input_clamp"] == CLAMP_KEPT
    perturbed = (images + 0.3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    import copy

    reference = copy.deepcopy(source)  # the module-scoped fixture stays as it is
    reference.normalize.mean.copy_(mean.view(1, 3, 1, 1))
    reference.normalize.std.copy_(std.view(1, 3, 1, 1))
    with torch.no_grad():
        assert torch.allclose(loaded.module(perturbed), reference(perturbed.clamp(0, 1)), atol=1e-5)
    (gradient,) = torch.autograd.grad(loaded.module(perturbed).sum(), perturbed)
    assert bool((gradient[(perturbed <= 0) | (perturbed >= 1)] == 0).all())
    plain = tmp_path / "plain.pt"
    torch.save(_state(source), plain)
    assert "input_clamp" not in _load(f"checkpoint:{plain}", dataset, arch=ZOO).card.provenance


def test_missing_normalisation_keeps_the_architecture_default_and_says_so(tmp_path, dataset, source):
    path = tmp_path / "plain.pt"
    torch.save(_state(source, drop_normalizer=True), path)
    card = _load(f"checkpoint:{path}", dataset, arch=ZOO).card
    assert card.provenance["normalization"] == "architecture default"
    assert set(card.provenance["defaults_kept_for"]) == {"normalize.mean", "normalize.std"}


def test_explicit_mean_std_options_override(tmp_path, dataset, source):
    path = tmp_path / "plain.pt"
    torch.save(_state(source), path)
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO, mean="0.1,0.2,0.3", std="0.5")
    assert loaded.module.normalize.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert loaded.module.normalize.std.flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert loaded.card.provenance["normalization"] == "model options mean/std"


def test_strict_report_names_missing_unexpected_and_mismatched_keys(tmp_path, dataset, source):
    state = _state(source)
    state.pop("stem.0.weight")
    state["extra.weight"] = torch.zeros(3)
    state["stages.0.0.conv1.weight"] = torch.zeros(1, 2, 3, 3)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(PagbenchError) as caught:
        _load(f"checkpoint:{path}", dataset, arch=ZOO)
    message = str(caught.value)
    assert "\n" not in message
    assert "1 missing key: stem.0.weight" in message
    assert "1 unexpected key: extra.weight" in message
    width = _zoo_width()
    assert f"1 shape mismatch: stages.0.0.conv1.weight (checkpoint 1x2x3x3, model {width}x{width}x3x3)" in message


def test_class_count_mismatch_is_refused_unless_the_head_is_replaced(tmp_path, dataset, source, images):
    state = _state(source)
    state["head.weight"], state["head.bias"] = torch.randn(100, 8 * _zoo_width()), torch.randn(100)
    path = tmp_path / "cifar100.pt"
    torch.save(state, path)
    with pytest.raises(PagbenchError, match=r"100-class classifier \(head.weight, head.bias\) but the dataset has 10 classes.*--replace-head"):
        _load(f"checkpoint:{path}", dataset, arch=ZOO)
    loaded = _load(f"checkpoint:{path}", dataset, arch=ZOO, replace_head=True)
    assert loaded.card.requires_finetuning is True
    assert loaded.card.provenance["replaced_head"] == ["head.weight", "head.bias"]
    assert loaded.card.provenance["checkpoint_classes"] == 100
    assert torch.equal(loaded.module.stem[0].weight, source.stem[0].weight)
    again = _load(f"checkpoint:{path}", dataset, arch=ZOO, replace_head=True)
    assert torch.equal(again.module.head.weight, loaded.module.head.weight)  # seeded: reproducible


def test_pickled_code_never_runs_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Malicious(str(marker))}, path)
    with pytest.raises(PagbenchError, match="pickled Python objects .*plant.*--trust-checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


class _Linear(torch.nn.Module):
    """A whole model as people pickle it: takes [0,1] images of the synthetic dataset."""

    def __init__(self, classes=10):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 16 * 16, classes)

    def forward(self, images):
        return self.fc(images.flatten(1))


def test_whole_module_needs_trust_then_loads_without_arch(tmp_path, dataset, images):
    torch.manual_seed(0)
    module = _Linear()
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    with pytest.raises(PagbenchError, match="--trust-checkpoint"):
        _load(f"checkpoint:{path}", dataset)
    loaded = _load(f"checkpoint:{path}", dataset, trust_checkpoint=True)
    _same_outputs(loaded, module, images)
    assert loaded.card.architecture == "_Linear" and loaded.card.provenance["trusted_load"] is True


class AttackerModel(_Linear):
    """Named like the robustness library's wrapper, whose forward returns (logits, input)."""

    def forward(self, images):
        return super().forward(images), images


class _Pair(AttackerModel):
    pass


def test_whole_module_with_tuple_output(tmp_path, dataset, images):
    from pagbench.models.loading import check_output_shape

    torch.manual_seed(0)
    attacker, pair = AttackerModel(), _Pair()
    torch.save(attacker, tmp_path / "attacker.pt")
    torch.save(pair, tmp_path / "pair.pt")
    loaded = _load(f"checkpoint:{tmp_path / 'attacker.pt'}", dataset, trust_checkpoint=True)  # recognised by its class
    assert "AttackerModel" in loaded.card.provenance["output"]
    _same_outputs(loaded, lambda x: attacker(x)[0], images)
    unknown = _load(f"checkpoint:{tmp_path / 'pair.pt'}", dataset, trust_checkpoint=True)
    with pytest.raises(PagbenchError, match=r"returned a tuple.*--model-option output=0"):
        check_output_shape(unknown.module, dataset, "cpu")
    chosen = _load(f"checkpoint:{tmp_path / 'pair.pt'}", dataset, trust_checkpoint=True, output="0")
    _same_outputs(chosen, lambda x: pair(x)[0], images)
    for bad, message in (("x", "expected the integer index"), ("-1", "index >= 0")):
        with pytest.raises(PagbenchError, match=message):
            _load(f"checkpoint:{tmp_path / 'pair.pt'}", dataset, trust_checkpoint=True, output=bad)


def test_non_finite_normalisation_buffers_are_refused(tmp_path, dataset, source):
    state = _state(source)
    state["normalize.mean"] = torch.tensor([0.5, float("nan"), 0.5]).view(1, 3, 1, 1)
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(PagbenchError, match="non-finite"):
        _load(f"checkpoint:{tmp_path / 'nan.pt'}", dataset, arch=ZOO)


def test_a_flipped_bit_in_a_checkpoint_is_refused(tmp_path, dataset, source):
    path = tmp_path / "flipped.pt"
    torch.save(_state(source), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
        offset = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.file_size // 2
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(PagbenchError, match="damaged zip archive"):
        _load(f"checkpoint:{path}", dataset, arch=ZOO)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_needs_trust(tmp_path, dataset, images):
    torch.manual_seed(0)
    module = _Linear()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    with pytest.raises(PagbenchError, match="TorchScript program.*--trust-checkpoint"):
        _load(f"checkpoint:{path}", dataset)
    loaded = _load(f"checkpoint:{path}", dataset, trust_checkpoint=True)
    assert loaded.card.provenance["format"] == "torchscript"
    _same_outputs(loaded, module, images)


def test_state_dict_without_arch_asks_for_one(tmp_path, dataset, source):
    path = tmp_path / "plain.pt"
    torch.save(_state(source), path)
    with pytest.raises(PagbenchError, match="name its architecture with --arch"):
        _load(f"checkpoint:{path}", dataset)


def test_arch_from_a_plugin_model_without_an_architecture_builder(tmp_path, register_plugin, dataset, images):
    class Plugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            register(ModelEntry("linear-probe", lambda name, dataset, device: _Linear(), ModelCard("linear", "synthetic")))

    register_plugin(Plugin(), name="linear-plugin")
    torch.manual_seed(3)
    trained = _Linear()
    path = tmp_path / "probe.safetensors"
    from safetensors.torch import save_file

    save_file(trained.state_dict(), str(path))
    loaded = _load(f"checkpoint:{path}", dataset, arch="linear-probe")
    _same_outputs(loaded, trained, images)
    assert loaded.card.architecture == "linear (linear-probe)"


# ------------------------------------------------------------------------------------ bad files
def _truncated_zip(path, source):
    torch.save(_state(source), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_legacy(path, source):
    torch.save(_state(source), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _truncated_safetensors(path, source):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in _state(source).items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _npz(path, source):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("arr_0.npy", b"\x93NUMPY")


BAD_FILES = {
    "missing": (lambda path, source: None, "does not exist"),
    "empty": (lambda path, source: path.write_bytes(b""), "is empty"),
    "directory": (lambda path, source: path.mkdir(), "is a directory"),
    "html": (lambda path, source: path.write_text("\n<!DOCTYPE html><html><head><title>Sign in</title></head></html>"), "is an HTML page"),
    "git lfs pointer": (lambda path, source: path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n"), "Git LFS pointer"),
    "text": (lambda path, source: path.write_text("404: Not Found"), "is a text file (starting '404: Not Found')"),
    "random bytes": (lambda path, source: path.write_bytes(bytes(range(1, 256)) * 4), "not a recognised weights format"),
    "truncated zip": (_truncated_zip, "truncated or corrupt"),
    "truncated legacy pickle": (_truncated_legacy, "truncated or corrupt"),
    "truncated safetensors": (_truncated_safetensors, "truncated safetensors"),
    "zip that is not torch": (_npz, "not a PyTorch checkpoint"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_are_one_line_errors(kind, tmp_path, source):
    make, message = BAD_FILES[kind]
    path = tmp_path / "weights.pth"
    make(path, source)
    with pytest.raises(PagbenchError) as caught:
        read_checkpoint(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# ------------------------------------------------------------------------------- CLI end to end
@pytest.fixture
def cli_files(tmp_path, source):
    files = {}
    files["good"] = tmp_path / "good.pt"
    torch.save(_state(source), files["good"])
    files["html"] = tmp_path / "page.pth"
    files["html"].write_text("<html><body>Please log in</body></html>")
    files["truncated"] = tmp_path / "cut.pt"
    _truncated_zip(files["truncated"], source)
    files["mismatched"] = tmp_path / "mismatched.pt"
    torch.save({f"backbone.{k}": v for k, v in _state(source).items()}, files["mismatched"])
    files["pickle"] = tmp_path / "whole.pt"
    torch.save(_Linear(), files["pickle"])
    files["wrong-classes"] = tmp_path / "seven.pt"
    torch.save(_Linear(classes=7), files["wrong-classes"])
    return files


CLI_CASES = {
    "missing file": (["--model", "checkpoint:{missing}", "--arch", ZOO], "does not exist"),
    "wrong architecture": (["--model", "checkpoint:{good}", "--arch", "timm:resnet18", "--model-option", "input_size=32"], "is the architecture right?"),
    "unknown architecture": (["--model", "checkpoint:{good}", "--arch", "resnet-19"], "unknown model 'resnet-19'"),
    "mismatched keys": (["--model", "checkpoint:{mismatched}", "--arch", ZOO], "unexpected keys"),
    "truncated file": (["--model", "checkpoint:{truncated}", "--arch", ZOO], "truncated or corrupt"),
    "html page": (["--model", "checkpoint:{html}", "--arch", ZOO], "is an HTML page"),
    "pickle without trust": (["--model", "checkpoint:{pickle}"], "--trust-checkpoint"),
    "wrong number of classes": (["--model", "checkpoint:{wrong-classes}", "--trust-checkpoint"], "model output has shape (1, 7)"),
    "weights for a model that takes none": (["--model", "bayes", "--weights", "{good}"], "model 'bayes' takes no model options (got --weights)"),
    "unknown model option": (["--model", "checkpoint:{good}", "--arch", ZOO, "--model-option", "colour=red"], "takes no model options (got --model-option colour)"),
    "bad card option": (["--model", "bayes", "--model-option", "card.colour=red"], "not a model card field"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_line_exit_2_nothing_written(case, cli_files, tmp_path):
    args, message = CLI_CASES[case]
    names = {key: str(value) for key, value in cli_files.items()} | {"missing": str(tmp_path / "absent.pt")}
    args = [arg.format(**names) for arg in args]
    output_dir = tmp_path / "results"
    result = CliRunner().invoke(
        build_cli(), ["evaluate", *args, "--num-images", "4", "--no-progress", "--output-dir", str(output_dir)], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not output_dir.exists()


def test_cli_checkpoint_end_to_end_records_options_and_card(cli_files, tmp_path):
    output = tmp_path / "result.json"
    result = CliRunner().invoke(
        build_cli(),
        ["evaluate", "--model", f"checkpoint:{cli_files['good']}", "--arch", ZOO, "--model-option", "card.regime=noise",
         "--model-option", "card.strength=0.1", "--num-images", "8", "--metric", "accuracy", "--no-progress", "--output", str(output)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    config = json.loads(output.read_text())["config"]
    assert config["model_options"] == {"arch": ZOO, "card.regime": "noise", "card.strength": "0.1"}
    card = config["model_card"]
    assert card["regime"] == "noise" and card["strength"] == 0.1 and card["requires_finetuning"] is False
    assert card["provenance"]["weights_file"] == os.path.realpath(cli_files["good"])


def test_replaced_head_is_flagged_in_the_result(tmp_path, source):
    import pagbench

    state = _state(source)
    state["head.weight"], state["head.bias"] = torch.randn(100, 8 * _zoo_width()), torch.randn(100)
    path = tmp_path / "cifar100.pt"
    torch.save(state, path)
    result = pagbench.evaluate(f"checkpoint:{path}", num_images=8, metrics=("accuracy",), model_options={"arch": ZOO, "replace_head": True})
    assert result["config"]["model_card"]["requires_finetuning"] is True
    assert any("requires fine-tuning" in message for message in result["warnings"])
