"""Every hook, exercised through the out-of-tree example plugin, and hook docs that cannot drift.

The example package in examples/pagbench-example-plugin is registered on the plugin manager as
its entry point would register it, then used end to end.
"""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench.extensions import hookspecs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pagbench-example-plugin"
HOOKS = [name for name, value in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


@pytest.fixture
def example(register_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import pagbench_example

    register_plugin(pagbench_example, name="example")
    yield pagbench_example
    for module in [m for m in sys.modules if m.startswith("pagbench_example")]:
        del sys.modules[module]


def test_hook_register_datasets(example):
    from pagbench.extensions.registry import datasets

    dataset = datasets().get("example-bars").factory(None)
    assert dataset.split("test").batch([0, 1]).signal_mask.shape == (2, 1, 16, 16)


def test_hook_register_models(example):
    result = pagbench.evaluate("example-bars-template", dataset="example-bars", num_images=100, batch_size=50)
    assert result["config"]["model_card"]["source"] == "pagbench-example-plugin"
    assert result["metrics"]["accuracy"]["value"] > 0.9


def test_hook_register_score_providers(example):
    from pagbench.extensions.registry import datasets, score_providers
    from pagbench_example.bars import TemplateModel

    result = pagbench.evaluate("example-bars-template", dataset="example-bars", num_images=40, metrics=("score_cosine",))
    assert result["config"]["score_provider"] == "class-gaussians"
    # the known answer, computed here without the runner: cos(∇ log softmax_y, posterior score)
    dataset = datasets().get("example-bars").factory(None)
    provider = score_providers().get("class-gaussians").factory(dataset, {})
    batch = dataset.split("test").batch(list(range(40)))
    images = batch.images.clone().requires_grad_(True)
    log_probability = torch.log_softmax(TemplateModel()(images).double(), dim=1)[torch.arange(40), batch.labels].sum()
    (gradient,) = torch.autograd.grad(log_probability, images)
    score = provider.scores(batch.images, batch.labels, 0.0, "posterior")
    g, s = gradient.double().flatten(1), score.double().flatten(1)
    norms = g.norm(dim=1) * s.norm(dim=1)
    keep = norms > 0  # the posterior score vanishes exactly where the class posterior saturates
    cosines = ((g * s).sum(1) / norms)[keep]
    assert result["metrics"]["score_cosine"]["n"] == int(keep.sum()) == 34
    assert result["metrics"]["score_cosine"]["value"] == pytest.approx(float(cosines.mean()), abs=1e-9)


def test_hook_register_manifold_providers(example):
    result = pagbench.evaluate(
        "example-bars-template", dataset="example-bars", num_images=40, metrics=("on_manifold_fraction",), provider_options={"k": "4"}
    )
    assert result["metrics"]["on_manifold_fraction_random"]["value"] == pytest.approx(4 / 256)


def test_hook_register_metrics(example):
    result = pagbench.evaluate("example-bars-template", dataset="example-bars", num_images=40, metrics=("gradient_norm", "signal_distractor_ratio"))
    assert result["metrics"]["gradient_norm"]["value"] > 0
    # the template model barely looks at the distractor half
    assert result["metrics"]["signal_distractor_ratio"]["value"] > 3


def test_hook_register_trainers(example):
    from pagbench.extensions.registry import datasets, trainers
    from pagbench_plugins.zoo.training import TrainingRecipe, train
    from pagbench_plugins.zoo.build import architecture

    entry = trainers().get("label-smoothing")
    dataset = datasets().get("example-bars").factory(None)
    recipe = TrainingRecipe(dataset="example-bars", regime="label-smoothing", strength=0.1, width=4, epochs=2, lr=0.05, lr_milestones=(), augment="none")
    model, record = train(recipe, lambda: architecture(recipe, dataset), dataset, entry.loss, progress=False)
    assert record["recipe"]["regime"] == "label-smoothing" and len(record["history"]) == 2
    # the recorded accuracy is the returned model's on the whole test split
    split = dataset.split("test")
    batch = split.batch(list(range(len(split))))
    with torch.no_grad():
        correct = (model.eval()(batch.images).argmax(1) == batch.labels).double().mean()
    assert record["test_accuracy"] == pytest.approx(float(correct), abs=1e-12)


def test_hook_register_attributions(register_plugin):
    """A throwaway attribution method (the negated gradient) is scored by every gradient metric."""
    from pagbench import hookimpl
    from pagbench.evaluation.attributions import Attribution
    from pagbench.extensions.records import AttributionEntry

    class Negated(Attribution):
        def attribute(self, target):
            return -target.input_gradient

    class Plugin:
        @hookimpl
        def register_attributions(self, register):
            register(AttributionEntry("negated", lambda options: Negated({"sign": -1}), "−∇x"))

    register_plugin(Plugin(), name="negated-attribution")
    result = pagbench.evaluate("bayes", num_images=20, attribution="negated", metrics=("score_cosine", "on_manifold_fraction"))
    assert result["metrics"]["score_cosine"]["value"] == pytest.approx(-1.0)
    assert result["metrics"]["on_manifold_fraction"]["value"] == pytest.approx(1.0)
    assert result["config"]["attribution"] == "negated" and result["config"]["attribution_settings"] == {"sign": -1}


def test_hook_register_board_columns(register_plugin):
    """A throwaway plugin's column is rendered after the metric columns, with its legend and rule;
    the zoo's ``regime label`` column stays before it."""
    from pagbench import hookimpl
    from pagbench.leaderboard.render import render_board
    from pagbench.extensions.records import EntryColumn
    from pagbench.leaderboard.store import DEFAULT_ROOT, load_entries

    class Plugin:
        @hookimpl
        def register_board_columns(self, register):
            register(EntryColumn("model length", lambda results: [str(len(r["config"]["model"])) for r in results],
                                 description="characters in the model name.", rule="**Model-length rule.** Count them."))

    entries = load_entries(DEFAULT_ROOT)
    before = render_board(entries)
    register_plugin(Plugin(), name="model-length")
    after = render_board(entries)
    assert "| regime label | model length | images |" in after and "| regime label | images |" in before
    assert "- **model length**: characters in the model name.\n- **images**" in after
    assert "references (`-`).\n\n**Model-length rule.** Count them." in after
    row = next(line for line in after.splitlines() if "[bayes](" in line)
    assert row.split(" | ")[-5] == "5"


def test_hook_register_assets(register_plugin):
    """A throwaway plugin's asset is listed by ``pagbench assets list`` and selected for its dataset."""
    from pagbench import hookimpl
    from pagbench.files import assets
    from pagbench.files.assets import AssetEntry
    from pagbench.cli import build_cli

    class Plugin:
        @hookimpl
        def register_assets(self, register):
            register(AssetEntry(name="hook-asset", filename="weights.bin", url="https://example.org/weights.bin",
                                sha256="ab" * 32, datasets=("synthetic",)))

    register_plugin(Plugin(), name="hook-asset-plugin")
    assert [entry.name for entry in assets.select("synthetic")] == ["alexnet", "hook-asset"]  # alexnet: any dataset (LPIPS)
    assert assets.local_path(assets.get("hook-asset")) == assets.asset_root() / "hook-asset" / "weights.bin"
    listed = CliRunner().invoke(build_cli(), ["assets", "list", "hook-asset"])
    assert listed.exit_code == 0 and "hook-asset" in listed.output and "missing" in listed.output


def test_hook_register_checkpoint_layouts(register_plugin):
    """A throwaway plugin's layout is recognised by ``fit_checkpoint``: its network is picked out,
    its stored normalisation used, its clamp kept and described on the card."""
    from pagbench import hookimpl
    from pagbench.models.checkpoint_fitting import CheckpointLayout, checkpoint_layouts, fit_checkpoint
    from pagbench.models.loading import with_normalization

    def split(state):
        network = {key[len("inner."):]: value for key, value in state.items() if key.startswith("inner.")}
        return network, (state["norm.m"], state["norm.s"])

    layout = CheckpointLayout(name="hook-layout", recognise=lambda state: "norm.m" in state, split=split,
                              description="hook layout: inner.* kept", normalization_source="checkpoint (norm.m/norm.s)",
                              clamps_input=True, clamp_kept="kept by the hook layout", normalization_keys=(("nk.m", "nk.s"),))

    class Plugin:
        @hookimpl
        def register_checkpoint_layouts(self, register):
            register(layout)

    register_plugin(Plugin(), name="hook-layout-plugin")
    assert layout in checkpoint_layouts()
    source = torch.nn.Linear(4, 3)
    state = {f"inner.{key}": value for key, value in source.state_dict().items()}
    state.update({"norm.m": torch.full((1,), 0.25), "norm.s": torch.full((1,), 0.5), "other.weight": torch.zeros(2)})
    model = with_normalization(torch.nn.Linear(4, 3), (0.0,), (1.0,))
    report = fit_checkpoint(model, state, num_classes=3)
    assert torch.equal(model.network.weight, source.weight)
    assert report.layout == "hook layout: inner.* kept" and report.normalization == "checkpoint (norm.m/norm.s)"
    assert report.mean == [0.25] and report.std == [0.5] and report.clamp == "kept by the hook layout"
    bare = dict(source.state_dict(), **{"nk.m": torch.full((1,), 0.125), "nk.s": torch.full((1,), 2.0)})
    report = fit_checkpoint(with_normalization(torch.nn.Linear(4, 3), (0.0,), (1.0,)), bare, num_classes=3)
    assert report.normalization == "checkpoint (nk.m/nk.s)" and report.mean == [0.125] and report.clamp is None


def test_hook_register_commands(example):
    from pagbench.cli import build_cli

    assert CliRunner().invoke(build_cli(), ["example-hello"]).output.strip() == "hello from pagbench-example-plugin"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_each_of_its_arguments(hook):
    function = getattr(hookspecs, hook)
    doc = inspect.getdoc(function) or ""
    assert len(doc) > 80, f"{hook} has no real docstring: it is the hook's reference"
    for argument in inspect.signature(function).parameters:
        assert re.search(rf"`{argument}\b|\b{argument}\(|``{argument}``", doc), f"{hook}'s docstring never names its argument {argument!r}"
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert re.search(rf"^### `{hook}\(", text, re.MULTILINE), f"CONTRIBUTING.md has no '### `{hook}(...)`' section"


def test_the_hook_reference_is_generated_from_the_docstrings():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "hook_reference.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_hook_reference_check_fails_when_a_docstring_changes(monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import hook_reference
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    current = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert hook_reference.contributing_text(current) == current
    monkeypatch.setattr(hookspecs.register_trainers, "__doc__", "Register trainers: `register(...)` (changed).")
    assert hook_reference.contributing_text(current) != current
    assert "Register trainers: `register(...)` (changed)." in hook_reference.page_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"test_hook_{hook}" in globals(), f"tests/test_hooks.py lacks test_hook_{hook}"


def test_example_plugin_declares_its_entry_point():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points.pagbench]' in text and 'example = "pagbench_example"' in text
