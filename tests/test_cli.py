"""The command line: listings, evaluate end to end, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pagbench.cli import build_cli


@pytest.fixture
def run():
    cli = build_cli()

    def invoke(*args):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_listings_show_builtins(run):
    assert "synthetic" in run("datasets").output
    models = run("models").output
    assert "bayes" in models and "resnet18-*" in models
    assert "score_cosine" in run("metrics").output
    plugins = run("plugins").output
    for name in ("metrics", "regimes", "synthetic", "zoo"):
        assert name in plugins
    assert "analytic" in run("providers").output
    assert "gnorm" in run("trainers").output


def test_evaluate_writes_a_valid_result_file(run, tmp_path):
    output = tmp_path / "out" / "bayes.json"
    result = run("evaluate", "--model", "bayes", "--num-images", "50", "--batch-size", "25", "--no-progress", "--output", str(output))
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    from pagbench.results.documents import validate_result

    validate_result(data)
    assert data["config"]["model"] == "bayes" and data["config"]["num_images"] == 50
    assert data["config"]["score"] == "posterior" and data["config"]["gradient"] == "logprob"
    assert data["config"]["sigma"] == 0.0 and data["config"]["seed"] == 0 and data["config"]["batch_size"] == 25
    assert data["metrics"]["score_cosine"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert "lpips_alignment" in data["unavailable"] and "alexnet" in data["unavailable"]["lpips_alignment"]
    assert "score_cosine" in result.output
    assert [p.name for p in output.parent.iterdir()] == ["bayes.json"]  # no temporary files left


def test_evaluate_several_models_writes_timestamped_files(run, tmp_path):
    result = run("evaluate", "--model", "bayes", "--model", "bayes", "--num-images", "20", "--no-progress", "--output-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "synthetic").glob("bayes-*.json"))) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--model", "bayse"], "unknown model 'bayse'; did you mean bayes"),
        (["evaluate", "--model", "bayes", "--dataset", "cifar100x"], "unknown dataset 'cifar100x'"),
        (["evaluate", "--model", "bayes", "--epsilons", "1,x"], "--epsilons: expected comma-separated numbers"),
        (["evaluate", "--model", "bayes", "--num-images", "-3"], "--num-images must be positive"),
        (["evaluate", "--model", "bayes", "--device", "cuda:7"], "CUDA is not available"),
        (["train", "--regime", "nosie"], "unknown training regime 'nosie'; did you mean noise"),
        (["train", "--strength", "-1"], "--strength must be >= 0"),
        (["train", "--epochs", "0"], "epochs must be positive"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_output_fails_before_compute_and_leaves_no_file(run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        result = run("evaluate", "--model", "bayes", "--num-images", "10", "--no-progress", "--output", str(locked / "r.json"))
        assert result.exit_code == 2 and "not writable" in result.output
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from pagbench.errors import PagbenchError
    from pagbench.files.paths import write_atomic

    target = tmp_path / "result.json"

    def explode(stream):
        stream.write(b'{"partial": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(PagbenchError, match="No space left"):
        write_atomic(target, explode)
    assert list(tmp_path.iterdir()) == []


def test_output_into_a_file_path_collision_is_an_error(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("evaluate", "--model", "bayes", "--num-images", "10", "--no-progress", "--output", str(blocker / "r.json"))
    assert result.exit_code == 2
    assert blocker.read_text() == "x"


def test_help_imports_no_heavy_libraries():
    code = (
        "import sys; from pagbench.cli import main; sys.argv=['pagbench','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('torch','timm','lpips','torchvision','matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in output


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "pagbench", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "0.1.0" in result.stdout


def test_every_generated_flag_reaches_the_options_it_declares():
    """The click options are generated from EvaluationOptions' declarations: each flag lands in its field."""
    cli = build_cli()
    command = cli.commands["evaluate"]
    context = command.make_context("evaluate", [
        "--model", "m", "--dataset", "synthetic", "--split", "train", "--num-images", "7", "--batch-size", "3", "--seed", "5",
        "--gradient", "logit", "--score", "conditional", "--sigma", "0.1", "--score-provider", "analytic",
        "--manifold-provider", "analytic", "--metric", "accuracy", "--metric", "score_cosine", "--data-root", "/data",
        "--provider-option", "a=1", "--trust-pickle", "--lpips-random-backbone", "--weights", "w.pt", "--arch", "net",
        "--trust-checkpoint", "--replace-head", "--model-option", "k=v", "--epsilons", "0.5,1", "--headline-epsilon", "1"])
    from pagbench.cli import _options_from

    options = _options_from(context.params, "m")
    assert (options.dataset, options.split, options.num_images, options.batch_size, options.seed) == ("synthetic", "train", 7, 3, 5)
    assert (options.gradient, options.score, options.sigma) == ("logit", "conditional", 0.1)
    assert (options.score_provider, options.manifold_provider, options.data_root) == ("analytic", "analytic", "/data")
    assert options.metrics == ("accuracy", "score_cosine") and options.lpips_random_backbone is True
    assert options.provider_options == {"a": "1", "trust_pickle": "1"}
    assert options.model_options == {"k": "v", "weights": "w.pt", "arch": "net", "trust_checkpoint": True, "replace_head": True}
    assert options.robustness_epsilons == (0.5, 1.0) and options.headline_epsilon == 1.0
    defaults = _options_from(command.make_context("evaluate", ["--model", "m"]).params, "m")
    from pagbench.evaluation.options import EvaluationOptions

    assert defaults == EvaluationOptions(model="m")  # the CLI's defaults are the dataclass's
