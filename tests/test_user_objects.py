"""The user's own objects are left as they were.

After ``pagbench.evaluate(module)`` the caller's module keeps its train/eval mode (per submodule),
every parameter's ``requires_grad``, its weights, its device and its dtype (``--dtype`` converts a
copy). ``checkpoint:FILE --arch NAME`` with NAME registered from a module loads into a copy: the
registered object keeps its weights, and ``evaluate(NAME)`` afterwards scores them. Two modules of
one class get distinct names. Models whose output ignores the batch or changes shape after the
first call, and timm creation options timm rejects, are one-line errors."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench import ModelCard
from pagbench.errors import PagbenchError

FAST = dict(num_images=8, batch_size=4, metrics=("accuracy", "score_cosine"))


class SmallNet(torch.nn.Module):
    """A tiny CNN with BatchNorm and Dropout (train-mode layers) for the synthetic 3×16×16 images."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(4, 10)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, images):
        return self.head(self.drop(torch.tanh(self.norm(self.conv(images)))).mean((2, 3)))


def _state(module):
    return {key: value.clone() for key, value in module.state_dict().items()}


def _same_weights(module, state) -> bool:
    current = module.state_dict()
    return current.keys() == state.keys() and all(torch.equal(current[key], state[key]) for key in state)


def _values(result):
    return {name: entry["value"] for name, entry in result["metrics"].items()}


def test_evaluate_restores_train_mode_and_requires_grad():
    net = SmallNet()
    net.train()
    net.conv.weight.requires_grad_(False)  # a frozen layer stays frozen; the others stay trainable
    net.drop.eval()  # a mixed state is restored per submodule
    before = _state(net)
    pagbench.evaluate(net, **FAST)
    assert net.training and net.conv.training and net.norm.training and not net.drop.training
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True, True, True]
    assert _same_weights(net, before)  # BatchNorm running statistics untouched by the evaluation
    # and the evaluation itself ran in eval mode: the numbers equal those of the module in eval()
    in_eval = pagbench.evaluate(SmallNet().eval(), **FAST)
    assert _values(pagbench.evaluate(net, **FAST)) == _values(in_eval)


def test_evaluate_restores_the_modules_of_a_list_and_after_a_failure():
    first, second = SmallNet(0).train(), SmallNet(1).train()
    results = pagbench.evaluate([first, second], **FAST)
    assert first.training and second.training and all(p.requires_grad for p in [*first.parameters(), *second.parameters()])
    assert [r["config"]["model"] for r in results] == ["module:SmallNet", "module:SmallNet-2"]  # distinct names
    named = pagbench.evaluate({"a": SmallNet(0), "b": SmallNet(1)}, **FAST)
    assert [r["config"]["model"] for r in named.values()] == ["a", "b"]

    class Broken(torch.nn.Module):
        def forward(self, images):
            return images.flatten(1)[:, :3]  # 3 classes for a 10-class dataset

    good = SmallNet().train()
    with pytest.raises(PagbenchError, match=r"model output has shape \(1, 3\)"):
        pagbench.evaluate([good, Broken()], **FAST)
    assert good.training and all(p.requires_grad for p in good.parameters())  # restored though the second failed


def test_dtype_converts_a_copy_not_the_users_module():
    net = SmallNet().train()
    before = _state(net)
    result = pagbench.evaluate(net, dtype="bfloat16", **FAST)
    assert result["config"]["dtype"] == "bfloat16"
    assert all(p.dtype == torch.float32 for p in net.parameters()) and _same_weights(net, before)
    assert net.training and all(p.requires_grad for p in net.parameters())


def test_a_registered_module_keeps_its_weights_when_a_checkpoint_names_it_as_arch(tmp_path):
    from pagbench.cli import build_cli

    registered, other = SmallNet(0), SmallNet(1)
    original = _state(registered)
    checkpoint = tmp_path / "other.pt"
    torch.save(other.state_dict(), checkpoint)
    plugin = pagbench.register_model("my-net", registered, card=ModelCard(architecture="SmallNet", dataset="synthetic"))
    try:
        before = pagbench.evaluate("my-net", **FAST)
        from_file = pagbench.evaluate(f"checkpoint:{checkpoint}", model_options={"arch": "my-net"}, **FAST)
        assert _same_weights(registered, original)  # FILE's weights went into a copy
        after = pagbench.evaluate("my-net", **FAST)
        out = tmp_path / "cli.json"
        outcome = CliRunner().invoke(build_cli(), ["evaluate", "--model", f"checkpoint:{checkpoint}", "--arch", "my-net",
                                                   "--num-images", "8", "--batch-size", "4", "--metric", "accuracy",
                                                   "--no-progress", "--output", str(out)])
        assert outcome.exit_code == 0, outcome.output
        assert _same_weights(registered, original)
        assert _values(pagbench.evaluate("my-net", **FAST)) == _values(before)
    finally:
        pagbench.unregister_model(plugin)
    assert _values(after) == _values(before)  # the original weights are still the ones scored
    assert _values(from_file) == _values(pagbench.evaluate(other, **FAST))  # and the file's are FILE's
    assert _values(from_file) != _values(before)


def test_evaluating_a_registered_module_restores_its_mode():
    registered = SmallNet().train()
    plugin = pagbench.register_model("my-training-net", registered)
    try:
        pagbench.evaluate("my-training-net", **FAST)
    finally:
        pagbench.unregister_model(plugin)
    assert registered.training and all(p.requires_grad for p in registered.parameters())


class IgnoresBatch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 16 * 16, 10)

    def forward(self, images):
        return self.linear(images.flatten(1))[:1]  # always one row


class ChangesShape(torch.nn.Module):
    """Right for its first calls (the shape checks), then 5 columns instead of 10."""

    def __init__(self, good_calls: int):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 16 * 16, 10)
        self.calls, self.good_calls = 0, good_calls

    def forward(self, images):
        self.calls += 1
        logits = self.linear(images.flatten(1))
        return logits if self.calls <= self.good_calls else logits[:, :5]


@pytest.mark.parametrize("module, message", [
    (IgnoresBatch(), r"model output has shape \(1, 10\) for a batch of 2 images \(after \(1, 10\) for one\)"),
    (ChangesShape(good_calls=1), r"model output has shape \(2, 5\) for a batch of 2 images"),
    (ChangesShape(good_calls=4), r"model output has shape \(4, 5\) for a batch of 4 images; expected \(4, num_classes\)"),
], ids=["ignores the batch", "changes at the second call", "changes during the evaluation"])
def test_bad_output_shapes_are_one_line_errors(module, message):
    with pytest.raises(PagbenchError, match=message) as caught:
        pagbench.evaluate(module, **FAST)
    assert "\n" not in str(caught.value)


def test_bad_output_shapes_exit_2_from_the_command_line(register_plugin, tmp_path):
    from pagbench import ModelEntry, hookimpl
    from pagbench.cli import build_cli

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelEntry("changes-shape", lambda name, dataset, device: ChangesShape(good_calls=4),
                                ModelCard(architecture="ChangesShape", dataset="synthetic")))

    register_plugin(Plugin(), name="changes-shape")
    out = tmp_path / "r.json"
    outcome = CliRunner().invoke(build_cli(), ["evaluate", "--model", "changes-shape", "--num-images", "8", "--batch-size", "4",
                                               "--metric", "accuracy", "--no-progress", "--output", str(out)])
    assert outcome.exit_code == 2, (outcome.output, outcome.exception)
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: model output has shape (4, 5)") and not out.exists()


@pytest.mark.parametrize("option, message", [
    ("act_layer=nonexistent", "timm could not build resnet18 with creation arguments act_layer='nonexistent': KeyError"),
    ("layers=2", "timm could not build resnet18 with creation arguments layers=2: TypeError"),
])
def test_timm_creation_options_timm_rejects_are_one_line(option, message, tmp_path):
    pytest.importorskip("timm")
    from pagbench.cli import build_cli

    outcome = CliRunner().invoke(build_cli(), ["evaluate", "--model", "timm:resnet18", "--model-option", "pretrained=false",
                                               "--model-option", option, "--num-images", "2", "--no-progress",
                                               "--output", str(tmp_path / "r.json")])
    assert outcome.exit_code == 2, (outcome.output, outcome.exception)
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], outcome.output


def test_a_resnet_file_given_to_a_vit_is_reported_as_not_fitting(tmp_path):
    timm = pytest.importorskip("timm")
    from pagbench.models.loading import load_model
    from pagbench.extensions.registry import datasets

    path = tmp_path / "resnet10.pt"
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), path)
    dataset = datasets().get("synthetic").factory(None)
    with pytest.raises(PagbenchError) as caught:
        load_model("timm:vit_tiny_patch16_224", dataset, "cpu", {"weights": str(path)})
    message = str(caught.value)
    assert "does not fit timm:vit_tiny_patch16_224" in message and "1000-class" not in message
    assert "missing cls_token, pos_embed" in message and "not in the network conv1.weight" in message and "\n" not in message


def test_a_users_pkg_resources_stand_in_does_not_break_the_robustbench_route(monkeypatch):
    """A module put in sys.modules by hand has ``__spec__`` None, which makes ``find_spec`` raise."""
    from pagbench_plugins.robustbench_models import build

    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename = lambda package, resource: resource
    monkeypatch.setitem(sys.modules, "pkg_resources", stand_in)
    assert build._importable("pkg_resources")
    with build._import_workarounds():
        assert sys.modules["pkg_resources"] is stand_in  # the user's own, not replaced by pagbench's
    assert sys.modules["pkg_resources"] is stand_in  # and not removed afterwards
    monkeypatch.setitem(sys.modules, "robustbench_absent_for_test", None)
    assert not build._importable("robustbench_absent_for_test")
    try:
        build.import_robustbench()
    except PagbenchError as error:  # robustbench not installed: still one line, no ValueError
        assert "robustbench" in str(error) and "\n" not in str(error)


def test_a_gallery_of_a_registered_module_restores_its_mode():
    from pagbench.leaderboard.gallery import compute_gallery

    registered = SmallNet().train()
    before = _state(registered)
    plugin = pagbench.register_model("my-gallery-net", registered)
    try:
        data = compute_gallery(["my-gallery-net"], num_images=2)
    finally:
        pagbench.unregister_model(plugin)
    assert data.gradients["my-gallery-net"].shape == (2, 3, 16, 16)
    assert registered.training and all(p.requires_grad for p in registered.parameters()) and _same_weights(registered, before)
