"""robustness:PATH — MadryLab robustness-library checkpoints, one command, no plugin.

Where the library installs, its own code builds, trains (one epoch of l2 PGD on the CPU), saves
and restores the models, and pagbench's logits and input gradients are compared with the
library's ``AttackerModel`` forward on the same [0,1] images, including pixels exactly at 0 and 1
and perturbed inputs outside [0,1]: max relative difference ≤ 1e-5. Layout, metadata, clamp,
with_normalization and bad-input tests build checkpoints in the library's exact on-disk layout
and run without it."""

from __future__ import annotations

import argparse
import json
import types

import pytest
import torch
from click.testing import CliRunner

from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench.models.checkpoint_reading import read_checkpoint
from pagbench_plugins.robustness_models.layout import CLAMP_DROPPED, CLAMP_KEPT
from pagbench.cli import build_cli
from pagbench.errors import PagbenchError
from pagbench.models.loading import load_model, with_normalization
from pagbench_plugins.robustness_models.architectures import CifarResNet, _own, resnet_from_keys

from .robustness_library import (
    CIFAR_MEAN,
    CIFAR_STD,
    layout_state,
    library,
    logits_and_gradient,
    make_model,
    outside,
    perturb,
    probe_images,
    relative_difference,
    save_like_training_loop,
    train_one_epoch,
    write_cifar,
)

TOLERANCE = 1e-5
CIFAR = types.SimpleNamespace(name="cifar10", num_classes=10, image_shape=(3, 32, 32))
IMAGENET64 = types.SimpleNamespace(name="imagenet64", num_classes=1000, image_shape=(3, 64, 64))


def _load(path, on=CIFAR, **options):
    """``robustness:PATH`` for the pagbench dataset ``on`` (a stand-in with its name and shape)."""
    return load_model(f"robustness:{path}", on, "cpu", options)


def _library_logits(model):
    """The library's own forward: AttackerModel(x) → (logits, input); the logits."""
    return lambda images: model(images)[0]


def _agreement(loaded, reference, images):
    """Max relative differences (logits, gradient) of pagbench's model against the reference."""
    ours = logits_and_gradient(loaded.module, images)
    theirs = logits_and_gradient(reference, images)
    return relative_difference(ours[0], theirs[0]), relative_difference(ours[1], theirs[1])


def _assert_agrees(loaded, reference, shape):
    images = probe_images(shape)
    for name, batch in (("in [0,1] with pixels at 0 and 1", images), ("perturbed, outside [0,1]", outside(images))):
        logits, gradient = _agreement(loaded, reference, batch)
        print(f"{name}: max relative difference logits {logits:.2e}, gradients {gradient:.2e}")
        assert logits <= TOLERANCE and gradient <= TOLERANCE, name


# ------------------------------------------------------------------ against the library itself
@pytest.mark.filterwarnings("ignore:Could not import amp")
def test_cifar_resnet18_from_the_training_loop_equals_the_library(tmp_path):
    library()
    model = make_model("resnet18", "cifar")
    generator = torch.Generator().manual_seed(0)
    path = train_one_epoch(model, "cifar", tmp_path, torch.rand(4, 3, 32, 32, generator=generator), torch.tensor([0, 1, 2, 3]))
    restored = make_model("resnet18", "cifar", resume_path=path)  # the library reading its own file
    loaded = _load(path)
    _assert_agrees(loaded, _library_logits(restored), (3, 32, 32))
    provenance = loaded.card.provenance
    assert provenance["input_clamp"] == CLAMP_KEPT and provenance["input"]["clamp"] == CLAMP_KEPT
    assert provenance["architecture"] == "resnet18" and "structure" in provenance["architecture_from"]
    assert provenance["implementation"].startswith("robustness library")
    assert provenance["epoch"] == 1 and "adv_prec1" in provenance["library_reported"]
    assert "robustness library" in provenance["layout"] and "normalizer" in provenance["normalization"]


def test_imagenet_resnet18_at_64px_equals_the_library(tmp_path):
    library()
    model = make_model("resnet18", "imagenet")
    perturb(model.model)
    path = tmp_path / "imagenet.pt"
    save_like_training_loop(model, path)
    loaded = _load(path, IMAGENET64)
    assert loaded.card.provenance["library_dataset"] == "imagenet"
    _assert_agrees(loaded, _library_logits(model), (3, 64, 64))


@pytest.mark.parametrize("family,arch,shape", [
    ("cifar", "resnet18", (3, 32, 32)),
    ("cifar", "resnet50", (3, 32, 32)),
    ("imagenet", "resnet50", (3, 64, 64)),
    ("imagenet", "resnext50_32x4d", (3, 64, 64)),
])
def test_pagbench_own_architectures_equal_the_library_classes(tmp_path, family, arch, shape):
    """Without the library pagbench uses its own networks: same keys, same numbers."""
    library()
    model = make_model(arch, family)
    perturb(model.model)
    ours = _own(arch, family, 10 if family == "cifar" else 1000)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [(k, tuple(v.shape)) for k, v in model.model.state_dict().items()]
    path = tmp_path / "weights.pt"
    save_like_training_loop(model, path)
    loaded = _load(path, CIFAR if family == "cifar" else IMAGENET64, implementation="pagbench")
    assert "the library is not used" in loaded.card.provenance["implementation"]
    _assert_agrees(loaded, _library_logits(model), shape)


def test_architecture_is_read_off_the_weights_for_every_library_resnet():
    library()
    from robustness import cifar_models, imagenet_models

    cases = [("cifar", name) for name in ("resnet18", "ResNet34", "resnet50", "resnet101", "resnet152")]
    cases += [("imagenet", name) for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                                               "resnext101_32x8d", "wide_resnet50_2", "wide_resnet50_4", "wide_resnet101_2")]
    for family, name in cases:
        models = cifar_models if family == "cifar" else imagenet_models
        with torch.device("meta"):
            state = models.__dict__[name](num_classes=10).state_dict()
        assert resnet_from_keys(state, family) == name, (family, name)


def test_layout_helper_matches_the_library_key_for_key():
    library()
    model = make_model("resnet18", "cifar")
    expected = torch.nn.DataParallel(model).state_dict()
    built = layout_state(model.model, CIFAR_MEAN, CIFAR_STD)
    assert list(built) == list(expected)
    assert all(torch.equal(built[key], expected[key]) for key in expected)


def test_clamp_false_drops_the_library_clamp_and_says_so(tmp_path):
    """In [0,1] the logits agree; the gradients differ exactly at pixels at 0 or 1 (the clamp
    passes no gradient there); outside [0,1] the logits differ too."""
    library()
    model = make_model("resnet18", "cifar")
    perturb(model.model)
    path = tmp_path / "cifar.pt"
    save_like_training_loop(model, path)
    loaded = _load(path, clamp="false")
    assert loaded.card.provenance["input_clamp"] == CLAMP_DROPPED
    images = probe_images((3, 32, 32))
    ours, theirs = logits_and_gradient(loaded.module, images), logits_and_gradient(_library_logits(model), images)
    saturated = (images == 0) | (images == 1)
    assert relative_difference(ours[0], theirs[0]) <= TOLERANCE
    assert relative_difference(ours[1][~saturated], theirs[1][~saturated]) <= TOLERANCE
    assert bool((theirs[1][saturated] == 0).all()) and float(ours[1][saturated].abs().min()) > 0
    share = float(ours[1][saturated].norm() / ours[1].norm())
    print(f"clamp=false, in [0,1]: logits {relative_difference(ours[0], theirs[0]):.2e}; gradients differ at the "
          f"{int(saturated.sum())} of {saturated.numel()} pixels at 0 or 1 (library: exactly 0 there; max relative difference "
          f"{relative_difference(ours[1], theirs[1]):.2f}; {share:.0%} of the unclamped gradient's norm lies there), "
          f"elsewhere {relative_difference(ours[1][~saturated], theirs[1][~saturated]):.2e}")
    perturbed = outside(images)
    ours, theirs = logits_and_gradient(loaded.module, perturbed), logits_and_gradient(_library_logits(model), perturbed)
    print(f"clamp=false, perturbed: logits {relative_difference(ours[0], theirs[0]):.2e}, gradients {relative_difference(ours[1], theirs[1]):.2e}")
    assert relative_difference(ours[0], theirs[0]) > 1e-3
    kept = _load(path)
    _assert_agrees(kept, _library_logits(model), (3, 32, 32))


def test_whole_attacker_model_tuple_output_is_detected_with_trust(tmp_path):
    library()
    model = make_model("resnet18", "cifar")
    perturb(model.model)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(PagbenchError, match="--trust-checkpoint") as caught:
        _load(path)
    assert "\n" not in str(caught.value)
    loaded = _load(path, trust_checkpoint=True)
    assert "(detected)" in loaded.card.provenance["output"] and loaded.card.provenance["trusted_load"] is True
    _assert_agrees(loaded, _library_logits(model), (3, 32, 32))
    rebuilt = _load(path, trust_checkpoint=True, clamp="false")  # no clamp: rebuilt from its weights
    assert rebuilt.card.provenance["input_clamp"] == CLAMP_DROPPED and "rebuilt" in rebuilt.card.provenance["loaded_as"]
    network = tmp_path / "network.pt"  # the classifier alone: the library dataset's normaliser goes in front
    torch.save(model.model, network)
    _assert_agrees(_load(network, trust_checkpoint=True), _library_logits(model), (3, 32, 32))


class _Pair(torch.nn.Module):
    """A whole network that returns (logits, something), as people pickle them."""

    def __init__(self):
        super().__init__()
        self.body = CifarResNet("basic", (1, 1, 1, 1))

    def forward(self, images):
        return self.body(images), images


def test_a_module_returning_a_tuple_needs_the_output_option(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "pair.pt"
    torch.save(_Pair(), path)
    loaded = _load(path, trust_checkpoint=True)
    with pytest.raises(TypeError, match="--model-option output=INDEX"):
        loaded.module(torch.rand(1, 3, 32, 32))
    chosen = _load(path, trust_checkpoint=True, output="0")
    assert chosen.module(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert chosen.card.provenance["output"] == "element 0 of the module's tuple output"


# -------------------------------------------------------------- layouts, without the library
def _network(seed=0):
    torch.manual_seed(seed)
    network = _own("resnet18", "cifar", 10).eval()
    perturb(network)
    return network


def _reference(network, mean, std, clamp=True):
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return lambda images: network(((images.clamp(0, 1) if clamp else images) - mean) / std)


LAYOUTS = {
    "trained with DataParallel (module.)": lambda net, m, s: {"model": layout_state(net, m, s)},
    "without module.": lambda net, m, s: {"model": layout_state(net, m, s, prefix="")},
    "legacy state_dict key": lambda net, m, s: {"state_dict": layout_state(net, m, s), "epoch": 1},
    "raw AttackerModel state dict": lambda net, m, s: layout_state(net, m, s),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_library_layouts_load_exactly(tmp_path, layout):
    network, mean, std = _network(), (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    path = tmp_path / "robust.pt"
    torch.save(LAYOUTS[layout](network, mean, std), path)
    loaded = _load(path, implementation="pagbench")
    _assert_agrees(loaded, _reference(network, mean, std), (3, 32, 32))
    assert loaded.card.provenance["mean"] == pytest.approx(mean) and loaded.card.provenance["input_clamp"] == CLAMP_KEPT


def test_network_only_checkpoint_uses_the_library_dataset_defaults(tmp_path):
    network = _network()
    path = tmp_path / "network.pt"
    torch.save({"model": {f"module.{k}": v for k, v in network.state_dict().items()}}, path)
    loaded = _load(path, implementation="pagbench")
    assert "defaults" in loaded.card.provenance["normalization"]
    _assert_agrees(loaded, _reference(network, CIFAR_MEAN, CIFAR_STD), (3, 32, 32))


def _plant(marker):
    open(marker, "w").close()
    return {}


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_plant, (self.marker,))


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip format", "legacy format"])
def test_pickled_metadata_is_read_inertly_and_never_runs(tmp_path, legacy):
    """Dill-pickled args (a lambda, payloads that would run code, one through os.system) do not
    make the file unreadable; none of it runs; the stored arch and dataset are used."""
    try:
        import dill as pickler
    except ImportError:  # the library's own pickler; without it, plain pickle (no lambda then)
        import pickle as pickler
    network, marker = _network(), tmp_path / "pwned"
    args = argparse.Namespace(arch="resnet18", dataset="cifar", adv_train=1, constraint="2", eps="0.5")
    shell_marker = tmp_path / "shell"
    extra = {"args": args, "payload": _Payload(str(marker)), "shell": _Shell(str(shell_marker))}
    if pickler.__name__ == "dill":
        extra["hook"] = lambda t: t  # dill pickles a lambda by value: its code object, globals, …
    state = {"model": layout_state(network, CIFAR_MEAN, CIFAR_STD), "epoch": 7, **extra}
    path = tmp_path / "with_metadata.pt"
    torch.save(state, path, pickle_module=pickler, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(PagbenchError, match="--trust-checkpoint"):
        read_checkpoint(path)  # plain reading refuses, as before
    loaded = _load(path, implementation="pagbench")
    assert not marker.exists() and not shell_marker.exists()
    assert loaded.card.provenance["format"] == ("torch-legacy" if legacy else "torch")
    provenance = loaded.card.provenance
    assert any(name.endswith("_plant") for name in provenance["inert_objects"])
    assert provenance["architecture_from"] == "checkpoint metadata (args.arch)" and provenance["epoch"] == 7
    assert loaded.card.regime == "pgd" and loaded.card.strength == 0.5 and loaded.card.dataset == "cifar10"
    _assert_agrees(loaded, _reference(network, CIFAR_MEAN, CIFAR_STD), (3, 32, 32))


def test_cox_parameters_args_are_read_without_cox_code(tmp_path):
    pytest.importorskip("dill")
    cox_utils = pytest.importorskip("cox.utils")
    network = _network()
    path = tmp_path / "cox.pt"
    save_like_training_loop(_as_attacker(network), path,
                            extra={"args": cox_utils.Parameters({"arch": "resnet18", "dataset": "cifar", "adv_train": 0})})
    loaded = _load(path, implementation="pagbench")
    assert "cox.utils.Parameters" in loaded.card.provenance["inert_objects"]
    assert loaded.card.provenance["training_args"]["arch"] == "resnet18" and loaded.card.regime == "standard"


def _as_attacker(network):
    """A stand-in AttackerModel (same state-dict layout) around ``network``, for saving."""

    class Normalizer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("new_mean", torch.tensor(CIFAR_MEAN)[..., None, None])
            self.register_buffer("new_std", torch.tensor(CIFAR_STD)[..., None, None])

    class Attacker(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize, self.model = Normalizer(), network

    class AttackerModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.normalizer, self.model, self.attacker = Normalizer(), network, Attacker()

    return AttackerModel()


def test_whole_pickled_module_under_the_weights_key_still_needs_trust(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"model": _network(), "epoch": 1, "adv_prec1": torch.tensor(3.0)}, path)
    with pytest.raises(PagbenchError, match="pickled Python objects .*--trust-checkpoint"):
        _load(path)


# ------------------------------------------------------------- with_normalization + checkpoint:
class _Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)

    def forward(self, images):
        return self.fc(torch.relu(self.conv(images)).flatten(1))


def test_with_normalization_models_load_checkpoints(tmp_path, register_plugin, synthetic):
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            register(ModelEntry("normalized-small", lambda name, dataset, device: with_normalization(_Small(), mean, std), ModelCard("small", "synthetic")))

    register_plugin(Plugin(), name="normalized-small-plugin")
    torch.manual_seed(5)
    trained = _Small().eval()
    images = synthetic.split("test").batch([0, 1, 2]).images
    expected = trained((images - 0.5) / 0.25)
    network_file, wrapper_file, legacy_file = tmp_path / "net.pt", tmp_path / "wrapper.pt", tmp_path / "legacy.pt"
    torch.save(trained.state_dict(), network_file)  # the network's own checkpoint
    other = with_normalization(trained, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))
    torch.save(other.state_dict(), wrapper_file)  # the whole wrapper, with its own normalisation
    torch.save(torch.nn.Sequential(other.normalize, trained).state_dict(), legacy_file)  # what with_normalization used to build
    with torch.no_grad():
        loaded = load_model(f"checkpoint:{network_file}", synthetic, "cpu", {"arch": "normalized-small"})
        assert torch.allclose(loaded.module(images), expected, atol=1e-6)
        assert loaded.card.provenance["normalization"] == "architecture default"
        for path in (wrapper_file, legacy_file):
            loaded = load_model(f"checkpoint:{path}", synthetic, "cpu", {"arch": "normalized-small"})
            assert torch.allclose(loaded.module(images), trained((images - 0.4) / 0.3), atol=1e-6), path
    assert list(with_normalization(_Small(), mean, std).state_dict())[:2] == ["normalize.mean", "normalize.std"]


def test_with_normalization_clamp_matches_the_library_normaliser():
    torch.manual_seed(0)
    network = _Small().eval()
    images = outside(torch.rand(2, 3, 16, 16))
    clamped = with_normalization(network, (0.5,) * 3, (0.25,) * 3, clamp=True)
    _, gradient = logits_and_gradient(clamped, images)
    assert bool((gradient[(images <= 0) | (images >= 1)] == 0).all())
    assert torch.equal(clamped(images), network((images.clamp(0, 1) - 0.5) / 0.25))


# ------------------------------------------------------------------------------- bad input
def _layout_file(tmp_path):
    path = tmp_path / "robust.pt"
    torch.save({"model": layout_state(_network(), CIFAR_MEAN, CIFAR_STD)}, path)
    return path


@pytest.mark.parametrize("options,dataset,message", [
    ({"arch": "resnet19"}, CIFAR, "unknown robustness-library cifar architecture 'resnet19'; did you mean resnet18"),
    ({"arch": "resnet50"}, CIFAR, "does not fit the robustness library's cifar resnet50"),
    ({"dataset": "cifar100"}, CIFAR, "unknown robustness-library dataset 'cifar100'; did you mean cifar"),
    ({"output": "0"}, CIFAR, "--model-option output applies to whole pickled modules"),
    ({"clamp": "maybe"}, CIFAR, "expected true or false"),
    ({"arch": "vgg16", "implementation": "pagbench"}, CIFAR, "the robustness library is needed for cifar architecture 'vgg16'"),
    ({"colour": "red"}, CIFAR, "does not take --model-option colour"),
    ({}, types.SimpleNamespace(name="digits", num_classes=10, image_shape=(3, 64, 64)), "take 32x32 images"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, dataset, message):
    path = _layout_file(tmp_path)
    with pytest.raises(PagbenchError) as caught:
        _load(path, dataset, implementation=options.pop("implementation", "pagbench"), **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def _cli(args, tmp_path):
    return CliRunner().invoke(build_cli(), ["evaluate", *args, "--no-progress"], catch_exceptions=False)


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar(tmp_path / "data" / "cifar-10-batches-py")
    return str(tmp_path / "data")


@pytest.mark.parametrize("case", ["html", "truncated", "mismatched", "unknown arch"])
def test_cli_bad_files_are_one_line_exit_2_nothing_written(tmp_path, cifar_root, case):
    path = _layout_file(tmp_path)
    extra = []
    if case == "html":
        path.write_text("<html><body>Sign in</body></html>")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "mismatched":
        torch.save({"model": {f"module.model.backbone.{k}": v for k, v in _network().state_dict().items()}}, path)
    else:
        extra = ["--model-option", "arch=resnet_50"]
    output_dir = tmp_path / "results"
    result = _cli(["--model", f"robustness:{path}", "--dataset", "cifar10", "--data-root", cifar_root, *extra,
                   "--model-option", "implementation=pagbench", "--num-images", "2", "--output-dir", str(output_dir)], tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not output_dir.exists()


def test_cli_end_to_end_on_cifar10(tmp_path, cifar_root):
    network, mean, std = _network(), (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    path = tmp_path / "robust.pt"
    torch.save({"model": layout_state(network, mean, std), "epoch": 4}, path)
    output = tmp_path / "result.json"
    result = _cli(["--model", f"robustness:{path}", "--dataset", "cifar10", "--data-root", cifar_root, "--model-option", "arch=resnet18",
                   "--model-option", "implementation=pagbench", "--num-images", "4", "--metric", "accuracy", "--output", str(output)], tmp_path)
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    card = document["config"]["model_card"]
    assert card["architecture"] == "robustness library cifar resnet18"
    assert card["provenance"]["input_clamp"] == CLAMP_KEPT and card["provenance"]["architecture_from"] == "model option"
    assert document["config"]["model_options"]["arch"] == "resnet18"
