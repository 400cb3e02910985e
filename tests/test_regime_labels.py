"""Regime labels over sweeps of hand-made result documents (the rule in pagbench_plugins.zoo.regime_labels)."""

import pytest

from pagbench_plugins.zoo.regime_labels import regime_labels


def doc(model, regime, strength, accuracy, cosine, ratio, cosine_se=0.01, architecture="resnet18", gradient="logprob"):
    def metric(value, stderr=0.01):
        return {"value": value, "stderr": stderr, "n": 500, "excluded": 0, "higher_is_better": True}

    return {
        "schema_version": 1,
        "config": {
            "model": model, "dataset": "synthetic", "split": "test", "num_images": 500, "seed": 0, "gradient": gradient,
            "score": "posterior", "sigma": 0.0, "score_provider": "analytic", "manifold_provider": "analytic",
            "model_card": {"architecture": architecture, "regime": regime, "strength": strength},
        },
        "metrics": {
            "accuracy": metric(accuracy),
            "score_cosine": metric(cosine, cosine_se),
            "manifold_robustness_off_on_ratio": metric(ratio),
        },
    }


STANDARD = doc("std", "standard", 0.0, 0.87, 0.528, 0.60)
# The embedded dataset's measured noise sweep (README, "Reproducing the paper's regimes"): weak, weak, Bayes-aligned (peak), excessive (accuracy collapses).
NOISE = [
    doc("n0.03", "noise", 0.03, 0.856, 0.532, 0.58),
    doc("n0.1", "noise", 0.1, 0.862, 0.525, 0.50),
    doc("n0.3", "noise", 0.3, 0.870, 0.585, 0.30),
    doc("n1", "noise", 1.0, 0.508, 0.512, 0.10),
]


def test_a_sweep_gets_weak_aligned_and_excessive():
    labels = regime_labels([STANDARD, *NOISE])
    assert labels == ["-", "weak", "weak", "Bayes-aligned", "excessive"]


def test_neighbours_of_the_peak_are_aligned_only_if_off_manifold_sensitivity_fell():
    near = doc("n0.2", "noise", 0.2, 0.865, 0.570, 0.40)
    stubborn = doc("n0.25", "noise", 0.25, 0.865, 0.575, 0.70)  # near the peak but ratio above the standard's
    labels = regime_labels([STANDARD, *NOISE, near, stubborn])
    assert labels[5:] == ["Bayes-aligned", "weak"]


def test_no_significant_peak_means_weak_or_excessive():
    flat = [doc("g1", "gnorm", 0.01, 0.86, 0.530, 0.5, cosine_se=0.01), doc("g2", "gnorm", 1.0, 0.60, 0.40, 0.1)]
    assert regime_labels([STANDARD, *flat]) == ["-", "weak", "excessive"]


@pytest.mark.parametrize(
    "results",
    [
        [STANDARD, NOISE[2]],  # a single strength
        NOISE,  # no standard reference
        [STANDARD, doc("std2", "standard", 0.0, 0.8, 0.5, 0.6), *NOISE],  # two references
        [doc("std", "standard", 0.0, 0.87, 0.528, 0.6, architecture="vit"), *NOISE],  # other architecture
        [doc("std", "standard", 0.0, 0.87, 0.528, 0.6, gradient="logit"), *NOISE],  # other configuration
    ],
    ids=["single", "no-reference", "two-references", "other-architecture", "other-configuration"],
)
def test_undecidable_sweeps_are_dashes(results):
    assert set(regime_labels(results)) == {"-"}


def test_sweeps_of_different_regimes_are_labelled_separately():
    gnorm = [doc("g0.01", "gnorm", 0.01, 0.862, 0.547, 0.55), doc("g0.1", "gnorm", 0.1, 0.870, 0.601, 0.35)]
    labels = regime_labels([*NOISE, STANDARD, *gnorm, doc("bayes", "bayes-optimal", None, 0.96, 1.0, 0.0)])
    assert labels == ["weak", "weak", "Bayes-aligned", "excessive", "-", "weak", "Bayes-aligned", "-"]
