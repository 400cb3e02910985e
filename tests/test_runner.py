"""The evaluation runner: determinism, caching, eval-mode hygiene, degenerate images, bad input."""

import pytest
import torch

import pagbench
from pagbench import ModelCard, ModelEntry, ScoreProviderEntry, ManifoldProviderEntry, hookimpl
from pagbench.evaluation.cache import GeometryCache
from pagbench.errors import PagbenchError
from pagbench.evaluation.manifold import ManifoldProvider
from pagbench.evaluation.scores import ScoreProvider

CARD = ModelCard(architecture="test", dataset="synthetic")


class SmallCnn(torch.nn.Module):
    """A tiny CNN with BatchNorm, untrained (numbers need not be good, only well-defined)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 10)

    def forward(self, images):
        return self.head(self.features(images).mean((2, 3)))


class NanAfterHalf(torch.nn.Module):
    """Returns NaN logits for images whose first pixel is above the median (about half)."""

    def __init__(self, distribution):
        super().__init__()
        from pagbench_plugins.synthetic.providers import BayesClassifier

        self.bayes = BayesClassifier(distribution)

    def forward(self, images):
        logits = self.bayes(images)
        bad = images[:, 0, 0, 0] > 0.5
        return torch.where(bad[:, None], torch.full_like(logits, float("nan")), logits)


class Counting:
    calls = 0


class CountingScores(ScoreProvider):
    name = "counting"

    def __init__(self, distribution):
        self.distribution = distribution

    def scores(self, images, labels, sigma, kind):
        Counting.calls += 1
        return self.distribution.scores(images, labels, sigma, kind)


class CountingManifold(ManifoldProvider):
    name = "counting"

    def __init__(self, distribution):
        self.distribution = distribution

    def tangent_basis(self, images, labels):
        Counting.calls += 1
        return self.distribution.tangent_basis(images.shape[0])


class TestPlugin:
    @hookimpl
    def register_models(self, register):
        register(ModelEntry("small-cnn", lambda name, dataset, device: SmallCnn(), CARD))
        register(ModelEntry("nan-model", lambda name, dataset, device: NanAfterHalf(dataset.distribution), CARD))
        register(ModelEntry("wrong-classes", lambda name, dataset, device: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 3)), CARD))

    @hookimpl
    def register_score_providers(self, register):
        register(ScoreProviderEntry("counting", lambda dataset, options: CountingScores(dataset.distribution)))

    @hookimpl
    def register_manifold_providers(self, register):
        register(ManifoldProviderEntry("counting", lambda dataset, options: CountingManifold(dataset.distribution)))


@pytest.fixture
def plugin(register_plugin):
    register_plugin(TestPlugin(), name="test-runner-plugin")


def test_same_seed_gives_identical_numbers_and_batch_size_does_not_matter(plugin):
    first = pagbench.evaluate("small-cnn", num_images=60, batch_size=20, seed=3)
    second = pagbench.evaluate("small-cnn", num_images=60, batch_size=20, seed=3)
    other_batches = pagbench.evaluate("small-cnn", num_images=60, batch_size=60, seed=3)
    other_seed = pagbench.evaluate("small-cnn", num_images=60, batch_size=20, seed=4)
    assert first["metrics"] == second["metrics"]
    for name, entry in first["metrics"].items():
        assert other_batches["metrics"][name]["value"] == pytest.approx(entry["value"], rel=1e-4, abs=1e-6)
    assert other_seed["metrics"]["manifold_robustness_on"]["value"] != first["metrics"]["manifold_robustness_on"]["value"]
    assert other_seed["metrics"]["score_cosine"] == first["metrics"]["score_cosine"]  # no randomness in it


def test_second_model_reuses_scores_and_tangents_from_memory_and_disk(plugin):
    Counting.calls = 0
    options = dict(num_images=40, batch_size=20, score_provider="counting", manifold_provider="counting")
    cache = GeometryCache()
    pagbench.evaluate("small-cnn", cache=cache, **options)
    assert Counting.calls == 4  # 2 batches × (score + tangent)
    pagbench.evaluate("bayes", cache=cache, **options)
    assert Counting.calls == 4
    pagbench.evaluate("bayes", cache=GeometryCache(), **options)  # fresh process memory: disk hit
    assert Counting.calls == 4
    pagbench.evaluate("bayes", cache=GeometryCache(), sigma=0.1, **options)  # new σ: new scores only
    assert Counting.calls == 6


def test_evaluation_leaves_model_in_eval_mode_with_unchanged_batchnorm_and_no_parameter_grads(plugin, synthetic):
    from pagbench.models.loading import load_model

    loaded = load_model("small-cnn", synthetic)
    loaded.module.train()  # even if handed over in train mode
    before = {key: value.clone() for key, value in loaded.module.state_dict().items()}
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import evaluate

    evaluate(EvaluationOptions(model="small-cnn", num_images=20, batch_size=10), model=loaded, progress=False)
    after = loaded.module.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert all(parameter.grad is None for parameter in loaded.module.parameters())
    assert not loaded.module.training


def test_nan_outputs_are_counted_warned_and_excluded(plugin):
    with pytest.warns(UserWarning, match="degenerate"):
        result = pagbench.evaluate("nan-model", num_images=40, batch_size=20)
    bad = result["degenerate"]["nonfinite_logits"]
    assert 5 < bad < 35
    assert result["metrics"]["score_cosine"]["n"] == 40 - bad
    assert result["metrics"]["score_cosine"]["excluded"] == bad
    assert result["metrics"]["score_cosine"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert result["metrics"]["accuracy"]["n"] == 40  # a NaN output counts as wrong, not as missing
    assert result["metrics"]["accuracy"]["value"] <= (40 - bad) / 40


def test_wrong_class_count_fails_before_any_compute(plugin):
    Counting.calls = 0
    with pytest.raises(PagbenchError, match=r"shape \(1, 3\).*\(batch, 10\)"):
        pagbench.evaluate("wrong-classes", score_provider="counting", manifold_provider="counting")
    assert Counting.calls == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_images=0), "--num-images must be positive"),
        (dict(num_images=5000), "exceeds the 1000 images"),
        (dict(batch_size=-1), "--batch-size"),
        (dict(gradient="grad"), "unknown gradient"),
        (dict(sigma=-0.1), "--sigma must be >= 0"),
        (dict(split="validation"), "no split 'validation'"),
        (dict(metrics=("score_cosin",)), "did you mean score_cosine"),
        (dict(dataset="synthetc"), "did you mean synthetic"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(PagbenchError, match=message) as error:
        pagbench.evaluate("bayes", **options)
    assert "\n" not in str(error.value)


def test_unknown_model_lists_close_matches():
    with pytest.raises(PagbenchError, match="unknown model 'baye'; did you mean bayes"):
        pagbench.evaluate("baye")


def test_memory_cache_is_bounded_and_evicts_least_recently_used():
    cache = GeometryCache(use_disk=False, memory_bytes=3 * 8 * 100)
    calls = []
    for key in ("a", "b", "c", "a", "d"):
        cache.get_or_compute(key, lambda key=key: calls.append(key) or torch.zeros(100, dtype=torch.float64))
    assert calls == ["a", "b", "c", "d"]  # "a" was a hit; "d" evicted "b", the least recently used
    cache.get_or_compute("b", lambda: calls.append("b") or torch.zeros(100, dtype=torch.float64))
    assert calls[-1] == "b" and cache.hits == 1


def test_an_unwritable_geometry_cache_is_a_warning_naming_the_folder_once(tmp_path):
    blocker = tmp_path / "geometry"
    blocker.write_text("a file where the cache folder should be")
    cache = GeometryCache(directory=blocker, memory_bytes=0)
    with pytest.warns(UserWarning, match=f"cannot write the geometry cache in {blocker}.*recomputed on every run") as caught:
        first = cache.get_or_compute("a", lambda: torch.ones(4, dtype=torch.float64))
        cache.get_or_compute("b", lambda: torch.ones(4, dtype=torch.float64))
    assert torch.equal(first, torch.ones(4, dtype=torch.float64))  # the value is still returned
    assert sum("geometry cache" in str(item.message) for item in caught) == 1
