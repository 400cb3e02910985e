"""Alignment across σ (``--sigmas``): curves of score_cosine and lpips_alignment, checked against
the exact posterior score of the embedded data computed independently of pagbench's closed form."""

import json

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench.evaluation.cache import GeometryCache
from pagbench.errors import PagbenchError

SIGMAS = (0.0, 0.02, 0.05, 0.1, 0.3)


def _expected_curve(distribution, images, labels, sigmas):
    """Mean over images of cos(∇x log p_0(y|x), ∇x log p_σ(y|x)): both by autograd of the exact
    log-posterior (log-softmax of the class log-likelihoods of the noised density), not the
    Woodbury closed form the analytic provider uses."""
    def posterior_gradient(sigma):
        x = images.double().clone().requires_grad_(True)
        log_posterior = torch.log_softmax(distribution.class_log_likelihoods(x, sigma) + distribution.log_prior, dim=1)
        (grad,) = torch.autograd.grad(log_posterior.gather(1, labels[:, None]).sum(), x)
        return grad.reshape(len(images), -1)

    bayes = posterior_gradient(0.0)  # the Bayes-optimal classifier's ∇ log p(y|x)
    means = []
    for sigma in sigmas:
        score = posterior_gradient(sigma)
        means.append(float(torch.nn.functional.cosine_similarity(bayes, score, dim=1).mean()))
    return means


def test_bayes_curve_matches_the_exact_posterior_score_at_every_sigma(synthetic):
    result = pagbench.evaluate("bayes", num_images=100, sigmas=SIGMAS, metrics=("score_cosine",))
    curve = result["curves"]["score_cosine"]
    assert curve["x"] == list(SIGMAS) and curve["n"] == [100] * len(SIGMAS)
    batch = synthetic.split("test").batch(list(range(100)))
    expected = _expected_curve(synthetic.distribution, batch.images, batch.labels, SIGMAS)
    assert curve["mean"] == pytest.approx(expected, abs=1e-6)
    assert curve["mean"][0] == pytest.approx(1.0, abs=1e-12)  # σ = 0: the exact score itself
    assert curve["mean"][-1] < curve["mean"][1] < 1  # alignment falls with σ
    settings = result["metric_settings"]["score_cosine"]
    assert settings["sigmas"] == list(SIGMAS) and settings["headline_sigma"] == 0.0 and settings["sigmas_used"] == list(SIGMAS)


def test_headline_sigma_joins_the_grid_and_equals_its_curve_point():
    result = pagbench.evaluate("bayes", num_images=40, sigma=0.07, sigmas="0.05,0.1", metrics=("score_cosine",), per_image=True)
    curve = result["curves"]["score_cosine"]
    assert curve["x"] == [0.05, 0.07, 0.1]
    assert curve["mean"][1] == result["metrics"]["score_cosine"]["value"]
    plain = pagbench.evaluate("bayes", num_images=40, sigma=0.07, metrics=("score_cosine",), per_image=True)
    assert plain["per_image"]["score_cosine"] == result["per_image"]["score_cosine"]  # --sigmas leaves the headline as is
    assert "curves" not in plain or "score_cosine" not in plain["curves"]


def test_grid_text_and_bad_grids():
    from pagbench.evaluation.options import EvaluationOptions

    assert EvaluationOptions.create(model="bayes", sigmas="0.01:1:3").sigmas == pytest.approx((0.01, 0.1, 1.0))
    for bad in ("a,b", "-0.1,0.2", "0.1:0:3"):
        with pytest.raises(PagbenchError) as error:
            EvaluationOptions.create(model="bayes", sigmas=bad).validate()
        assert "--sigmas" in str(error.value) and "\n" not in str(error.value)


def test_scores_at_each_sigma_are_cached():
    cache = GeometryCache(use_disk=False)
    pagbench.evaluate("bayes", num_images=40, batch_size=20, sigmas=(0.0, 0.1, 0.2), metrics=("score_cosine",), cache=cache)
    assert cache.misses == 2 * 3 and cache.hits == 0  # 2 batches × 3 σ (the headline σ = 0 is a grid point)
    pagbench.evaluate("bayes", num_images=40, batch_size=20, sigmas=(0.0, 0.1, 0.2), metrics=("score_cosine",), cache=cache)
    assert cache.misses == 6 and cache.hits == 6


def test_lpips_curve_with_the_test_backbone():
    result = pagbench.evaluate("bayes", num_images=20, sigmas=(0.0, 0.2), metrics=("lpips_alignment",), lpips_random_backbone=True)
    curve = result["curves"]["lpips_alignment"]
    assert curve["x"] == [0.0, 0.2] and curve["mean"][0] == result["metrics"]["lpips_alignment"]["value"]
    assert result["metric_settings"]["lpips_alignment"]["sigmas"] == [0.0, 0.2]


@pytest.fixture
def strict_provider(register_plugin):
    """A learned-style score provider (the exact scores, but refusing σ ≤ 0 as learned ones do)."""
    from pagbench import hookimpl
    from pagbench.extensions.records import ScoreProviderEntry
    from pagbench.evaluation.scores import check_sigma
    from pagbench_plugins.synthetic.providers import AnalyticScores

    class Strict(AnalyticScores):
        name = "strict"
        default_sigma = 0.1

        def check(self, sigma, kind):
            check_sigma(sigma, self.name)

    class Plugin:
        @hookimpl
        def register_score_providers(self, register):
            register(ScoreProviderEntry("strict", lambda dataset, options: Strict(dataset.distribution), options=()))

    register_plugin(Plugin(), name="strict-scores")


def test_non_positive_sigma_for_a_learned_score_is_one_line_exit_2(strict_provider, tmp_path):
    from pagbench.cli import build_cli

    with pytest.raises(PagbenchError, match="needs --sigma > 0"):
        pagbench.evaluate("bayes", num_images=20, score_provider="strict", sigmas=(0.0, 0.1), metrics=("score_cosine",))
    output = tmp_path / "r.json"
    run = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--score-provider", "strict", "--sigmas", "0,0.1",
                                           "--num-images", "20", "--metric", "score_cosine", "--output", str(output), "--no-progress"])
    assert run.exit_code == 2 and "needs --sigma > 0" in run.output and len(run.output.strip().splitlines()) == 1
    assert not output.exists()
    good = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--score-provider", "strict", "--sigmas", "0.05,0.2",
                                            "--num-images", "20", "--metric", "score_cosine", "--output", str(output), "--no-progress"])
    assert good.exit_code == 0, good.output
    assert json.loads(output.read_text())["curves"]["score_cosine"]["x"] == [0.05, 0.1, 0.2]  # headline 0.1 added


def test_a_sweep_report_shows_the_sigma_curves(tmp_path):
    """Sweep results made with --sigmas get a σ table (seed means) and a third figure panel."""
    from pagbench_plugins.zoo.sweep_report import collect, plot, render_markdown

    def result(strength, seed, curve):
        return {
            "config": {"dataset": "synthetic", "model": f"m-{strength}-{seed}",
                       "model_card": {"regime": "noise", "strength": strength, "seed": seed}},
            "metrics": {"accuracy": {"value": 0.8, "stderr": 0.01, "n": 10},
                        "score_cosine": {"value": curve[0], "stderr": 0.01, "n": 10}},
            "curves": {"score_cosine": {"x": [0.0, 0.1], "mean": curve, "stderr": [0.0, 0.0], "n": [10, 10]}},
            "metric_settings": {"score_cosine": {"sigmas": [0.0, 0.1], "headline_sigma": 0.0}},
        }

    results = [result(0.0, 0, [0.2, 0.3]), result(0.3, 0, [0.5, 0.6]), result(0.3, 1, [0.7, 0.8])]
    dataset, regime, rows = collect(results)
    assert rows[1].sigma_curves["score_cosine"] == ([0.0, 0.1], [pytest.approx(0.6), pytest.approx(0.7)])
    table = render_markdown(dataset, regime, rows)
    assert "score_cosine across the score's σ" in table
    assert "| 0 (standard) | 0.200 | 0.300 |" in table and "| 0.3 | 0.600 | 0.700 |" in table
    figure = plot(dataset, regime, rows, tmp_path / "sweep.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without = [dict(r, curves={}, metric_settings={}) for r in results]
    assert "across the score's σ" not in render_markdown(*collect(without))


def test_the_board_card_shows_the_sigma_curve(tmp_path):
    from pagbench.leaderboard.render import render_all
    from pagbench.leaderboard.store import add_results, load_entries
    from pagbench.results.documents import write_result

    result = pagbench.evaluate("bayes", num_images=20, sigmas=(0.0, 0.2), metrics=("accuracy", "score_cosine"))
    write_result(result, tmp_path / "r.json")
    add_results([tmp_path / "r.json"], tmp_path / "lb")
    files = render_all(tmp_path / "lb", load_entries(tmp_path / "lb"))
    (card,) = [text for path, text in files.items() if path.startswith("cards/")]
    assert "## Alignment across the score's σ" in card and "| σ | 0 | 0.2 |" in card
    assert "| mean ± se | 1.000 ± 0.000 |" in card
