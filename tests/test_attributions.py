"""Attribution methods (``--attribution``): known answers on a linear model, the default is the raw
gradient bit for bit, per-image seeded SmoothGrad, Captum agreement, and one-line bad input."""

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench.evaluation.attributions import AttributionTarget, build_attribution
from pagbench.errors import PagbenchError
from pagbench.evaluation.gradients import input_gradients


class Linear(torch.nn.Module):
    """logits = W vec(x) + b: every logit is linear in x."""

    def __init__(self, shape, classes=10, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        dim = shape[0] * shape[1] * shape[2]
        self.weight = torch.nn.Parameter(torch.randn(classes, dim, generator=generator) / dim**0.5, requires_grad=False)
        self.bias = torch.nn.Parameter(torch.randn(classes, generator=generator), requires_grad=False)

    def forward(self, images):
        return images.reshape(images.shape[0], -1) @ self.weight.T + self.bias


def _target(model, synthetic, gradient="logit", count=8, dtype=torch.float32):
    from pagbench.evaluation.runner import _Randomness

    batch = synthetic.split("test").batch(list(range(count)))
    images = batch.images.to(dtype)
    logits, raw = input_gradients(model, images, batch.labels, gradient)
    return AttributionTarget(model=model, images=images, labels=batch.labels, gradient=gradient, logits=logits,
                             input_gradient=raw, randomness=_Randomness(0, range(count)))


@pytest.mark.parametrize("gradient", ["logit", "logit-sum"])
def test_linear_model_known_answers(synthetic, gradient):
    model = Linear(synthetic.image_shape).double()
    target = _target(model, synthetic, gradient, dtype=torch.float64)
    g, x = target.input_gradient, target.images.double()
    assert torch.equal(build_attribution("raw-gradient", {}).attribute(target), g)
    assert torch.equal(build_attribution("gradient-x-input", {}).attribute(target), g * x)
    integrated = build_attribution("integrated-gradients", {"steps": "7"}).attribute(target)
    assert torch.allclose(integrated, g * x, rtol=1e-12, atol=1e-15)  # zero baseline: IG = g ⊙ x exactly (Σ weights = 1)
    smooth = build_attribution("smoothgrad", {"samples": "5", "noise": "0.3"}).attribute(target)
    assert torch.allclose(smooth, g, rtol=1e-12, atol=1e-15)  # the gradient of a linear model ignores the noise
    blurred = build_attribution("integrated-gradients", {"baseline": "blur", "blur": "2"}).attribute(target)
    from pagbench_plugins.attributions.integrated_gradients import gaussian_blur

    assert torch.allclose(blurred, g * (x - gaussian_blur(target.images, 2.0).double()), rtol=1e-12, atol=1e-15)


def test_default_is_the_raw_gradient_bit_for_bit():
    default = pagbench.evaluate("bayes", num_images=40, per_image=True, metrics=("score_cosine", "on_manifold_fraction"))
    chosen = pagbench.evaluate("bayes", num_images=40, per_image=True, attribution="raw-gradient",
                               metrics=("score_cosine", "on_manifold_fraction"))
    assert default["per_image"] == chosen["per_image"]
    assert default["config"]["attribution"] == "raw-gradient" and default["config"]["attribution_settings"] == {}


def test_results_record_method_and_settings():
    result = pagbench.evaluate("bayes", num_images=20, attribution="smoothgrad", attribution_options={"samples": 3},
                               metrics=("score_cosine",))
    config = result["config"]
    assert config["attribution"] == "smoothgrad" and config["attribution_options"] == {"samples": 3}
    assert config["attribution_settings"] == {"samples": 3, "noise": 0.1, "noise_units": "[0,1] pixel units", "backend": "pagbench"}


def test_smoothgrad_does_not_depend_on_the_batch_size():
    runs = [pagbench.evaluate("bayes", num_images=30, batch_size=size, attribution="smoothgrad", per_image=True,
                              attribution_options={"samples": "3"}, metrics=("score_cosine",)) for size in (30, 7)]
    assert runs[0]["per_image"]["score_cosine"] == pytest.approx(runs[1]["per_image"]["score_cosine"], abs=1e-12)


def test_every_gradient_metric_reads_the_attribution():
    plain = pagbench.evaluate("bayes", num_images=20, metrics=("on_manifold_fraction", "score_cosine"))
    times_input = pagbench.evaluate("bayes", num_images=20, attribution="gradient-x-input",
                                    metrics=("on_manifold_fraction", "score_cosine"))
    assert plain["metrics"]["on_manifold_fraction"]["value"] == pytest.approx(1.0)  # the Bayes gradient lies on the manifold
    assert times_input["metrics"]["on_manifold_fraction"]["value"] < 0.999  # g ⊙ x does not
    assert times_input["metrics"]["off_manifold_gradient_norm"]["value"] > 0
    assert times_input["metrics"]["score_cosine"]["value"] < plain["metrics"]["score_cosine"]["value"]


@pytest.mark.parametrize("method,options", [("integrated-gradients", {"steps": "6"}),
                                            ("integrated-gradients", {"steps": "6", "baseline": "blur"}),
                                            ("gradient-x-input", {})])
def test_captum_agrees_with_pagbench(synthetic, method, options):
    pytest.importorskip("captum")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 16 * 16, 10)).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    target = _target(model, synthetic, "logprob")
    ours = build_attribution(method, options).attribute(target)
    theirs = build_attribution(method, {**options, "backend": "captum"}).attribute(target)
    assert build_attribution(method, {**options, "backend": "captum"}).settings["backend"] == "captum"
    scale = ours.reshape(len(ours), -1).norm(dim=1).view(-1, 1, 1, 1)
    assert ((ours - theirs).abs() / scale).max() < 1e-5  # float32 (Captum) vs float64 sums


def test_bad_input_is_one_line(tmp_path):
    from pagbench.cli import build_cli

    cli = build_cli()
    for arguments, expected in ((["--attribution", "smoothgrd"], "did you mean smoothgrad"),
                                (["--attribution", "smoothgrad", "--attribution-option", "steps=3"], "takes no option 'steps'"),
                                (["--attribution", "smoothgrad", "--attribution-option", "samples=0"], "samples must be"),
                                (["--attribution", "integrated-gradients", "--attribution-option", "baseline=mean"], "zero or blur"),
                                (["--attribution", "smoothgrad", "--attribution-option", "samples"], "KEY=VALUE")):
        output = tmp_path / "r.json"
        run = CliRunner().invoke(cli, ["evaluate", "--model", "bayes", "--num-images", "10", "--output", str(output), *arguments])
        assert run.exit_code == 2, run.output
        assert expected in run.output and len(run.output.strip().splitlines()) == 1, run.output
        assert not output.exists()
    with pytest.raises(PagbenchError, match="did you mean"):
        pagbench.evaluate("bayes", num_images=10, attribution="integrated-gradient")


def test_without_captum_auto_falls_back_and_captum_is_refused(monkeypatch):
    from pagbench_plugins.attributions import backend

    monkeypatch.setattr(backend, "captum_installed", lambda: False)
    assert build_attribution("integrated-gradients", {"backend": "auto"}).settings["backend"] == "pagbench"
    with pytest.raises(PagbenchError, match="needs captum"):
        build_attribution("gradient-x-input", {"backend": "captum"})
