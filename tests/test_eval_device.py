"""Device-resident evaluation and ``--dtype``: float32 results are those of the plain pipeline bit
for bit, float64 agrees within stated tolerances, the choice is recorded, bad input is one line."""

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench.errors import PagbenchError


class SmallNet(torch.nn.Module):
    """A small float32 CNN with a smooth nonlinearity (its gradient depends on x)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                                        torch.nn.Linear(8 * 16 * 16, 10))

    def forward(self, images):
        return self.body(images)


def test_float32_is_the_plain_pipeline_bit_for_bit(synthetic):
    """score_cosine and on_manifold_fraction per image equal cos(∇x log p(y|x), s) and ‖P_T g‖²/‖g‖²
    computed directly from the gradient, the score and the basis: nothing in the runner (device
    handling, attributions, σ curves) changes a bit of the default run."""
    from pagbench.evaluation.gradients import input_gradients
    from pagbench_plugins.metrics.score_cosine import cosine

    model = SmallNet().eval()
    result = pagbench.evaluate(model, name="small", num_images=50, batch_size=25, per_image=True,
                               metrics=("score_cosine", "on_manifold_fraction"))
    split = synthetic.split("test")
    cosines, fractions = [], []
    for start in (0, 25):  # per batch, as the pipeline computes them
        batch = split.batch(list(range(start, start + 25)))
        gradient = input_gradients(model, batch.images, batch.labels, "logprob")[1]
        score = synthetic.distribution.scores(batch.images, batch.labels, 0.0, "posterior")
        cosines.append(cosine(gradient, score))
        basis = synthetic.distribution.tangent_basis(25)
        flat = gradient.reshape(25, -1)
        coordinates = torch.einsum("bkd,bd->bk", basis, flat)
        on = (coordinates**2).sum(1)
        off = ((flat - torch.einsum("bkd,bk->bd", basis, coordinates)) ** 2).sum(1)
        fractions.append(on / (on + off))
    expected_cosine = torch.cat(cosines)
    assert result["per_image"]["score_cosine"] == expected_cosine.tolist()
    assert result["per_image"]["on_manifold_fraction"] == torch.cat(fractions).tolist()
    config = result["config"]
    assert config["dtype"] == "float32" and config["precision"].startswith("float32 model and inputs")


def test_float64_agrees_with_float32():
    """Tolerances: per image |Δ cos| ≤ 1e-5 and |Δ fraction| ≤ 1e-5; norms to relative 1e-5."""
    metrics = ("score_cosine", "on_manifold_fraction", "accuracy")
    single = pagbench.evaluate(SmallNet().eval(), name="small", num_images=50, per_image=True, metrics=metrics)
    double = pagbench.evaluate(SmallNet().eval(), name="small", num_images=50, per_image=True, metrics=metrics, dtype="float64")
    assert double["config"]["dtype"] == "float64"
    for name in ("score_cosine", "on_manifold_fraction"):
        assert double["per_image"][name] == pytest.approx(single["per_image"][name], abs=1e-5)
    for name in ("on_manifold_gradient_norm", "off_manifold_gradient_norm"):
        assert double["per_image"][name] == pytest.approx(single["per_image"][name], rel=1e-5)
    assert double["per_image"]["accuracy"] == single["per_image"]["accuracy"]
    bayes = [pagbench.evaluate("bayes", num_images=50, dtype=dtype, metrics=("score_cosine",))["metrics"]["score_cosine"]["value"]
             for dtype in ("float32", "float64")]
    assert bayes == pytest.approx([1.0, 1.0], abs=1e-9)


def test_bfloat16_runs_and_is_recorded():
    result = pagbench.evaluate(SmallNet().eval(), name="small", num_images=20, dtype="bfloat16", metrics=("score_cosine",))
    reference = pagbench.evaluate(SmallNet().eval(), name="small", num_images=20, metrics=("score_cosine",))
    assert result["config"]["dtype"] == "bfloat16"
    assert result["metrics"]["score_cosine"]["value"] == pytest.approx(reference["metrics"]["score_cosine"]["value"], abs=0.05)


def test_bad_dtype_is_one_line(tmp_path):
    from pagbench.cli import build_cli

    run = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--dtype", "float16", "--output", str(tmp_path / "r.json")])
    assert run.exit_code == 2 and "float16" in run.output
    with pytest.raises(PagbenchError, match="unknown dtype"):
        pagbench.evaluate("bayes", num_images=10, dtype="half")


def test_metric_context_tensors_share_the_model_device():
    from pagbench.evaluation.cache import GeometryCache
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import iter_batches, prepare

    setup = prepare(EvaluationOptions.create(model="bayes", num_images=10, sigmas=(0.0, 0.1)))
    context = next(iter_batches(setup, range(10), cache=GeometryCache(use_disk=False), needs_tangent=True))
    devices = {tensor.device for tensor in (context.images, context.gradient, context.gradient_ok, context.score,
                                            context.tangent_basis, *context.sigma_scores)}
    assert devices == {setup.device if isinstance(setup.device, torch.device) else torch.device(setup.device)}
    assert context.sigma_scores[0] is context.score


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cpu = pagbench.evaluate(SmallNet().eval(), name="small", num_images=50, per_image=True, metrics=("score_cosine", "on_manifold_fraction"))
    cuda = pagbench.evaluate(SmallNet().eval(), name="small", num_images=50, per_image=True, device="cuda",
                             metrics=("score_cosine", "on_manifold_fraction"))
    for name in ("score_cosine", "on_manifold_fraction"):
        assert cuda["per_image"][name] == pytest.approx(cpu["per_image"][name], abs=1e-4)
