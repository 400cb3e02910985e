"""``integrated-gradients`` (Sundararajan et al. 2017) from a zero or a blurred baseline.

IG(x) = (x − x₀) ⊙ ∫₀¹ ∇F(x₀ + α (x − x₀)) dα, the integral by ``steps``-point Gauss–Legendre
quadrature (default 32; Captum's default rule). ``baseline``: ``zero`` (default, x₀ = 0, a black
image) or ``blur`` (x₀ = x blurred by a Gaussian of standard deviation ``blur`` pixels, default 3,
replicate padding; Sturmfels et al. 2020). For F linear in x and a zero baseline, IG = g ⊙ x.
Cost: ``steps`` backward passes per batch.
"""

from __future__ import annotations

from pagbench.plugin import Attribution, attribution_option_value as option_value

from .backend import resolve_backend

BASELINES = ("zero", "blur")


def gauss_legendre(steps: int):
    """Nodes α ∈ (0, 1) and weights (summing to 1) of the ``steps``-point Gauss–Legendre rule."""
    import numpy

    nodes, weights = numpy.polynomial.legendre.leggauss(steps)
    return [float(0.5 * (1 + node)) for node in nodes], [float(0.5 * weight) for weight in weights]


def gaussian_blur(images, sigma: float):
    """Images (B, C, H, W) blurred per channel by a Gaussian of std ``sigma`` pixels (float64
    separable kernel of radius ⌈3σ⌉, replicate padding), returned in the images' dtype."""
    import math

    import torch
    import torch.nn.functional as functional

    if sigma == 0:
        return images.clone()
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    blurred = images.double()
    blurred = functional.pad(blurred, (radius, radius, 0, 0), mode="replicate")
    blurred = functional.conv2d(blurred, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    blurred = functional.pad(blurred, (0, 0, radius, radius), mode="replicate")
    blurred = functional.conv2d(blurred, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return blurred.to(images.dtype)


class IntegratedGradients(Attribution):
    name = "integrated-gradients"

    def __init__(self, options):
        steps = option_value(options, "steps", int, 32, self.name, lambda v: 1 <= v <= 4096, "a whole number in 1..4096")
        baseline = option_value(options, "baseline", str, "zero", self.name, lambda v: v in BASELINES, " or ".join(BASELINES))
        settings = {"steps": steps, "baseline": baseline, "rule": "gauss-legendre"}
        if baseline == "blur":
            settings["blur"] = option_value(options, "blur", float, 3.0, self.name, lambda v: 0 <= v <= 1000,
                                            "in [0, 1000] pixels")
            settings["blur_units"] = "pixels (std of the Gaussian)"
        elif "blur" in options:
            from pagbench.plugin import PagbenchError

            raise PagbenchError("--attribution-option blur applies only with baseline=blur")
        settings["backend"] = resolve_backend(str(options.get("backend", "pagbench")))
        super().__init__(settings)

    def baseline(self, images):
        import torch

        if self.settings["baseline"] == "zero":
            return torch.zeros_like(images)
        return gaussian_blur(images, self.settings["blur"])

    def attribute(self, target):
        import torch

        images = target.images.detach()
        baseline = self.baseline(images)
        if self.settings["backend"] == "captum":
            from captum.attr import IntegratedGradients as CaptumIntegratedGradients

            method = CaptumIntegratedGradients(target.objective, multiply_by_inputs=True)
            result = method.attribute(images, baselines=baseline, n_steps=self.settings["steps"], method="gausslegendre",
                                      internal_batch_size=images.shape[0])
            return result.detach().double()
        nodes, weights = gauss_legendre(self.settings["steps"])
        difference = images - baseline
        total = torch.zeros(images.shape, dtype=torch.float64, device=images.device)
        for alpha, weight in zip(nodes, weights):
            total += weight * target.gradient_at(baseline + alpha * difference)
        return difference.double() * total
