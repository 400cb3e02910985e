"""Every metric against the exact answers of the embedded dataset."""

import pytest
import torch

import pagbench
from pagbench.evaluation.gradients import input_gradients

from .controls import ControlPlugin

NUM = 200


@pytest.fixture(scope="module")
def results():
    """bayes and the controls, evaluated once with every metric (LPIPS on a random backbone)."""
    from pagbench.extensions.manager import get_plugin_manager

    manager = get_plugin_manager()
    name = manager.register(ControlPlugin())
    try:
        return {
            model: pagbench.evaluate(model, num_images=NUM, batch_size=50, lpips_random_backbone=True, per_image=True)
            for model in ("bayes", "control-on", "control-off", "manifold-only")
        }
    finally:
        manager.unregister(name=name)


def value(results, model, metric):
    return results[model]["metrics"][metric]["value"]


def test_bayes_gradient_equals_the_exact_posterior_score(synthetic):
    from pagbench.models.loading import load_model

    batch = synthetic.split("test").batch(list(range(NUM)))
    model = load_model("bayes", synthetic).module
    _, gradient = input_gradients(model, batch.images, batch.labels, "logprob")
    exact = synthetic.distribution.scores(batch.images, batch.labels, 0.0, "conditional") - synthetic.distribution.scores(
        batch.images, batch.labels, 0.0, "unconditional"
    )
    cosine = torch.nn.functional.cosine_similarity(gradient.reshape(NUM, -1), exact.reshape(NUM, -1).double(), dim=1)
    assert cosine.min().item() > 1 - 1e-4


def test_bayes_scores_one_on_alignment_and_manifold(results):
    per_image = results["bayes"]["per_image"]
    assert min(per_image["score_cosine"]) > 1 - 1e-4
    assert min(per_image["on_manifold_fraction"]) >= 0.99
    assert value(results, "bayes", "lpips_alignment") > 0.999
    assert value(results, "bayes", "manifold_robustness_off") < 1e-5
    assert results["bayes"]["metrics"]["on_manifold_fraction_random"]["value"] == pytest.approx(45 / 768)
    assert sum(results["bayes"]["degenerate"].values()) == 0


def test_controls_are_ranked_in_the_right_order_by_every_metric(results):
    for control in ("control-on", "control-off"):
        assert value(results, "bayes", "score_cosine") > value(results, control, "score_cosine") + 0.02
        assert value(results, "bayes", "lpips_alignment") > value(results, control, "lpips_alignment")
        assert value(results, "bayes", "accuracy") >= value(results, control, "accuracy")
    # the on-manifold perturbation stays on the manifold; the off-manifold term does not
    assert value(results, "control-on", "on_manifold_fraction") > 0.999
    assert value(results, "control-off", "on_manifold_fraction") < 0.9
    assert value(results, "control-on", "manifold_robustness_off") < 1e-5
    assert value(results, "control-off", "manifold_robustness_off") > 0.01
    assert value(results, "control-off", "manifold_robustness_off_on_ratio") > value(results, "bayes", "manifold_robustness_off_on_ratio")
    assert value(results, "control-off", "off_manifold_gradient_norm") > 100 * value(results, "control-on", "off_manifold_gradient_norm")


def test_a_model_blind_off_the_manifold_has_zero_off_manifold_change(results):
    per_image = results["manifold-only"]["per_image"]
    assert max(per_image["manifold_robustness_off"]) < 1e-6
    assert max(per_image["manifold_robustness_on"]) > 1e-3
    assert min(per_image["on_manifold_fraction"]) > 1 - 1e-6


@pytest.mark.parametrize("gradient", ["logprob", "logit", "logsumexp", "logit-sum"])
def test_gradient_choices_are_the_right_vector_jacobian_products(gradient):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).double()
    images = torch.rand(4, 3, 2, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 4])
    _, ours = input_gradients(model, images, labels, gradient)
    inputs = images.clone().requires_grad_(True)
    logits = model(inputs)
    rows = torch.arange(4)
    target = {
        "logprob": torch.log_softmax(logits, 1)[rows, labels],
        "logit": logits[rows, labels],
        "logsumexp": torch.logsumexp(logits, 1),
        "logit-sum": logits.sum(1),
    }[gradient]
    (expected,) = torch.autograd.grad(target.sum(), inputs)
    assert torch.allclose(ours, expected, atol=1e-10)


def test_logprob_gradient_keeps_its_direction_when_softmax_saturates():
    """With a logit gap of 60, float32 softmax rounds p_y to 1; the direction must survive."""
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weights)
    images = torch.tensor([[[[60.0, 0.0]]]])
    _, gradient = input_gradients(model, images, torch.tensor([0]), "logprob")
    # exact: Σ_{c≠y} p_c (w_y − w_c), dominated by c = 2 (gap 30): direction (0.5, −0.5)/‖·‖
    direction = gradient.reshape(-1) / gradient.norm()
    assert torch.allclose(direction, torch.tensor([0.5, -0.5], dtype=torch.float64) / 0.5**0.5, atol=1e-6)
    assert gradient.norm() > 0
