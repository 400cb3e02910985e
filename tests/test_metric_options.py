"""Metric-declared options and board columns: the CLI flag, the configuration, the entry key and
the board are generated from a metric's declarations (here the example plugin's ``gradient_norm``)."""

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pagbench
from pagbench.extensions import registry
from pagbench.leaderboard.render import render_board
from pagbench.evaluation.metrics import BoardColumn, Metric, MetricOption, entry_key_fields

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pagbench-example-plugin"


@pytest.fixture
def example(register_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import pagbench_example

    register_plugin(pagbench_example, name="example")
    yield pagbench_example
    for module in [m for m in sys.modules if m.startswith("pagbench_example")]:
        del sys.modules[module]


def _entry(tmp_path, result):
    from pagbench.leaderboard.store import Entry

    return Entry(tmp_path / "entry.json", result)


def test_a_metric_option_reaches_the_config_the_key_and_the_board_through_the_cli(example, tmp_path):
    from pagbench.cli import build_cli

    output = tmp_path / "r.json"
    invoked = CliRunner().invoke(build_cli(), [
        "evaluate", "--model", "bayes", "--num-images", "20", "--metric", "gradient_norm", "--metric", "accuracy",
        "--gradient-norm-order", "1", "--no-progress", "--output", str(output)])
    assert invoked.exit_code == 0, invoked.output
    result = json.loads(output.read_text())
    assert result["config"]["gradient_norm_order"] == 1.0
    assert result["metric_settings"]["gradient_norm"] == {"order": 1.0}
    l1 = result["metrics"]["gradient_norm"]["value"]
    l2 = pagbench.evaluate("bayes", num_images=20, metrics=("gradient_norm",))["metrics"]["gradient_norm"]["value"]
    assert l1 > l2 > 0  # ‖g‖₁ ≥ ‖g‖₂, strictly for a gradient with more than one non-zero pixel

    key = entry_key_fields(result, registry.metrics())
    assert key["gradient_norm_order"] == 1.0
    board = render_board([_entry(tmp_path, result)], tmp_path)
    header = next(line for line in board.splitlines() if line.startswith("| #"))
    assert "‖∇x‖_p" in header.split(" | ")
    row = next(line for line in board.splitlines() if line.startswith("| 1 "))
    assert f"{l1:.3f}" in row
    # the option's board_text joins the configuration line, its flag the header's list of key options
    common = next(line for line in board.splitlines() if line.startswith("Common configuration: "))
    assert common.endswith(", gradient norm ‖∇x‖_p with p = 1.")
    assert "`--gradient-norm-order`" in board.split("\n## ")[0]  # the header


def test_the_python_keyword_is_generated_too(example):
    result = pagbench.evaluate("bayes", num_images=10, metrics=("gradient_norm",), gradient_norm_order=3)
    assert result["config"]["gradient_norm_order"] == 3
    from pagbench.errors import PagbenchError

    with pytest.raises(PagbenchError, match="unknown argument"):
        pagbench.evaluate("bayes", num_images=10, gradient_norm_orde=3)


def test_a_bad_option_value_is_one_line_exit_2(example):
    from pagbench.cli import build_cli

    invoked = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--num-images", "10", "--metric", "gradient_norm",
                                               "--gradient-norm-order", "0.5", "--no-progress", "--output-dir", "unused"])
    assert invoked.exit_code == 2
    assert invoked.output.strip().splitlines()[-1] == "Error: --gradient-norm-order must be >= 1, got 0.5"


def test_without_the_plugin_the_option_and_column_are_gone(tmp_path):
    from pagbench.cli import build_cli

    help_text = CliRunner().invoke(build_cli(), ["evaluate", "--help"]).output
    assert "--gradient-norm-order" not in help_text and "--epsilons" in help_text and "--noise-levels" in help_text
    assert "‖∇x‖_p" not in [column.header for column, _ in __import__("pagbench.leaderboard.render", fromlist=["declared_columns"]).declared_columns()]


def test_the_built_in_metrics_declare_the_committed_entry_keys():
    """For every committed entry, the metric-declared key fields equal the stored key's: generating
    the key from declarations changes no entry id."""
    metrics = registry.metrics()
    declared = {option.name for metric in metrics for option in metric.options if option.key}
    assert declared == {"robustness_epsilons", "headline_epsilon", "noise_levels", "lpips_random_backbone"}
    paths = sorted((ROOT / "leaderboard" / "entries").glob("*/*.json"))
    assert paths
    from pagbench.leaderboard.store import entry_key

    for path in paths:
        entry = json.loads(path.read_text())
        generated = entry_key_fields(entry, metrics)
        assert generated == {name: entry["entry_key"][name] for name in declared}, path
        # the whole key, in the stored order (new entries are written with the same layout)
        assert list(entry_key(entry).items()) == list(entry["entry_key"].items()), path


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="type must be one of"):
        MetricOption("x", "complex")
    with pytest.raises(ValueError, match=r"board_text must be a format with \{value\} only, got 'grid \{grid\}'"):
        MetricOption("x", "floats", board_text="grid {grid}")

    class A(Metric):
        name = "a"
        options = (MetricOption("shared", "float", default=1.0),)

    class B(Metric):
        name = "b"
        options = (MetricOption("shared", "int", default=1),)

    from pagbench.evaluation.metrics import metric_option_declarations

    with pytest.raises(ValueError, match="declared differently"):
        metric_option_declarations([A(), B()])
    assert BoardColumn("h", "a").position == 100


def test_a_declared_flag_is_hidden_unset_false_and_checked_by_its_metric():
    """``--lpips-random-backbone`` comes from the metric's declaration: hidden from ``--help``,
    recorded as false when unset (the configuration's layout is unchanged), and a metric's
    ``check_options`` refuses its bad values before any compute."""
    from pagbench.cli import build_cli
    from pagbench.errors import PagbenchError
    from pagbench.evaluation.options import EvaluationOptions

    help_text = CliRunner().invoke(build_cli(), ["evaluate", "--help"]).output
    assert "--lpips-random-backbone" not in help_text
    config = EvaluationOptions.create(model="bayes", lpips_random_backbone=None).as_dict()
    assert config["lpips_random_backbone"] is False
    # declared with recorded_after: every run records them, null when unset, where the core's fields were
    keys = list(config)
    at = keys.index("metrics")
    assert keys[at:at + 6] == ["metrics", "robustness_epsilons", "headline_epsilon", "noise_levels", "data_root",
                               "lpips_random_backbone"]
    assert config["robustness_epsilons"] is None and config["noise_levels"] is None
    options = EvaluationOptions(model="bayes", robustness_epsilons=[0.5, 1.0], headline_epsilon=None)
    assert options.metric_options == {"robustness_epsilons": (0.5, 1.0)}
    assert options.robustness_epsilons == (0.5, 1.0) and options.lpips_random_backbone is False
    with pytest.raises(TypeError, match="unexpected keyword"):
        EvaluationOptions(model="bayes", no_such_option=1)
    with pytest.raises(PagbenchError, match="is not in the ε grid"):
        EvaluationOptions.create(model="bayes", robustness_epsilons=[0.5, 1.0], headline_epsilon=2.0).validate()
