"""Seed intervals: several training seeds of one recipe give mean [min, max] over seeds beside the
over-images standard error, in sweep tables and on the board (constructed results, known numbers)."""

from pathlib import Path

import pytest

from pagbench.leaderboard.render import render_board
from pagbench.leaderboard.seeds import SeedInterval, interval_text, seed_groups, seed_interval
from pagbench.leaderboard.store import Entry
from pagbench_plugins.zoo.sweep_report import collect, render_markdown


def metric(value, stderr):
    return {"value": value, "stderr": stderr, "n": 100, "higher_is_better": True}


def result(model, regime, strength, seed, accuracy, cosine, cosine_se):
    return {
        "schema_version": 1, "pagbench_version": "0.1.0", "created": "2024-01-01T00:00:00+00:00",
        "config": {"model": model, "dataset": "synthetic", "split": "test", "num_images": 100, "seed": 0, "gradient": "logprob",
                   "score": "posterior", "sigma": 0.0, "score_provider": "analytic", "manifold_provider": "analytic",
                   "provider_options": {}, "model_options": {}, "robustness_epsilons": None, "headline_epsilon": None,
                   "noise_levels": None, "lpips_random_backbone": False,
                   "model_card": {"architecture": "resnet18", "regime": regime, "strength": strength, "seed": seed,
                                  "source": "trained by pagbench"}},
        "metrics": {"accuracy": metric(accuracy, 0.01), "score_cosine": metric(cosine, cosine_se)},
        "unavailable": {}, "degenerate": {"zero_gradient": 0, "nonfinite_gradient": 0, "nonfinite_logits": 0},
    }


RESULTS = [
    result("resnet18-synthetic-standard-0", "standard", 0.0, 0, 0.80, 0.20, 0.010),
    result("resnet18-synthetic-noise-0.3", "noise", 0.3, 0, 0.70, 0.50, 0.010),
    result("resnet18-synthetic-noise-0.3-s1", "noise", 0.3, 1, 0.74, 0.60, 0.020),
    result("resnet18-synthetic-noise-0.3-s2", "noise", 0.3, 2, 0.72, 0.40, 0.030),
]


def test_seed_interval_of_known_numbers():
    interval = seed_interval([metric(0.5, 0.01), metric(0.6, 0.02), metric(0.4, 0.03), None, {"value": None}])
    assert interval.mean == pytest.approx(0.5) and (interval.low, interval.high) == (0.4, 0.6)
    assert interval.stderr == pytest.approx(0.02) and interval.seeds == 3
    assert interval_text(interval) == "0.500 [0.400, 0.600] ± 0.020"
    assert interval_text(seed_interval([metric(0.5, 0.01)])) == "0.500 ± 0.010"  # one seed: no interval
    assert interval_text(SeedInterval(None, None, None, None, 0)) == "n/a"


def test_sweep_rows_and_table_show_seed_intervals():
    _, regime, rows = collect(RESULTS)
    noise = rows[1]
    assert regime == "noise" and noise.seeds == [0, 1, 2]
    assert noise.mean["score_cosine"] == pytest.approx(0.5) and (noise.low["score_cosine"], noise.high["score_cosine"]) == (0.4, 0.6)
    assert noise.stderr["score_cosine"] == pytest.approx(0.02)
    table = render_markdown("synthetic", regime, rows)
    assert "| 0.3 | 3 | 0.720 | 0.500 |" in table  # the seed means, as before
    assert "Across training seeds" in table
    assert "| 0.3 | 0,1,2 | 0.720 [0.700, 0.740] ± 0.010 | 0.500 [0.400, 0.600] ± 0.020 | n/a |" in table
    assert "0 (standard) | 0 |" not in table  # one seed: no interval row


def test_a_sweep_of_single_seeds_has_no_interval_table():
    _, regime, rows = collect(RESULTS[:2])
    assert "Across training seeds" not in render_markdown("synthetic", regime, rows)


def test_the_board_shows_seed_intervals_of_one_recipe():
    entries = [Entry(Path(f"entries/synthetic/{r['config']['model']}--000000000000.json"), r) for r in RESULTS]
    groups = seed_groups(entries)
    assert [[entry.model for entry in group] for group in groups] == [[r["config"]["model"] for r in RESULTS[1:]]]
    board = render_board(entries, root=Path("/nonexistent"))
    assert "**Across training seeds**" in board
    line = next(line for line in board.splitlines() if line.startswith("| noise 0.3 | 0,1,2 |"))
    assert "0.720 [0.700, 0.740] ± 0.010" in line and "0.500 [0.400, 0.600] ± 0.020" in line


def test_seeds_of_different_recipes_or_configurations_are_not_grouped():
    other = result("resnet18-synthetic-noise-0.6-s1", "noise", 0.6, 1, 0.7, 0.5, 0.01)
    other_config = result("resnet18-synthetic-noise-0.3-s3", "noise", 0.3, 3, 0.7, 0.5, 0.01)
    other_config["config"]["gradient"] = "logit"
    entries = [Entry(Path(f"{r['config']['model']}.json"), r) for r in (RESULTS[1], other, other_config)]
    assert seed_groups(entries) == []
