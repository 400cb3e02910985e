"""The Python API: ``pagbench.evaluate`` on names, modules, lists and dicts; in-process
registration; several models sharing one dataset, provider and geometry pass; bad input."""

import re
from pathlib import Path

import pytest
import torch

import pagbench
from pagbench import DatasetEntry, ModelCard, ScoreProviderEntry, hookimpl
from pagbench.errors import PagbenchError

FAST = dict(num_images=40, batch_size=20, metrics=("accuracy", "score_cosine", "on_manifold_fraction"))


class SmallNet(torch.nn.Module):
    """Untrained but well defined: the numbers need only be reproducible."""

    def __init__(self, seed=0, normalise=None):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.head = torch.nn.Linear(6, 10)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        self.normalise = normalise

    def forward(self, images):
        if self.normalise is not None:
            mean, std = self.normalise
            images = (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        return self.head(torch.tanh(self.conv(images)).mean((2, 3)))


def _values(result):
    return {name: entry["value"] for name, entry in result["metrics"].items()}


def test_module_equals_the_same_module_registered_by_name():
    net = SmallNet()
    direct = pagbench.evaluate(net, **FAST)
    plugin = pagbench.register_model("api-test-net", net, card=ModelCard(architecture="SmallNet", dataset="synthetic"))
    try:
        named = pagbench.evaluate("api-test-net", **FAST)
    finally:
        pagbench.unregister_model(plugin)
    assert _values(direct) == _values(named)
    assert direct["config"]["model"] == "module:SmallNet"
    assert direct["config"]["model_card"]["provenance"]["input"]["normalization"].startswith("none")
    assert named["config"]["model"] == "api-test-net" and named["config"]["model_card"]["architecture"] == "SmallNet"
    with pytest.raises(PagbenchError, match="unknown model 'api-test-net'"):
        pagbench.evaluate("api-test-net", **FAST)


def test_mean_std_and_input_size_wrap_the_module_and_are_recorded():
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    wrapped = pagbench.evaluate(SmallNet(), mean=mean, std=std, name="mine", card={"regime": "standard"}, **FAST)
    self_normalising = pagbench.evaluate(SmallNet(normalise=(mean, std)), **FAST)
    for name, value in _values(self_normalising).items():
        assert wrapped["metrics"][name]["value"] == pytest.approx(value, rel=1e-6, abs=1e-9)
    card = wrapped["config"]["model_card"]
    assert wrapped["config"]["model"] == "mine" and card["regime"] == "standard"
    assert "mean=[0.4, 0.5, 0.6]" in card["provenance"]["input"]["normalization"]
    resized = pagbench.evaluate(SmallNet(), input_size=32, **FAST)
    assert resized["config"]["model_card"]["provenance"]["input"]["resize"].startswith("to 32x32")
    assert _values(resized) != _values(pagbench.evaluate(SmallNet(), **FAST))  # the resize is really applied


def test_tuple_output_needs_the_output_option():
    class Pair(SmallNet):
        def forward(self, images):
            return super().forward(images), images

    with pytest.raises(PagbenchError, match=r"returned a tuple.*output=0"):
        pagbench.evaluate(Pair(), **FAST)
    assert _values(pagbench.evaluate(Pair(), output=0, **FAST)) == _values(pagbench.evaluate(SmallNet(), **FAST))


class _Counter:
    datasets = 0
    providers = 0


@pytest.fixture
def counting_plugin(register_plugin):
    """A dataset and a score provider that count how often their factories run."""
    from pagbench.extensions.registry import datasets, score_providers

    synthetic = datasets().get("synthetic")
    analytic = score_providers().get("analytic")
    _Counter.datasets = _Counter.providers = 0

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            def factory(data_root):
                _Counter.datasets += 1
                return synthetic.factory(data_root)

            register(DatasetEntry("counted-synthetic", factory, default_score_provider="counted", default_manifold_provider="analytic"))

        @hookimpl
        def register_score_providers(self, register):
            def factory(dataset, options):
                _Counter.providers += 1
                return analytic.factory(dataset, options)

            register(ScoreProviderEntry("counted", factory))

    register_plugin(Plugin(), name="counting")
    return _Counter


def test_several_models_share_dataset_providers_and_geometry(counting_plugin):
    options = dict(FAST, dataset="counted-synthetic")
    results = pagbench.evaluate(["bayes", SmallNet(0), SmallNet(1)], **options)
    assert [r["config"]["model"] for r in results] == ["bayes", "module:SmallNet", "module:SmallNet-2"]
    assert (counting_plugin.datasets, counting_plugin.providers) == (1, 1)
    # geometry is computed for the first model only: the later ones read it from the shared cache
    assert results[1]["timing"]["geometry_seconds"] < results[0]["timing"]["geometry_seconds"]
    # and the numbers are those of separate runs
    alone = pagbench.evaluate(SmallNet(1), **options)
    assert _values(alone) == _values(results[2])
    by_name = pagbench.evaluate({"first": SmallNet(0), "second": SmallNet(1)}, **options)
    assert list(by_name) == ["first", "second"] and by_name["second"]["config"]["model"] == "second"
    assert _values(by_name["second"]) == _values(alone)


def test_the_cli_shares_them_too(counting_plugin, tmp_path):
    from click.testing import CliRunner

    from pagbench.cli import build_cli

    result = CliRunner().invoke(
        build_cli(),
        ["evaluate", "--model", "bayes", "--model", "bayes", "--dataset", "counted-synthetic", "--num-images", "20",
         "--metric", "score_cosine", "--no-progress", "--output-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert (counting_plugin.datasets, counting_plugin.providers) == (1, 1)
    assert len(list(tmp_path.rglob("*.json"))) == 2


def test_a_bad_model_fails_before_any_evaluation(counting_plugin):
    evaluated = []

    class Recording(SmallNet):
        def forward(self, images):
            evaluated.append(images.shape[0])
            return super().forward(images)

    with pytest.raises(PagbenchError, match="unknown model 'no-such-model'"):
        pagbench.evaluate([Recording(), "no-such-model"], dataset="counted-synthetic", **FAST)
    assert evaluated == [1, 2]  # only the shape probes ran (one image, then two), no batch was evaluated


@pytest.mark.parametrize(
    "model, options, message",
    [
        (3, {}, "must be a registered model name or a torch.nn.Module, got int"),
        ([], {}, "no model given"),
        ("bayes", {"mean": [0.5]}, "apply to torch.nn.Module models"),
        ([SmallNet(), SmallNet()], {"name": "x"}, "name= names one module"),
        (SmallNet(), {"mean": [0.5, 0.5, 0.5]}, "mean and std go together"),
        (SmallNet(), {"mean": [0.5], "std": [0.0]}, "std must be positive"),
        (SmallNet(), {"input_size": (0, 3)}, "input_size must be"),
        (SmallNet(), {"card": {"colour": "red"}}, "unknown fields colour"),
        (SmallNet(), {"num_imgs": 3}, r"unknown argument\(s\) num_imgs"),
        (SmallNet(), {"output": "0"}, "output must be the int index"),
        (torch.nn.Identity(), {}, r"output has shape \(1, 3, 16, 16\)"),
        ({"x": "bayes"}, {}, "keeps its own name"),
    ],
)
def test_bad_input_is_one_line(model, options, message):
    with pytest.raises(PagbenchError, match=message) as caught:
        pagbench.evaluate(model, **{**FAST, **options})
    assert "\n" not in str(caught.value)


def test_register_model_bad_input():
    with pytest.raises(PagbenchError, match="give a factory or a torch.nn.Module"):
        pagbench.register_model("x")
    with pytest.raises(PagbenchError, match="factory must be callable"):
        pagbench.register_model("x", 3)
    with pytest.raises(PagbenchError, match="no in-process model plugin"):
        pagbench.unregister_model("python:nothing")


def test_the_readme_example_runs():
    """The README's Python example, executed as written (with fewer images)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("num_images=200", "num_images=20")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["result"]["metrics"]["accuracy"]["n"] == 20
