"""Everything validated before compute: values read from files, Python cards, grids, sample
counts, sweep options and resume checkpoints.

Each case is the reproduction of a problem (issue 18) kept as a test: a robustness-library
checkpoint whose ``args.eps`` is ``8/0``, ``1e999`` or NaN, a RobustBench ``model_info`` eps of
NaN, a Python card with a string or NaN strength, ``--sigmas 0.001:1:1000000000``, ``--sigmas
0.1,1e300``, ``--attribution-option samples=1000000000``, ``sweep --emit-jobs`` with ``--sigmas
nan`` / ``--epsilons=-1`` / ``--sigmas ''``, ``sweep --strengths 0`` and a truncated resume
checkpoint. The command-line cases assert exit code 2, one ``Error:`` line, no traceback and no
file written; a model that counts its forward passes shows nothing was evaluated."""

from __future__ import annotations

import argparse
import json
import math
import warnings

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench import ModelCard
from pagbench.errors import PagbenchError
from .cli_checks import one_line_error


def _cli(*args):
    from pagbench.cli import build_cli

    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


# ------------------------------------------------------------------ values read from files
def _robustness_checkpoint(path, eps):
    """The robustness library's layout, with stored training arguments; the weights are never
    reached (the stored eps is checked first)."""
    args = argparse.Namespace(arch="resnet18", dataset="cifar", adv_train=1, constraint="2", eps=eps)
    torch.save({"model": {"module.model.conv1.weight": torch.zeros(1)}, "epoch": 3, "args": args}, path)
    return path


@pytest.mark.parametrize("eps, fragment", [
    ("8/0", "stored args.eps '8/0' is not a number"),
    ("1e999", "stored args.eps must be a finite number, got inf"),
    (float("nan"), "stored args.eps must be a finite number, got nan"),
    ("abc", "stored args.eps 'abc' is not a number"),
    ("-0.5", "stored args.eps must be >= 0"),
], ids=["8/0", "1e999", "nan", "text", "negative"])
def test_a_robustness_checkpoint_with_a_bad_eps_is_one_line_before_evaluation(tmp_path, eps, fragment, synthetic):
    from pagbench.models.loading import load_model

    path = _robustness_checkpoint(tmp_path / "bad.pt", eps)
    with pytest.raises(PagbenchError, match="robustness-library checkpoint") as caught:
        load_model(f"robustness:{path}", synthetic, "cpu", {})
    assert fragment in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)
    out = tmp_path / "r.json"
    one_line_error(_cli("evaluate", "--model", f"robustness:{path}", "--num-images", "4", "--no-progress", "--output", out), fragment)
    assert not out.exists()


def test_a_robustness_checkpoint_with_a_good_eps_records_it(tmp_path):
    from pagbench_plugins.robustness_models.build import _regime

    assert _regime({"adv_train": 1, "constraint": "2", "eps": "8/255"}, "x.pt") == ("pgd", 8 / 255)
    assert _regime({"adv_train": 1, "constraint": "2"}, "x.pt") == ("pgd", None)  # absent: unset, not refused
    assert _regime({"adv_train": 0, "eps": "8/0"}, "x.pt") == ("standard", None)  # not adversarial: eps unused


def test_non_finite_robustness_metadata_is_not_recorded():
    """``epoch: inf`` ended in OverflowError, ``nan`` in ValueError, ``nat_prec1: nan`` in a JSON
    error after the whole evaluation: such metadata is left out of the card."""
    from pagbench_plugins.robustness_models.build import _number

    assert [_number(v) for v in (3, 2.5, torch.tensor(12.5), float("inf"), float("nan"), torch.tensor(float("nan")), True, "3")] \
        == [3, 2.5, 12.5, None, None, None, None, None]


@pytest.mark.parametrize("text, fragment", [
    ('{"eps": NaN}', "field 'eps' is nan, not a finite number"),
    ('{"eps": "nan"}', "field 'eps' is 'nan', not a finite number"),
    ('{"eps": 1e999}', "field 'eps' is inf, not a finite number"),
    ('{"eps": "8/0"}', "field 'eps' is '8/0', not a number or fraction"),
    ('{"eps": "-1"}', "field 'eps' must be >= 0"),
    ('{"clean_acc": "NaN"}', "field 'clean_acc' is 'NaN', not a finite number"),
    ('{"clean_acc": "150"}', "field 'clean_acc' is '150', not a percentage in 0..100"),
], ids=["NaN literal", "nan text", "overflow", "8/0", "negative", "accuracy nan", "accuracy 150"])
def test_a_robustbench_model_info_with_a_bad_number_is_one_line(tmp_path, text, fragment):
    from pagbench_plugins.robustbench_models import modelinfo
    from pagbench_plugins.robustbench_models.spec import parse_name

    path = tmp_path / "model_info" / "cifar10" / "Linf" / "X.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(PagbenchError) as caught:
        modelinfo.find(parse_name("robustbench:cifar10/Linf/X", {}, None), {}, tmp_path)
    assert fragment in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_good_model_info_eps_is_a_float():
    from pagbench_plugins.robustbench_models import modelinfo

    entry = modelinfo.convert({"eps": "8/255", "clean_acc": "90.5"}, "Linf", "x.json")
    assert entry["eps"] == 8 / 255 and entry["clean_accuracy"] == 0.905 and json.dumps(entry, allow_nan=False)


# ------------------------------------------------------------------ Python API cards
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 16 * 16, 10)

    def forward(self, images):
        return self.linear(images.flatten(1))


@pytest.mark.parametrize("card, fragment", [
    ({"strength": "abc"}, "card strength must be a number, got 'abc'"),
    ({"strength": float("nan")}, "card strength must be a finite number, got nan"),
    ({"strength": float("inf")}, "card strength must be a finite number"),
    ({"strength": -1}, "card strength must be >= 0"),
    ({"strength": True}, "card strength must be a number"),
    (ModelCard(architecture="Net", dataset="synthetic", strength="abc"), "card strength must be a number"),
    ({"regime": 3}, "card regime must be text"),
    ({"seed": 1.5}, "card seed must be a whole number"),
], ids=["text", "nan", "inf", "negative", "bool", "ModelCard text", "regime", "seed"])
def test_python_cards_get_the_clis_checks(card, fragment):
    with pytest.raises(PagbenchError, match="pagbench.evaluate: ") as caught:
        pagbench.evaluate(_Net(), card=card, num_images=4, batch_size=4, metrics=("accuracy",))
    assert fragment in str(caught.value)


def test_a_python_card_strength_given_as_text_is_stored_as_a_number():
    result = pagbench.evaluate(_Net(), card={"strength": "0.5", "regime": "noise"}, num_images=4, batch_size=4, metrics=("accuracy",))
    assert result["config"]["model_card"]["strength"] == 0.5


def test_register_model_checks_its_card():
    with pytest.raises(PagbenchError, match=r"register_model\('x'\): card strength must be a finite number"):
        pagbench.register_model("x", _Net(), card=ModelCard(architecture="Net", dataset="synthetic", strength=float("nan")))


def test_the_cli_refuses_a_card_strength_that_is_not_a_number(tmp_path, counting_model):
    out = tmp_path / "r.json"
    one_line_error(_cli("evaluate", "--model", "counting", "--model-option", "card.strength=abc", "--num-images", "4",
                   "--no-progress", "--output", out), "--model-option card.strength must be a number, got 'abc'")
    assert counting_model == [] and not out.exists()


# ------------------------------------------------------------------ bounded grids and sample counts
@pytest.mark.parametrize("arguments, fragment", [
    (["--sigmas", "0.001:1:1000000000"], "--sigmas: 1000000000 points asked for ('0.001:1:1000000000'); at most 1000"),
    (["--sigmas", "0.1,1e300"], "--sigmas must be <= 1000 ([0,1] pixel units), got 1e+300"),
    (["--sigmas", ",".join(["0.1"] * 1001)], "--sigmas has 1001 points; at most 1000"),
    (["--sigma", "1e300"], "--sigma must be <= 1000"),
    (["--epsilons", "0.1:1:5000"], "--epsilons: 5000 points asked for"),
    (["--epsilons", "0.1,1e300"], "--epsilons must be <= 1000"),
    (["--headline-epsilon", "1e300", "--epsilons", "1e300"], "--epsilons must be <= 1000"),
    (["--noise-levels", "0.1:1:100000"], "--noise-levels: 100000 points asked for"),
    (["--noise-levels", "1e999"], "--noise-levels must be a finite number"),
    (["--attribution", "smoothgrad", "--attribution-option", "samples=1000000000"],
     "--attribution-option samples must be a whole number in 1..4096, got '1000000000'"),
    (["--attribution", "smoothgrad", "--attribution-option", "noise=1e300"], "--attribution-option noise must be in 0..1000"),
    (["--attribution", "integrated-gradients", "--attribution-option", "steps=1000000000"],
     "--attribution-option steps must be a whole number in 1..4096"),
], ids=["sigma grid length", "sigma overflow", "sigma list length", "sigma", "epsilon grid length", "epsilon value",
        "headline epsilon", "noise grid length", "noise value", "smoothgrad samples", "smoothgrad noise", "ig steps"])
def test_grids_and_sample_counts_are_bounded_before_compute(tmp_path, counting_model, arguments, fragment):
    out = tmp_path / "r.json"
    one_line_error(_cli("evaluate", "--model", "counting", "--num-images", "4", "--no-progress", "--output", out, *arguments), fragment)
    assert counting_model == [] and not out.exists()


def test_the_bounds_are_inclusive_and_apply_to_python_keywords():
    from pagbench.evaluation.checks import MAX_GRID_POINTS, MAX_PIXEL_SCALE
    from pagbench.console import parse_floats

    assert len(parse_floats(f"0.001:1:{MAX_GRID_POINTS}", "--sigmas")) == MAX_GRID_POINTS
    with pytest.raises(PagbenchError, match="--sigmas must be <= 1000"):
        pagbench.evaluate("bayes", sigmas=(0.1, 1e300), num_images=4)
    with pytest.raises(PagbenchError, match="--sigmas has 1001 points"):
        pagbench.evaluate("bayes", sigmas=[0.1] * 1001, num_images=4)
    with pytest.raises(PagbenchError, match="--epsilons must be <= 1000"):
        pagbench.evaluate("bayes", robustness_epsilons=(1.0, 2e3), num_images=4)
    result = pagbench.evaluate("bayes", robustness_epsilons=(1.0, MAX_PIXEL_SCALE), headline_epsilon=1.0, num_images=4,
                               batch_size=4, metrics=("manifold_robustness",))
    assert result["curves"]["manifold_robustness_off"]["x"] == [1.0, MAX_PIXEL_SCALE]  # the bound itself is allowed
    assert all(math.isfinite(value) for value in result["curves"]["manifold_robustness_off"]["mean"])


# ------------------------------------------------------------------ sweep
@pytest.mark.parametrize("arguments, fragment", [
    (["--sigmas", "nan"], "--sigmas must be a finite number, got nan"),
    (["--epsilons=-1"], "--epsilons must be > 0, got -1.0"),
    (["--sigmas="], "--sigmas: empty list"),
    (["--epsilons="], "--epsilons: empty list"),
    (["--strengths="], "--strengths: empty list"),
    (["--strengths", "inf"], "strengths must be a finite number"),
    (["--sigmas", "0.001:1:1000000000"], "at most 1000"),
], ids=["sigmas nan", "epsilons negative", "sigmas empty", "epsilons empty", "strengths empty", "strengths inf", "sigma grid"])
def test_sweep_emit_jobs_validates_as_evaluate_does(tmp_path, arguments, fragment):
    jobs = tmp_path / "jobs.txt"
    one_line_error(_cli("sweep", "--regime", "noise", "--emit-jobs", jobs, "--output-dir", tmp_path / "sweep", *arguments), fragment)
    assert not jobs.exists() and not (tmp_path / "sweep").exists()


def test_sweep_emit_jobs_passes_good_grids_on(tmp_path):
    jobs = tmp_path / "jobs.txt"
    outcome = _cli("sweep", "--regime", "noise", "--strengths", "0.1", "--emit-jobs", jobs, "--sigmas", "0.1,0.2",
                   "--epsilons", "0.5,1", "--output-dir", tmp_path / "sweep")
    assert outcome.exit_code == 0, outcome.output
    lines = jobs.read_text().splitlines()
    assert len(lines) == 2 and all("--sigmas 0.1,0.2" in line and "--epsilons 0.5,1" in line for line in lines)


def test_sweep_with_only_strength_zero_is_refused_before_training(tmp_path):
    from pagbench.files.paths import cache_dir

    one_line_error(_cli("sweep", "--regime", "noise", "--strengths", "0", "--output-dir", tmp_path / "sweep", "--no-progress"),
              "a sweep figure needs at least one positive strength", "--no-report")
    assert not (tmp_path / "sweep").exists() and not (cache_dir() / "models").exists()  # nothing trained, nothing written


def test_sweep_output_folder_is_checked_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(_cli("sweep", "--regime", "noise", "--strengths", "0.1", "--output-dir", blocker / "sweep", "--no-progress"),
              "--output-dir", "is a file, not a folder")


# ------------------------------------------------------------------ resume checkpoints
def _tiny_training(tmp_path, damage):
    """Train a tiny linear model for one epoch over a resume checkpoint that claims the run is
    finished (epoch 1 of 1) with a marker history, after ``damage`` was done to it."""
    from pagbench.extensions.registry import datasets
    from pagbench.models.store import save_tensors
    from pagbench_plugins.regimes import standard_loss
    from pagbench_plugins.zoo.recipes import recipe_for
    from pagbench_plugins.zoo.training import recipe_dir, train

    dataset = datasets().get("synthetic").factory(None)
    recipe = recipe_for("synthetic", "standard", 0.0).with_overrides(epochs=1)

    def build():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))

    directory = recipe_dir(recipe)
    directory.mkdir(parents=True, exist_ok=True)
    model, optimizer = build(), None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = directory / "checkpoint.pt"
    save_tensors(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1,
                        "history": json.dumps([{"epoch": "from the checkpoint"}]), "rng": torch.get_rng_state(),
                        "generator": torch.Generator().manual_seed(0).get_state()})
    damage(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, record = train(recipe, build, dataset, standard_loss, progress=False)
    return record, [str(w.message) for w in caught]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_without_digest(path):
    _truncate(path)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


@pytest.mark.slow  # trains a (tiny) model for one epoch
@pytest.mark.parametrize("damage", [_truncate, _truncate_without_digest], ids=["with its digest", "without its digest"])
def test_train_refuses_a_truncated_resume_checkpoint_and_restarts_with_a_warning(tmp_path, damage):
    record, messages = _tiny_training(tmp_path, damage)
    assert any("checkpoint.pt" in message and "training from the start" in message for message in messages), messages
    assert [entry["epoch"] for entry in record["history"]] != ["from the checkpoint"]  # trained, not resumed
    assert len(record["history"]) == 1


@pytest.mark.slow
def test_train_resumes_an_intact_checkpoint(tmp_path):
    record, messages = _tiny_training(tmp_path, lambda path: None)
    assert [entry["epoch"] for entry in record["history"]] == ["from the checkpoint"]  # the control: resumed as stored
    assert not any("training from the start" in message for message in messages)
