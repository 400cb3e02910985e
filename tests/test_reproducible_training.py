"""Numbers that reproduce on another machine: zoo training pinned to the recipe's CPU thread count
(bit-identical weights whatever the caller's thread count), and ``leaderboard verify`` telling the
same weights (tight tolerance) from weights retrained from the recipe (the recipe's seed spread)."""

import copy
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pagbench.cli import build_cli
from pagbench_plugins.zoo.training import TrainingRecipe, train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="synthetic", width=2, epochs=1, lr=0.05, batch_size=64, lr_milestones=(), augment="crop-flip")


@pytest.fixture(scope="module")
def small():
    from pagbench_plugins.synthetic.dataset import build_dataset

    return build_dataset(train_size=384, test_size=64)


def trained(recipe, dataset, caller_threads: int) -> dict:
    from pagbench_plugins.regimes import standard_loss
    from pagbench_plugins.zoo.build import architecture

    saved = torch.get_num_threads()
    torch.set_num_threads(caller_threads)
    try:
        model, record = train(recipe, lambda: architecture(recipe, dataset), dataset, standard_loss, progress=False)
        assert torch.get_num_threads() == caller_threads  # the caller's count is restored
    finally:
        torch.set_num_threads(saved)
    assert record["execution"]["cpu_threads"] == recipe.cpu_threads
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.mark.slow  # trains three tiny models (a few seconds each)
def test_two_caller_thread_counts_train_bit_identical_weights(small, tmp_path, monkeypatch):
    recipe = TrainingRecipe(regime="standard", **TINY)
    monkeypatch.setenv("PAGBENCH_CACHE_DIR", str(tmp_path / "one"))
    one = trained(recipe, small, caller_threads=1)
    monkeypatch.setenv("PAGBENCH_CACHE_DIR", str(tmp_path / "two"))
    two = trained(recipe, small, caller_threads=2)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key
    # the control: the same recipe pinned to two threads trains other weights, so the pin is
    # what makes the two runs above agree
    monkeypatch.setenv("PAGBENCH_CACHE_DIR", str(tmp_path / "pinned-two"))
    other = trained(recipe.with_overrides(cpu_threads=2), small, caller_threads=1)
    assert any(not torch.equal(one[key], other[key]) for key in one)


def test_the_thread_count_enters_the_recipe_id_only_when_not_one():
    recipe = TrainingRecipe(dataset="synthetic", regime="pgd", strength=0.3, width=8, regime_options={"steps": 3, "step_factor": 2.0},
                            dataset_version="1")
    assert "cpu_threads" not in recipe.as_dict()
    assert recipe.identifier == "resnet18-w8-synthetic-pgd-0.3-s0-759dc8c12f"  # a committed entry's recipe
    assert recipe.with_overrides(cpu_threads=2).identifier != recipe.identifier
    from pagbench.errors import PagbenchError

    for bad in (0, True, 1.5):
        with pytest.raises(PagbenchError, match="cpu_threads must be a positive integer"):
            recipe.with_overrides(cpu_threads=bad).validate()


# ------------------------------------------------------------------------------------- verify
@pytest.fixture(scope="module")
def bayes_result(tmp_path_factory):
    import pagbench

    from .conftest import env

    with env(PAGBENCH_CACHE_DIR=str(tmp_path_factory.mktemp("cache"))):
        return pagbench.evaluate("bayes", num_images=20, batch_size=20)


@pytest.fixture(scope="module")
def fewer_images(tmp_path_factory):
    import pagbench

    from .conftest import env

    with env(PAGBENCH_CACHE_DIR=str(tmp_path_factory.mktemp("cache"))):
        return pagbench.evaluate("bayes", num_images=10, batch_size=10)


def board_with(tmp_path, *results) -> Path:
    from pagbench.leaderboard.store import add_results

    root = tmp_path / "board"
    paths = []
    for index, result in enumerate(results):
        path = tmp_path / f"r{index}.json"
        path.write_text(json.dumps(result))
        paths.append(path)
    add_results(paths, root)
    return root


def edited_entry(root: Path, model: str, change, num_images=None):
    """The entry of ``model`` (with ``num_images``, when given) after ``change(document)`` and a reseal."""
    from pagbench.leaderboard.store import load_entries, reseal_entries

    def find():
        (found,) = [entry for entry in load_entries(root)
                    if entry.model == model and num_images in (None, entry.config["num_images"])]
        return found

    entry = find()
    document = json.loads(entry.path.read_text())
    change(document)
    entry.path.write_text(json.dumps(document))
    reseal_entries([entry.path], root)
    return find()


def test_results_record_the_weights_digest(bayes_result):
    from pagbench.results.documents import weights_digest

    digest = bayes_result["config"]["weights_sha256"]
    assert isinstance(digest, str) and len(digest) == 64
    first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    second.load_state_dict(first.state_dict())
    assert weights_digest(first) == weights_digest(second)
    with torch.no_grad():
        second.bias[0] += 1e-7
    assert weights_digest(first) != weights_digest(second)


def test_verify_compares_the_same_weights_at_the_tight_tolerance(bayes_result, tmp_path):
    from pagbench.leaderboard.store import load_entries
    from pagbench.leaderboard.verify import SAME_WEIGHTS, VERIFY_ABSOLUTE_TOLERANCE, verify_entry

    root = board_with(tmp_path, bayes_result)
    (entry,) = load_entries(root)
    report = verify_entry(entry)
    assert report.case == SAME_WEIGHTS and report.reproduces
    assert {check.tolerance for check in report.compared} == {VERIFY_ABSOLUTE_TOLERANCE}
    assert "same weights" in report.case_text


def test_verify_compares_retrained_weights_against_the_seed_spread(bayes_result, tmp_path):
    from pagbench.leaderboard.store import load_entries
    from pagbench.leaderboard.verify import (RETRAINED, UNKNOWN_WEIGHTS, VERIFY_ABSOLUTE_TOLERANCE, VERIFY_RETRAINED_ABSOLUTE,
                                             VERIFY_RETRAINED_RELATIVE, VERIFY_SEED_RANGES, verify_entry)

    seeded = copy.deepcopy(bayes_result)
    seeded["config"]["model_card"]["seed"] = 0
    # another training seed of the same recipe (same card but its seed): score_cosine 0.2 lower
    # (a range above the default), accuracy 0.001 lower (below it: the default is a floor)
    other = copy.deepcopy(seeded)
    other["config"]["model"] = "bayes-s1"
    other["config"]["model_card"]["seed"] = 1
    other["metrics"]["score_cosine"]["value"] -= 0.2
    other["metrics"]["accuracy"]["value"] -= 0.001
    root = board_with(tmp_path, seeded, other)
    pool = load_entries(root)
    entry = edited_entry(root, "bayes", lambda d: d["config"].update(weights_sha256="0" * 64))
    report = verify_entry(entry, seed_entries=pool)
    assert report.case == RETRAINED and report.seeds == 1 and report.reproduces
    checks = {check.name: check for check in report.checks}
    assert checks["score_cosine"].tolerance == pytest.approx(VERIFY_ABSOLUTE_TOLERANCE + VERIFY_SEED_RANGES * 0.2)
    assert checks["accuracy"].tolerance == pytest.approx(
        VERIFY_ABSOLUTE_TOLERANCE + VERIFY_RETRAINED_RELATIVE * checks["accuracy"].stored + VERIFY_RETRAINED_ABSOLUTE)
    assert "2× the range over 2 training seeds" in report.case_text
    # no other seed on record: the stated default
    alone = verify_entry(entry, seed_entries=[])
    accuracy = alone.entry.value("accuracy")
    assert {c.name: c for c in alone.checks}["accuracy"].tolerance == pytest.approx(
        VERIFY_ABSOLUTE_TOLERANCE + VERIFY_RETRAINED_RELATIVE * accuracy + VERIFY_RETRAINED_ABSOLUTE)
    assert "no other training seed" in alone.case_text
    # an entry without a digest (made before entries carried one) is compared as retrained, and says so
    unknown = edited_entry(root, "bayes", lambda d: d["config"].pop("weights_sha256"))
    report = verify_entry(unknown, seed_entries=pool)
    assert report.case == UNKNOWN_WEIGHTS and "records no weights digest" in report.case_text and report.reproduces


def test_verify_all_summarises_the_board_and_fails_when_one_entry_does_not_reproduce(bayes_result, fewer_images, tmp_path):
    cli = build_cli()
    root = board_with(tmp_path, bayes_result, fewer_images)  # two rows: 20 and 10 images
    ok = CliRunner().invoke(cli, ["leaderboard", "verify", "--all", "--no-progress", "--dir", str(root)], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert "every entry reproduces (2 entries" in ok.output and ok.output.count("same weights") >= 2
    entry = edited_entry(root, "bayes", lambda d: d["metrics"]["score_cosine"].update(value=0.5), num_images=10)
    bad = CliRunner().invoke(cli, ["leaderboard", "verify", "--all", "--no-progress", "--dir", str(root)], catch_exceptions=False)
    assert bad.exit_code == 1
    assert "1 of 2 entries do not reproduce or could not be verified" in bad.output and entry.path.name in bad.output
    neither = CliRunner().invoke(cli, ["leaderboard", "verify", "--dir", str(root)], catch_exceptions=False)
    assert neither.exit_code == 2 and "give one ENTRY or --all" in neither.output
