"""Fault injection: what a careless or malicious user, a damaged disk or a scheduler does.

Each class of fault of issue 12 has tests here: trust read from files (pickles whose loading
would create a marker file), damaged files (bit flips, truncation), interruptions (SIGINT and
SIGTERM in a subprocess), clashing and invalid plugins, non-finite models and batch-size
determinism, and bad values refused before any compute.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench.errors import PagbenchError

from .malicious import Malicious

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bayes_result(tmp_path_factory):
    """A real result document of the Bayes-optimal model on 8 images (computed once)."""
    import pagbench

    from .conftest import env

    with env(PAGBENCH_CACHE_DIR=str(tmp_path_factory.mktemp("cache"))):
        return pagbench.evaluate("bayes", num_images=8, batch_size=8)


@pytest.fixture
def result(bayes_result):
    return copy.deepcopy(bayes_result)


def run_cli(*args, input=None):
    """Invoke the CLI in-process; returns click's Result (exceptions become exit codes)."""
    from pagbench.cli import build_cli

    return CliRunner().invoke(build_cli(), [str(arg) for arg in args], input=input)


def one_line_error(outcome, *fragments) -> str:
    """Assert a user error: exit code 2, one ``Error:`` line, no traceback; returns the line."""
    assert outcome.exit_code == 2, (outcome.exit_code, outcome.output, outcome.exception)
    lines = [line for line in outcome.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in outcome.output, outcome.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


# ------------------------------------------------------------------- 1. trust only from the CLI
def _evil_files(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Malicious(str(marker))}, checkpoint)
    network = tmp_path / "evil.pkl"
    network.write_bytes(pickle.dumps({"ema": Malicious(str(marker))}, protocol=4))
    return marker, checkpoint, network


def _checkpoint_result(result, checkpoint):
    result["config"]["model"] = f"checkpoint:{checkpoint}"
    result["config"]["model_options"] = {"arch": "bayes", "trust_checkpoint": True}
    return result


def _pickle_result(result, network):
    result["config"]["score_provider"] = "edm"
    result["config"]["provider_options"] = {"path": str(network), "trust_pickle": "1"}
    return result


def test_leaderboard_add_drops_trust_and_records_the_flag_it_needs(result, tmp_path):
    from pagbench.leaderboard.store import load_entries

    marker, checkpoint, network = _evil_files(tmp_path)
    source = write_json(tmp_path / "r.json", _pickle_result(_checkpoint_result(result, checkpoint), network))
    outcome = run_cli("leaderboard", "add", source, "--dir", tmp_path / "lb")
    assert outcome.exit_code == 0, outcome.output
    assert "--trust-checkpoint and --trust-pickle" in outcome.output and "does not keep that trust" in outcome.output
    (entry,) = load_entries(tmp_path / "lb")
    text = entry.path.read_text()
    assert "trust_checkpoint" not in text and "trust_pickle" not in text
    assert entry.config["trust_required"] == ["--trust-checkpoint", "--trust-pickle"]
    assert entry.config["model_options"] == {"arch": "bayes"}
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["checkpoint", "pickle"])
@pytest.mark.parametrize("command", ["verify", "gallery"])
def test_an_entry_that_needed_trust_runs_nothing_until_the_flag_is_typed(result, tmp_path, kind, command):
    """Trust keys kept in a hand-written entry, or recorded by add: both are refused, in one line."""
    from pagbench.leaderboard.store import entry_stem, make_entry, seal_entry

    marker, checkpoint, network = _evil_files(tmp_path)
    document = _checkpoint_result(result, checkpoint) if kind == "checkpoint" else _pickle_result(result, network)
    entry = make_entry(document)
    # a malicious entry keeps the keys (as a submitted file could), with a matching content hash
    # (anyone can compute one): they must not grant anything
    entry["config"]["model_options"] = document["config"]["model_options"]
    entry["config"]["provider_options"] = document["config"]["provider_options"]
    entry["config"].pop("trust_required", None)
    root = tmp_path / "lb"
    path = write_json(root / "entries" / "synthetic" / f"{entry_stem(entry)}.json", seal_entry(entry))
    flag = f"--trust-{kind}"
    if command == "verify":
        outcome = run_cli("leaderboard", "verify", path, "--no-progress", "--dir", root)
    else:
        outcome = run_cli("leaderboard", "gallery", "--dir", root)
    one_line_error(outcome, f"was made with {flag}", "nothing was run", f"pass {flag} to `pagbench leaderboard {command}`")
    assert not marker.exists()
    assert not (root / "galleries").exists()


def test_the_typed_flag_reaches_the_loader_and_nothing_else_grants_trust(result, tmp_path, monkeypatch):
    from pagbench.leaderboard.store import add_results, load_entries
    from pagbench.leaderboard.verify import options_from_config

    marker, _, network = _evil_files(tmp_path)
    add_results([write_json(tmp_path / "r.json", _pickle_result(result, network))], tmp_path / "lb")
    (entry,) = load_entries(tmp_path / "lb")
    assert "trust_pickle" not in options_from_config(entry.config).provider_options
    seen = []
    import pagbench_plugins.diffusion.edm as edm

    def fake_load(location, trust):
        seen.append(trust)
        raise PagbenchError("stopped by the test")

    monkeypatch.setattr(edm, "load_network_pickle", fake_load)
    outcome = run_cli("leaderboard", "verify", entry.path, "--trust-pickle", "--no-progress", "--dir", tmp_path / "lb")
    one_line_error(outcome, "stopped by the test")
    assert seen == [True] and not marker.exists()


def test_a_checkpoint_entry_stripped_of_its_record_still_runs_no_code(result, tmp_path):
    """Removing ``trust_required`` by hand gains nothing: the loader itself refuses without the flag."""
    from pagbench.leaderboard.store import add_results, load_entries, seal_entry

    marker, checkpoint, _ = _evil_files(tmp_path)
    add_results([write_json(tmp_path / "r.json", _checkpoint_result(result, checkpoint))], tmp_path / "lb")
    (entry,) = load_entries(tmp_path / "lb")
    document = json.loads(entry.path.read_text())
    del document["config"]["trust_required"]
    entry.path.write_text(json.dumps(seal_entry(document)))  # resealed, as a malicious submitter would
    outcome = run_cli("leaderboard", "verify", entry.path, "--no-progress", "--dir", tmp_path / "lb")
    one_line_error(outcome, "--trust-checkpoint")
    assert not marker.exists()


# --------------------------------------------------------------- 4. registry clashes, bad plugins
@pytest.fixture
def fresh_plugins(monkeypatch, tmp_path):
    """A plugin manager rebuilt from the real entry points plus modules written into tmp_path."""
    import importlib.metadata as metadata

    import pagbench.extensions.manager as plugins_module

    monkeypatch.syspath_prepend(str(tmp_path))
    real = metadata.entry_points

    def add(name, source):
        from .conftest import BUILTINS

        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.setenv("PAGBENCH_LOAD_PLUGINS", f"{BUILTINS},{name}")
        extra = metadata.EntryPoint(name=name, value=name, group="pagbench")
        # the third-party plugin comes first in entry-point order: built-ins must still win
        monkeypatch.setattr(plugins_module.metadata, "entry_points", lambda group=None: [extra] + list(real(group=group)))

    with plugins_module.fresh_plugin_state():
        yield add


THIRD_PARTY_BAYES = """
    import torch
    from pagbench import ModelCard, ModelEntry, hookimpl

    @hookimpl(trylast=True)
    def register_models(register):
        register(ModelEntry("bayes", lambda name, dataset, device: torch.nn.Flatten(),
                            ModelCard(architecture="impostor", dataset="synthetic")))
"""


def test_a_plugin_registering_an_existing_name_is_reported_and_the_builtin_wins(fresh_plugins, monkeypatch):
    import pagbench.extensions.manager as plugins_module
    from pagbench.extensions.registry import models

    fresh_plugins("impostor", THIRD_PARTY_BAYES)
    registry = models()
    assert registry.owner("bayes") == "synthetic" and registry.get("bayes").card.architecture != "impostor"
    assert "resnet18-synthetic-standard-0" in registry  # the rest of the built-in plugin still registers
    (clash,) = plugins_module.plugin_clashes()
    assert (clash.kind, clash.name, clash.kept, clash.ignored, clash.overridden) == ("model", "bayes", "synthetic", "impostor", False)
    output = run_cli("plugins").output
    assert "registered by more than one plugin" in output and "impostor" in output and "PAGBENCH_PLUGIN_OVERRIDES" in output


def test_a_documented_override_replaces_the_builtin_and_says_so(fresh_plugins, monkeypatch):
    import pagbench.extensions.manager as plugins_module
    from pagbench.extensions.registry import models

    fresh_plugins("impostor", THIRD_PARTY_BAYES)
    monkeypatch.setenv("PAGBENCH_PLUGIN_OVERRIDES", "impostor")
    registry = models()
    assert registry.owner("bayes") == "impostor" and registry.get("bayes").card.architecture == "impostor"
    assert [clash.overridden for clash in plugins_module.plugin_clashes()] == [True]


def test_a_plugin_with_a_misspelt_hook_is_reported_and_skipped(fresh_plugins, monkeypatch):
    import pagbench.extensions.manager as plugins_module
    from pagbench.extensions.registry import datasets, models

    fresh_plugins("misspelt", """
        from pagbench import hookimpl

        @hookimpl
        def register_model(register):  # missing "s"
            raise AssertionError("never called")

        @hookimpl
        def register_datasets(register):
            raise AssertionError("a skipped plugin registers nothing")
    """)
    assert "bayes" in models() and "synthetic" in datasets()
    (failure,) = plugins_module.plugin_failures()
    assert failure.name == "misspelt" and "unknown hook(s) register_model" in failure.error
    outcome = run_cli("plugins")
    assert outcome.exit_code == 0 and "misspelt" in outcome.output and "register_model" in outcome.output
    monkeypatch.setenv("PAGBENCH_STRICT_PLUGINS", "1")
    with plugins_module.fresh_plugin_state(), pytest.raises(PagbenchError, match="plugin 'misspelt' failed"):
        plugins_module.get_plugin_manager()


# ------------------------------------------------ 5. non-finite models, batch-size determinism
class _NanOn(torch.nn.Module):
    """The Bayes model, with NaN (or inf) logits on the images selected by ``bad(images)``."""

    def __init__(self, distribution, bad, value=float("nan")):
        super().__init__()
        from pagbench_plugins.synthetic.providers import BayesClassifier

        self.bayes, self.bad, self.value = BayesClassifier(distribution), bad, value

    def forward(self, images):
        logits = self.bayes(images)
        return torch.where(self.bad(images)[:, None], torch.full_like(logits, self.value), logits)


class NanPlugin:
    @hookimpl
    def register_models(self, register):
        card = ModelCard(architecture="test", dataset="synthetic")
        register(ModelEntry("nan-some", lambda name, dataset, device: _NanOn(
            dataset.distribution, lambda x: x.reshape(x.shape[0], -1)[:, 0] > x.reshape(x.shape[0], -1)[:, 0].median()), card))
        register(ModelEntry("inf-some", lambda name, dataset, device: _NanOn(
            dataset.distribution, lambda x: x.reshape(x.shape[0], -1)[:, 0] > x.reshape(x.shape[0], -1)[:, 0].median(),
            float("inf")), card))
        register(ModelEntry("nan-all", lambda name, dataset, device: _NanOn(
            dataset.distribution, lambda x: torch.ones(x.shape[0], dtype=torch.bool)), card))


@pytest.mark.parametrize("model", ["nan-some", "inf-some"])
def test_non_finite_outputs_count_as_wrong_for_accuracy(register_plugin, model):
    import pagbench

    register_plugin(NanPlugin(), name="nan-models")
    bayes = pagbench.evaluate("bayes", num_images=32, batch_size=32, metrics=("accuracy",))
    with pytest.warns(UserWarning, match="count as wrong for accuracy"):
        result = pagbench.evaluate(model, num_images=32, batch_size=32, metrics=("accuracy",))
    bad = result["degenerate"]["nonfinite_logits"]
    assert 0 < bad < 32
    accuracy = result["metrics"]["accuracy"]
    assert accuracy["n"] == 32 and accuracy["excluded"] == 0
    assert accuracy["value"] <= (32 - bad) / 32 and bayes["metrics"]["accuracy"]["value"] > accuracy["value"]


def test_an_all_nan_model_has_accuracy_zero_and_its_gradient_metrics_say_why_n_is_zero(register_plugin):
    import pagbench

    register_plugin(NanPlugin(), name="nan-models")
    with pytest.warns(UserWarning):
        result = pagbench.evaluate("nan-all", num_images=12, batch_size=6)
    assert result["metrics"]["accuracy"]["value"] == 0.0 and result["metrics"]["accuracy"]["n"] == 12
    cosine = result["metrics"]["score_cosine"]
    assert cosine["n"] == 0 and cosine["value"] is None
    assert "all 12 images are degenerate (12 nonfinite logits)" in cosine["reason"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Tiny fitted denoiser and autoencoder (a few steps: determinism, not quality, is tested)."""
    from pagbench_plugins.learned.fit import fit_autoencoder, fit_denoiser
    from pagbench_plugins.learned.store import AutoencoderRecipe, DenoiserRecipe
    from pagbench.extensions.registry import datasets

    from .conftest import env

    cache = tmp_path_factory.mktemp("fitted")
    with env(PAGBENCH_CACHE_DIR=str(cache)):
        synthetic = datasets().get("synthetic").factory(None)
        _, denoiser = fit_denoiser(DenoiserRecipe(dataset="synthetic", steps=3, width=8, batch_size=8), synthetic, progress=False)
        _, autoencoder = fit_autoencoder(AutoencoderRecipe(dataset="synthetic", latent_dim=4, steps=3, width=8, batch_size=8),
                                         synthetic, progress=False)
    return {"denoiser": str(cache / "models" / denoiser["identifier"]),
            "autoencoder": str(cache / "models" / autoencoder["identifier"])}


def _in_batches(compute, images, labels, size):
    return torch.cat([compute(images[s : s + size], labels[s : s + size]) for s in range(0, images.shape[0], size)])


def _providers(kind, fitted, tmp_path):
    """(name, options) of every built-in provider of ``kind`` that can run offline here."""
    if kind == "score":
        from .edm_pickle import write_edm_pickle

        write_edm_pickle(tmp_path / "edm.pkl", label_dim=10)
        found = [("analytic", {}), ("denoiser", {"denoiser": fitted["denoiser"]}),
                 ("edm", {"path": str(tmp_path / "edm.pkl"), "trust_pickle": "1"})]
        try:
            import diffusers

            from .test_diffusion_scores import tiny_unet

            diffusers.DDPMPipeline(unet=tiny_unet(diffusers, 0, classes=10), scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path / "pipe")
            found.append(("diffusers", {"path": str(tmp_path / "pipe")}))
        except ImportError:
            pass
        return found
    return [("analytic", {}), ("autoencoder", {"autoencoder": fitted["autoencoder"]}),
            ("denoiser", {"denoiser": fitted["denoiser"], "k": "4", "iterations": "2", "oversampling": "2"})]


@pytest.mark.parametrize("kind", ["score", "manifold"])
def test_every_builtin_provider_gives_the_same_numbers_at_two_batch_sizes(kind, fitted, synthetic, tmp_path):
    from pagbench.extensions.registry import manifold_providers, score_providers

    table = score_providers() if kind == "score" else manifold_providers()
    batch = synthetic.split("test").batch(list(range(32)))
    probe = torch.randn(32, synthetic.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    checked = []
    for name, options in _providers(kind, fitted, tmp_path):
        provider = table.get(name).factory(synthetic, options)
        if kind == "score":
            score_kind = "conditional" if name in ("edm", "diffusers") else "posterior"
            sigma = 0.05 if name != "analytic" else 0.0

            def compute(images, labels):
                return provider.scores(images, labels, sigma, score_kind)
        else:
            def compute(images, labels):  # a basis is defined up to rotation: compare projections
                basis = provider.tangent_basis(images, labels)
                return basis
        results = [_in_batches(compute, batch.images, batch.labels, size) for size in (16, 32)]
        if kind == "manifold":
            results = [torch.einsum("bkd,bk->bd", basis, torch.einsum("bkd,bd->bk", basis, probe)) for basis in results]
        # float32 rounding, relative to the largest value: the fitted denoiser's score moves by 5.5e-7
        # between batch sizes 16 and 32 under the pinned AVX2 kernels (MKL_CBWR=AVX2; 0 with the CPU's own)
        difference = float((results[0] - results[1]).abs().max() / results[1].abs().max().clamp_min(1e-30))
        assert difference <= 1e-5, (name, difference)
        checked.append(name)
    assert {"analytic", "denoiser"} <= set(checked)


def test_the_denoiser_manifold_gives_the_same_metrics_at_batch_size_16_and_32(fitted):
    import pagbench

    numbers = []
    for batch_size in (16, 32):
        result = pagbench.evaluate("bayes", num_images=32, batch_size=batch_size, manifold_provider="denoiser",
                                   metrics=("on_manifold_fraction",),
                                   provider_options={"denoiser": fitted["denoiser"], "k": "4", "iterations": "2"})
        numbers.append(result["metrics"]["on_manifold_fraction"]["value"])
    assert numbers[0] == pytest.approx(numbers[1], abs=1e-9)


# ------------------------------------------------------- 3. SIGINT / SIGTERM in a subprocess
CHILD = """
import os, sys, time
import torch
from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench.extensions.manager import get_plugin_manager


class Blocking(torch.nn.Module):
    # a model that says when the evaluation proper has started, then works forever
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 16 * 16, 10)

    def forward(self, images):
        if images.shape[0] > 1:
            open(os.environ["READY_FILE"], "w").close()
            while True:
                time.sleep(0.01)
        return self.linear(images.reshape(images.shape[0], -1))


class BlockingPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelEntry("blocking", lambda name, dataset, device: Blocking(),
                            ModelCard(architecture="test", dataset="synthetic")))


get_plugin_manager().register(BlockingPlugin(), name="blocking-plugin")
from pagbench.cli import main

sys.argv = ["pagbench"] + sys.argv[1:]
main()
"""


def _child_env(tmp_path, ready):
    from .conftest import BUILTINS

    return {**os.environ, "PAGBENCH_CACHE_DIR": str(tmp_path / "cache"), "PAGBENCH_LOAD_PLUGINS": BUILTINS,
            "PAGBENCH_OFFLINE": "1", "READY_FILE": str(ready), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _interrupt_when_ready(command, ready, tmp_path, signum, env=None, timeout=120):
    """Start ``command``, wait (bounded) until ``ready`` exists, send ``signum``; (rc, stderr)."""
    process = subprocess.Popen(command, cwd=tmp_path, env=env or _child_env(tmp_path, ready),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not Path(ready).exists():
            if process.poll() is not None:
                raise AssertionError(f"child exited early ({process.returncode}): {process.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("child never became ready")
            time.sleep(0.05)  # polling interval, not an assertion
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_evaluate_interrupted_exits_cleanly_and_writes_no_result(tmp_path, signum, code, word):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ready = tmp_path / "ready"
    rc, stderr = _interrupt_when_ready([sys.executable, str(script), "evaluate", "--model", "blocking", "--num-images", "8",
                                        "--batch-size", "4", "--no-progress", "--output-dir", str(tmp_path / "results")],
                                       ready, tmp_path, signum)
    assert rc == code, stderr
    assert "Traceback" not in stderr and f"Error: {word}" in stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_leaderboard_verify_terminated_exits_143_without_a_traceback(tmp_path, result):
    from pagbench.leaderboard.store import entry_stem, make_entry

    result["config"]["model"] = "blocking"
    entry = make_entry(result)
    path = write_json(tmp_path / "lb" / "entries" / "synthetic" / f"{entry_stem(entry)}.json", entry)
    before = path.read_bytes()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ready = tmp_path / "ready"
    rc, stderr = _interrupt_when_ready([sys.executable, str(script), "leaderboard", "verify", str(path), "--no-progress",
                                        "--dir", str(tmp_path / "lb")], ready, tmp_path, signal.SIGTERM)
    assert rc == 143 and "Traceback" not in stderr and "Error: terminated" in stderr, stderr
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.slow
def test_training_terminated_after_an_epoch_exits_143_and_resumes(tmp_path):
    """SIGTERM once the first epoch's checkpoint exists: exit 143, no weights; a rerun resumes."""
    from .conftest import env

    with env(PAGBENCH_CACHE_DIR=str(tmp_path / "cache")):
        from pagbench_plugins.zoo.recipes import recipe_for
        from pagbench_plugins.zoo.training import recipe_dir

        recipe = recipe_for("synthetic", "standard", 0.0).with_overrides(epochs=3)
        directory = recipe_dir(recipe)
    command = [sys.executable, "-m", "pagbench", "train", "--epochs", "3", "--no-progress"]
    rc, stderr = _interrupt_when_ready(command, directory / "checkpoint.pt", tmp_path, signal.SIGTERM, timeout=600)
    assert rc == 143 and "Traceback" not in stderr and "Error: terminated" in stderr, stderr
    assert (directory / "checkpoint.pt").exists() and not (directory / "weights.pt").exists()
    again = subprocess.run(command, cwd=tmp_path, env=_child_env(tmp_path, tmp_path / "unused"), capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr + again.stdout and (directory / "weights.pt").exists()


PROGRESS_CHILD = """
import contextlib, os, sys, time
import pagbench.progress as progress

_original = progress.progress_bar


@contextlib.contextmanager
def _signalling(*args, **kwargs):
    # the real (possibly silent) bar; its first step of work also creates READY_FILE, and with
    # SLOW_STEPS each later step waits a little, so the run is still going when the signal comes
    with _original(*args, **kwargs) as advance:
        def step(steps=1, **fields):
            advance(steps, **fields)
            if steps:
                ready = os.environ["READY_FILE"]
                if os.path.exists(ready) and os.environ.get("SLOW_STEPS"):
                    time.sleep(0.5)
                open(ready, "w").close()
        yield step


progress.progress_bar = _signalling
import pagbench_plugins.learned.fit as fit

fit.progress_bar = _signalling  # imported by name there
from pagbench.cli import main

sys.argv = ["pagbench"] + sys.argv[1:]
main()
"""


def _terminated_cleanly(rc, stderr):
    assert rc == 143, (rc, stderr)
    assert "Traceback" not in stderr and "Error: terminated" in stderr, stderr


def _stored_files(cache: Path) -> list[str]:
    """Weights and records in the model store (a fitted provider or trained model that was kept)."""
    store = cache / "models"
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()) if store.exists() else []


@pytest.mark.slow  # trains or fits a model
@pytest.mark.parametrize("command", [
    ["fit-score", "--steps", "40", "--width", "8", "--batch-size", "8"],
    ["fit-manifold", "--latent-dim", "4", "--steps", "40", "--width", "8", "--batch-size", "8"],
], ids=["fit-score", "fit-manifold"])
def test_fitting_terminated_exits_143_keeps_nothing_and_the_rerun_fits(tmp_path, command):
    """SIGTERM during the fitting loop: exit 143, no traceback, nothing in the store; the same
    command run again (fitting has no resume checkpoint: it starts over) completes."""
    script = tmp_path / "child.py"
    script.write_text(PROGRESS_CHILD)
    ready = tmp_path / "ready"
    env = {**_child_env(tmp_path, ready), "SLOW_STEPS": "1"}
    rc, stderr = _interrupt_when_ready([sys.executable, str(script), *command, "--no-progress"], ready, tmp_path, signal.SIGTERM,
                                       env=env)
    _terminated_cleanly(rc, stderr)
    assert _stored_files(tmp_path / "cache") == []
    again = subprocess.run([sys.executable, "-m", "pagbench", *command, "--no-progress"], cwd=tmp_path,
                           env=_child_env(tmp_path, tmp_path / "unused"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    stored = _stored_files(tmp_path / "cache")
    assert any(name.endswith("/weights.pt") for name in stored) and any(name.endswith("/weights.pt.sha256") for name in stored)


def _sweep_command(tmp_path, epochs):
    return ["sweep", "--regime", "noise", "--strengths", "0", "--epochs", str(epochs), "--num-images", "8", "--batch-size", "8",
            "--no-report", "--output-dir", str(tmp_path / "sweep"), "--no-progress"]


@pytest.mark.slow  # trains or fits a model
def test_sweep_terminated_while_training_exits_143_and_writes_no_result(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(PROGRESS_CHILD)
    ready = tmp_path / "ready"
    rc, stderr = _interrupt_when_ready([sys.executable, str(script), *_sweep_command(tmp_path, 1)], ready, tmp_path,
                                       signal.SIGTERM)
    _terminated_cleanly(rc, stderr)
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").rglob("*.json"))
    assert not any(name.endswith("weights.pt") for name in _stored_files(tmp_path / "cache"))


@pytest.mark.slow
def test_sweep_terminated_after_an_epoch_exits_143_and_the_rerun_resumes(tmp_path):
    from .conftest import env

    with env(PAGBENCH_CACHE_DIR=str(tmp_path / "cache")):
        from pagbench_plugins.zoo.recipes import recipe_for
        from pagbench_plugins.zoo.training import recipe_dir

        directory = recipe_dir(recipe_for("synthetic", "standard", 0.0, seed=0, preset="cpu", epochs=2))
    command = [sys.executable, "-m", "pagbench", *_sweep_command(tmp_path, 2)]
    rc, stderr = _interrupt_when_ready(command, directory / "checkpoint.pt", tmp_path, signal.SIGTERM, timeout=600)
    _terminated_cleanly(rc, stderr)
    assert (directory / "checkpoint.pt").exists() and not (directory / "weights.pt").exists(), sorted(os.listdir(directory))
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").rglob("*.json"))
    again = subprocess.run(command, cwd=tmp_path, env=_child_env(tmp_path, tmp_path / "unused"), capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and (directory / "weights.pt").exists(), again.stderr
    assert [p.name for p in (tmp_path / "sweep").glob("*.json")] == ["resnet18-synthetic-standard-0.json"], again.stderr


def test_leaderboard_gallery_terminated_exits_143_and_draws_nothing(tmp_path, result):
    from pagbench.leaderboard.store import entry_stem, make_entry

    result["config"]["model"] = "blocking"
    entry = make_entry(result)
    root = tmp_path / "lb"
    path = write_json(root / "entries" / "synthetic" / f"{entry_stem(entry)}.json", entry)
    before = path.read_bytes()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ready = tmp_path / "ready"
    rc, stderr = _interrupt_when_ready([sys.executable, str(script), "leaderboard", "gallery", "--num-images", "4", "--dir", str(root)],
                                       ready, tmp_path, signal.SIGTERM)
    _terminated_cleanly(rc, stderr)
    assert path.read_bytes() == before
    assert not (root / "galleries").exists() or not any((root / "galleries").rglob("*.png"))


# ------------------------------------------------------------- 2. damaged files: flips, cuts
def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_verify_archive_finds_a_flipped_bit_or_a_cut_in_a_torch_zip(tmp_path, damage):
    from pagbench.files.integrity import DamagedFile, verify_archive

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.arange(4096, dtype=torch.float32)}, path)
    verify_archive(path)  # intact: passes
    damage(path)
    with pytest.raises(DamagedFile, match=r"weights.pt: damaged zip archive .*re-download or re-save it") as caught:
        verify_archive(path)
    assert "\n" not in str(caught.value)


def test_verify_archive_leaves_files_that_are_not_zip_archives_to_their_loaders(tmp_path):
    from pagbench.files.integrity import verify_archive

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    verify_archive(legacy)
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    verify_archive(tmp_path / "model.safetensors")


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_a_damaged_geometry_cache_file_is_reported_once_and_recomputed(tmp_path, damage):
    from pagbench.evaluation.cache import GeometryCache

    calls = []

    def compute():
        calls.append(1)
        return torch.linspace(0, 1, 2000, dtype=torch.float64)

    key = GeometryCache.key(kind="tangent", test="damage")
    first = GeometryCache(tmp_path).get_or_compute(key, compute)
    (path,) = list(tmp_path.rglob("*.pt"))
    assert torch.equal(GeometryCache(tmp_path).get_or_compute(key, compute), first) and len(calls) == 1  # disk hit
    damage(path)
    with pytest.warns(UserWarning, match="does not match its SHA-256.*recomputing it"):
        again = GeometryCache(tmp_path).get_or_compute(key, compute)
    assert torch.equal(again, first) and len(calls) == 2
    assert torch.equal(GeometryCache(tmp_path).get_or_compute(key, compute), first) and len(calls) == 2  # rewritten intact


def _cache_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Every file in the geometry cache: relative name → (inode, mtime in ns)."""
    folder = cache / "geometry"
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # trains or fits a model
def test_two_processes_on_one_fresh_cache_agree_and_a_third_reads_what_they_wrote(tmp_path, fitted):
    """Two ``pagbench evaluate`` processes started together on one empty cache directory (a
    disk-cached provider: both compute and write the same keys) both succeed with identical
    metrics; every cache file is whole and sealed; a third run gives the same metrics from the
    cache without rewriting a file."""
    from pagbench.files.integrity import unseal

    cache = tmp_path / "shared-cache"
    environment = {**_child_env(tmp_path, tmp_path / "unused"), "PAGBENCH_CACHE_DIR": str(cache)}

    def command(name):
        return [sys.executable, "-m", "pagbench", "evaluate", "--model", "bayes", "--num-images", "16", "--batch-size", "8",
                "--score-provider", "denoiser", "--manifold-provider", "denoiser", "--provider-option", f"denoiser={fitted['denoiser']}",
                "--provider-option", "k=4", "--provider-option", "iterations=2", "--metric", "score_cosine",
                "--metric", "on_manifold_fraction", "--no-progress", "--output", str(tmp_path / f"{name}.json")]

    processes = [subprocess.Popen(command(name), cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for name in ("first", "second")]
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
        assert "SHA-256" not in stderr and "cannot be read" not in stderr, stderr  # no damaged file was met
    metrics = [json.loads((tmp_path / f"{name}.json").read_text())["metrics"] for name in ("first", "second")]
    assert metrics[0] == metrics[1] and metrics[0]["score_cosine"]["n"] == 16
    files = _cache_files(cache)
    assert files and not [name for name in files if not name.endswith(".pt")]  # no temporary file left behind
    for name in files:
        assert unseal((cache / "geometry" / name).read_bytes(), name) is not None  # whole, with a matching SHA-256
    third = subprocess.run(command("third"), cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "SHA-256" not in third.stderr
    assert json.loads((tmp_path / "third.json").read_text())["metrics"] == metrics[0]
    assert _cache_files(cache) == files  # read from the cache: no file recomputed or rewritten


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_a_zoo_model_with_damaged_stored_weights_is_retrained_on_next_use_with_one_warning(tmp_path, damage, synthetic, capsys):
    """The model store's weights of a zoo model damaged on disk: ``obtain`` (what every use of a
    zoo name goes through) warns once, retrains the recipe (training is deterministic: the same
    weights), and stores intact weights that the next use loads without a word."""
    import warnings

    from pagbench_plugins.zoo.build import obtain
    from pagbench_plugins.zoo.recipes import recipe_for
    from pagbench_plugins.zoo.training import recipe_dir

    recipe = recipe_for("synthetic", "standard", 0.0).with_overrides(epochs=1)
    first, _ = obtain(recipe, synthetic, progress=False)
    weights = recipe_dir(recipe) / "weights.pt"
    assert weights.is_file() and (recipe_dir(recipe) / "weights.pt.sha256").is_file()
    trained = weights.read_bytes()
    damage(weights)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, _ = obtain(recipe, synthetic, progress=False)
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 1 and "weights.pt" in messages[0] and "retraining the model" in messages[0], messages
    assert f"retraining {recipe.identifier}" in capsys.readouterr().err
    assert weights.read_bytes() == trained  # retrained to the same weights, stored intact
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    stamp = weights.stat().st_mtime_ns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obtain(recipe, synthetic, progress=False)
    assert [str(warning.message) for warning in caught] == [] and weights.stat().st_mtime_ns == stamp  # loaded, not retrained


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_damaged_fitted_provider_weights_are_refused_in_one_line(fitted, tmp_path, damage, synthetic):
    import shutil

    from pagbench_plugins.learned import store

    directory = tmp_path / Path(fitted["denoiser"]).name
    shutil.copytree(fitted["denoiser"], directory)
    assert (directory / "weights.pt.sha256").is_file()
    store.load(directory)
    damage(directory / "weights.pt")
    with pytest.raises(PagbenchError) as caught:
        store.load(directory)
    message = str(caught.value)
    assert "\n" not in message and "weights.pt" in message and "pagbench fit-score --dataset synthetic" in message
    outcome = run_cli("evaluate", "--model", "bayes", "--num-images", "4", "--no-progress", "--score-provider", "denoiser",
                      "--provider-option", f"denoiser={directory}", "--output", tmp_path / "r.json")
    one_line_error(outcome, "weights.pt")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_damaged_model_store_weights_and_resume_checkpoints_are_detected(tmp_path, damage):
    from pagbench.files.integrity import DamagedFile
    from pagbench.models.store import load_tensors as load_tensor_file, save_tensors as _save_tensor_file

    path = tmp_path / "weights.pt"
    _save_tensor_file(path, {"w": torch.arange(4096, dtype=torch.float32)})
    assert torch.equal(load_tensor_file(path)["w"], torch.arange(4096, dtype=torch.float32))
    damage(path)
    with pytest.raises(DamagedFile, match="weights.pt"):
        load_tensor_file(path)


# ------------------------------------------------------- 6. bad values refused before compute
@pytest.mark.parametrize("arguments, fragment", [
    (["--sigma", "inf"], "--sigma must be a finite number"),
    (["--sigma", "nan"], "--sigma must be"),
    (["--epsilons", "nan"], "--epsilons must be a finite number"),
    (["--epsilons", "inf"], "--epsilons must be a finite number"),
    (["--epsilons=-1,1"], "--epsilons must be > 0"),
    (["--noise-levels", "nan"], "--noise-levels must be a finite number"),
    (["--noise-levels", "0"], "--noise-levels must be > 0"),
    (["--noise-levels=-0.1,1"], "--noise-levels must be > 0"),
    (["--epsilons", "0.1,1", "--headline-epsilon", "0.5"], "--headline-epsilon 0.5 is not in the ε grid (0.1,1)"),
    (["--headline-epsilon", "0.5"], "--headline-epsilon 0.5 is not in the ε grid (1)"),
    (["--headline-epsilon", "nan"], "--headline-epsilon must be a finite number"),
    (["--device", "mps"], "unsupported device 'mps'"),
    (["--device", "meta"], "unsupported device 'meta'"),
    (["--model-option", "card.strength=nan"], "--model-option card.strength must be a finite number"),
    (["--model-option", "mean=nan,0.5,0.5"], "--model-option mean must be a finite number"),
    (["--model-option", "std=0,1,1"], "--model-option std must be > 0"),
    (["--score-provider", "denoiser", "--provider-option", "path=/nonexistent"], "unknown provider option(s) path"),
    (["--provider-option", "k=3"], "unknown provider option(s) k for score provider 'analytic'"),
])
def test_bad_numbers_devices_and_option_keys_are_one_line_errors_before_compute(tmp_path, arguments, fragment):
    outcome = run_cli("evaluate", "--model", "bayes", "--num-images", "4", "--no-progress", "--output-dir", tmp_path / "out", *arguments)
    one_line_error(outcome, fragment)
    assert not (tmp_path / "out").exists()


def test_the_headline_epsilon_in_the_grid_is_the_one_reported():
    import pagbench

    result = pagbench.evaluate("bayes", num_images=4, batch_size=4, metrics=("manifold_robustness",),
                               robustness_epsilons=(0.1, 0.5, 1.0), headline_epsilon=0.5)
    assert result["metric_settings"]["manifold_robustness"]["headline_epsilon"] == 0.5


def test_a_bad_environment_variable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PAGBENCH_MEMORY_CACHE_MB", "abc")
    one_line_error(run_cli("evaluate", "--model", "bayes", "--num-images", "4", "--no-progress", "--output-dir", tmp_path / "out"),
                   "PAGBENCH_MEMORY_CACHE_MB must be a whole number")


@pytest.mark.parametrize("where", ["output-parent", "output-dir", "cache-dir"])
def test_unusable_output_locations_are_refused_before_compute(tmp_path, monkeypatch, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    arguments = {"output-parent": ["--output", blocker / "r.json"], "output-dir": ["--output-dir", blocker], "cache-dir": []}[where]
    if where == "cache-dir":
        monkeypatch.setenv("PAGBENCH_CACHE_DIR", str(blocker))
        arguments = ["--output-dir", tmp_path / "out"]
    calls = []
    import pagbench.evaluation.runner as runner

    monkeypatch.setattr(runner, "input_gradients", lambda *a, **k: calls.append(1))
    outcome = run_cli("evaluate", "--model", "bayes", "--num-images", "4", "--no-progress", *arguments)
    one_line_error(outcome, "is a file")
    assert calls == [] and blocker.read_text() == "in the way"


def test_a_standard_zoo_model_with_a_strength_is_refused(tmp_path):
    one_line_error(run_cli("evaluate", "--model", "resnet18-synthetic-standard-0.5", "--num-images", "4", "--no-progress"),
                   "standard training has no strength")
    one_line_error(run_cli("train", "--regime", "standard", "--strength", "0.5", "--no-progress"), "standard training has no strength")


def _idx(path: Path, array) -> None:
    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())


def test_mnist_files_of_30x30_images_are_one_line(tmp_path):
    import numpy as np

    from pagbench_plugins.datasets.mnist import load_split

    _idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 30, 30)))
    _idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(PagbenchError, match="are 30x30, expected 28x28"):
        load_split(tmp_path, "train")


def test_a_deeply_nested_json_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    one_line_error(run_cli("leaderboard", "add", path, "--dir", tmp_path / "lb"), "nested too deeply")
    assert not (tmp_path / "lb").exists()


def test_leaderboard_add_refuses_booleans_and_oversized_entries_and_drops_unknown_fields(result, tmp_path):
    from pagbench.leaderboard.store import load_entries

    boolean = copy.deepcopy(result)
    boolean["metrics"]["accuracy"]["value"] = True
    one_line_error(run_cli("leaderboard", "add", write_json(tmp_path / "b.json", boolean), "--dir", tmp_path / "lb"),
                   "metric 'accuracy' value is not a number")
    large = copy.deepcopy(result)
    large["warnings"] = ["x" * (3 * 2**20)]  # one text field too long: refused by the entry checks
    one_line_error(run_cli("leaderboard", "add", write_json(tmp_path / "l.json", large), "--dir", tmp_path / "lb"),
                   "warnings[0] is 3145728 characters long (at most 4096)")
    large["warnings"] = ["x" * 1000] * 3000  # short texts, 3 MB in all: refused by the entry size bound
    one_line_error(run_cli("leaderboard", "add", write_json(tmp_path / "l.json", large), "--dir", tmp_path / "lb"), "MiB")
    assert not (tmp_path / "lb").exists()
    extra = copy.deepcopy(result)
    extra["payload"] = {"anything": 1}
    assert run_cli("leaderboard", "add", write_json(tmp_path / "e.json", extra), "--dir", tmp_path / "lb").exit_code == 0
    (entry,) = load_entries(tmp_path / "lb")
    assert "payload" not in json.loads(entry.path.read_text())


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_leaderboard_build_refuses_a_folder_that_is_not_a_board(tmp_path, check):
    one_line_error(run_cli("leaderboard", "build", *check, "--dir", tmp_path / "leaderbord"), "no such leaderboard folder")
    assert not (tmp_path / "leaderbord").exists()
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("leaderboard", "build", *check, "--dir", tmp_path / "empty"), "is not a leaderboard folder")
    assert list((tmp_path / "empty").iterdir()) == []
