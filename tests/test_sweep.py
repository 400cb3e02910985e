"""Sweeps: grids, jobs, merging by file, regime labels, and the figure."""

import json
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pagbench.cli import build_cli
from pagbench_plugins.zoo.sweep_report import SweepRow, collect, label_regimes


def row(strength, accuracy, cosine, on, off):
    metrics = dict(accuracy=accuracy, score_cosine=cosine, manifold_robustness_on=on, manifold_robustness_off=off,
                   manifold_robustness_off_on_ratio=off / on, lpips_alignment=None, on_manifold_fraction=None)
    return SweepRow(strength=strength, mean=dict(metrics), low=dict(metrics), high=dict(metrics), models=["m"])


def test_regime_labels_follow_the_documented_rule():
    rows = [
        row(0, 0.76, 0.27, 0.35, 0.16),   # standard
        row(0.03, 0.76, 0.30, 0.35, 0.15),  # nothing happened yet
        row(0.3, 0.75, 0.58, 0.33, 0.04),   # off collapsed, on kept, alignment up
        row(1.0, 0.58, 0.55, 0.17, 0.01),   # accuracy collapsed
        row(2.0, 0.74, 0.40, 0.10, 0.001),  # on-manifold sensitivity collapsed
    ]
    label_regimes(rows)
    assert [r.label for r in rows] == ["standard", "weak", "Bayes-aligned", "excessive", "excessive"]


def test_labels_need_a_standard_model():
    rows = [row(0.3, 0.75, 0.58, 0.33, 0.04), row(1.0, 0.5, 0.3, 0.1, 0.01)]
    label_regimes(rows)
    assert [r.label for r in rows] == ["-", "-"]


def fake_result(model, regime, strength, seed, accuracy, cosine):
    metric = lambda v: {"value": v, "stderr": 0.0, "n": 10, "higher_is_better": True}
    return {
        "schema_version": 1, "pagbench_version": "0.1.0", "created": "x",
        "config": {"model": model, "dataset": "synthetic", "split": "test", "num_images": 10, "seed": 0, "gradient": "logprob",
                   "model_card": {"regime": regime, "strength": strength, "seed": seed}},
        "metrics": {"accuracy": metric(accuracy), "score_cosine": metric(cosine), "manifold_robustness_on": metric(0.3),
                    "manifold_robustness_off": metric(0.1), "manifold_robustness_off_on_ratio": metric(1 / 3)},
        "metric_settings": {"manifold_robustness": {"headline_epsilon": 1.0}},
    }


def test_results_from_separate_jobs_merge_by_file(tmp_path):
    files = [
        fake_result("resnet18-synthetic-standard-0", "standard", 0.0, 0, 0.76, 0.27),
        fake_result("resnet18-synthetic-noise-0.3", "noise", 0.3, 0, 0.75, 0.57),
        fake_result("resnet18-synthetic-noise-0.3-s1", "noise", 0.3, 1, 0.73, 0.61),
    ]
    for result in files:
        (tmp_path / f"{result['config']['model']}.json").write_text(json.dumps(result))
    output = CliRunner().invoke(build_cli(), ["sweep-report", str(tmp_path)])
    assert output.exit_code == 0, output.output
    assert (tmp_path / "sweep-noise.png").stat().st_size > 10_000
    table = (tmp_path / "sweep-noise.md").read_text()
    assert "| 0.3 | 2 | 0.740 | 0.590 |" in table  # two seeds averaged
    _, regime, rows = collect(files)
    assert regime == "noise" and rows[1].low["score_cosine"] == 0.57 and rows[1].high["score_cosine"] == 0.61


def test_emit_jobs_writes_one_command_per_strength_and_seed(tmp_path):
    jobs = tmp_path / "jobs.txt"
    result = CliRunner().invoke(build_cli(), ["sweep", "--regime", "noise", "--strengths", "0.1,1", "--seeds", "2",
                                              "--output-dir", str(tmp_path / "out"), "--emit-jobs", str(jobs)])
    assert result.exit_code == 0, result.output
    commands = jobs.read_text().splitlines()
    assert len(commands) == 6  # (0, 0.1, 1) × 2 seeds
    first = shlex.split(commands[0])
    assert first[:2] == ["pagbench", "sweep"] and "--no-report" in first and "--seed-offset" in first


def test_emitted_jobs_carry_the_training_switches(tmp_path):
    jobs = tmp_path / "jobs.txt"
    result = CliRunner().invoke(build_cli(), ["sweep", "--regime", "pgd", "--strengths", "0.1", "--amp", "bf16", "--channels-last",
                                              "--no-device-data", "--output-dir", str(tmp_path / "out"), "--emit-jobs", str(jobs)])
    assert result.exit_code == 0, result.output
    command = shlex.split(jobs.read_text().splitlines()[-1])
    assert command[command.index("--amp") + 1] == "bf16" and "--channels-last" in command and "--no-device-data" in command
    assert "--compile" not in command and "--deterministic" not in command


def test_paper_preset_uses_the_paper_grids_and_gnorm_lr_rule(tmp_path):
    from pagbench_plugins.zoo.recipes import GRIDS, recipe_for

    assert len(GRIDS["paper"]["noise"]) == 30 and GRIDS["paper"]["noise"][0] == pytest.approx(1e-3)
    assert GRIDS["paper"]["gnorm"][-1] == pytest.approx(100.0)
    lam = 1.0 * 1e5 / 128**2  # λ_ref = 1 in our units
    assert recipe_for("cifar10", "gnorm", lam, preset="paper").lr == pytest.approx(0.025 * 0.01 / 1.0)
    assert recipe_for("cifar10", "gnorm", 0.01 * 1e5 / 128**2, preset="paper").lr == pytest.approx(0.025)
    recipe = recipe_for("cifar10", "noise", 0.1, preset="paper")
    assert (recipe.epochs, recipe.lr, recipe.lr_milestones, recipe.width) == (200, 0.025, (150, 175), 64)
    jobs = tmp_path / "jobs.txt"
    result = CliRunner().invoke(build_cli(), ["sweep", "--dataset", "cifar10", "--regime", "smooth", "--preset", "paper", "--emit-jobs", str(jobs)])
    assert result.exit_code == 0 and len(jobs.read_text().splitlines()) == 31


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regime", "nois"], "did you mean noise"),
        (["--regime", "noise", "--strengths", "-1"], "strengths must be >= 0"),
        (["--regime", "noise", "--strengths", "abc"], "expected comma-separated numbers"),
        (["--regime", "noise", "--grid", "1:0.1:0"], "expected comma-separated numbers or lo:hi:n"),
        (["--regime", "noise", "--strengths", ","], "empty"),
        (["--regime", "noise", "--epochs", "0"], "--epochs must be positive"),
    ],
)
def test_bad_sweep_input_is_a_one_line_error_and_writes_nothing(tmp_path, args, message):
    result = CliRunner().invoke(build_cli(), ["sweep", *args, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_tiny_sweep_trains_evaluates_and_reports(tmp_path, monkeypatch):
    from pagbench_plugins.zoo import recipes

    monkeypatch.setitem(recipes.DATASET_DEFAULTS, "synthetic", {**recipes.DATASET_DEFAULTS["synthetic"], "width": 4, "epochs": 1})
    result = CliRunner().invoke(build_cli(), ["sweep", "--regime", "noise", "--strengths", "0.3", "--num-images", "40",
                                              "--output-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["resnet18-synthetic-noise-0.3.json", "resnet18-synthetic-standard-0.json"]
    data = json.loads((tmp_path / "resnet18-synthetic-noise-0.3.json").read_text())
    assert data["config"]["model_card"]["regime"] == "noise" and data["config"]["model_card"]["strength"] == 0.3
    card = data["config"]["model_card"]
    assert card["provenance"]["training_recipe"]["epochs"] == 1 and card["description"].startswith("recipe resnet18-w4-synthetic-noise-0.3-s0-")
    assert data["config"]["model_options"] == {"preset": "cpu"}  # epochs 1 is the patched default, not an override
    assert (tmp_path / "sweep-noise.png").exists()
    assert "| 0 (standard) | 1 |" in result.output and "| 0.3 | 1 |" in result.output
    assert "| standard |" in result.output  # one strength: too few for regime labels, shown as "-"


@pytest.mark.slow
def test_torchrun_trains_data_parallel_on_cpu(tmp_path):
    env = {"PAGBENCH_CACHE_DIR": str(tmp_path), "PAGBENCH_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pagbench",
               "train", "--regime", "standard", "--epochs", "1", "--width", "2", "--no-progress"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    records = list((tmp_path / "models").glob("*/recipe.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["world_size"] == 2
    assert completed.stdout.count("trained resnet18-synthetic-standard-0") == 1


def test_sweep_passes_a_sigma_grid_to_its_jobs_and_refuses_a_bad_one_before_training(tmp_path):
    jobs = tmp_path / "jobs.txt"
    result = CliRunner().invoke(build_cli(), ["sweep", "--regime", "noise", "--strengths", "0.1", "--sigmas", "0,0.1,0.3",
                                              "--output-dir", str(tmp_path / "out"), "--emit-jobs", str(jobs)])
    assert result.exit_code == 0, result.output
    assert all("--sigmas 0,0.1,0.3" in line for line in jobs.read_text().splitlines() if line.strip())
    bad = CliRunner().invoke(build_cli(), ["sweep", "--regime", "noise", "--strengths", "0.1", "--sigmas", "nan",
                                           "--output-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "sigma" in bad.output.lower() and not (tmp_path / "bad").exists()
