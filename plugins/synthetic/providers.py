"""Exact score and manifold providers and the Bayes-optimal classifier of the embedded data."""

from __future__ import annotations


import torch

from pagbench.plugin import ManifoldProvider
from pagbench.plugin import fingerprint
from pagbench.plugin import ScoreProvider

from .generator import SyntheticDistribution


def _fingerprint(prefix: str, distribution: SyntheticDistribution) -> str:
    return f"{prefix}:{fingerprint(distribution.config.as_dict(), 12)}"


class AnalyticScores(ScoreProvider):
    """Exact ∇ log p_σ (pixel units, σ in pixel units); σ = 0 is the data density itself."""

    name = "analytic"
    default_sigma = 0.0
    disk_cache = False  # closed form: cheaper to recompute than to read

    def __init__(self, distribution: SyntheticDistribution):
        self.distribution = distribution

    @property
    def fingerprint(self) -> str:
        return _fingerprint("analytic-scores", self.distribution)

    def scores(self, images, labels, sigma, kind):
        return self.distribution.scores(images, labels, sigma, kind)


class AnalyticManifold(ManifoldProvider):
    """The exact tangent space span(U), identical at every image (the manifold is flat)."""

    name = "analytic"
    disk_cache = False

    def __init__(self, distribution: SyntheticDistribution):
        self.distribution = distribution

    @property
    def fingerprint(self) -> str:
        return _fingerprint("analytic-manifold", self.distribution)

    def tangent_basis(self, images, labels):
        return self.distribution.tangent_basis(images.shape[0])


class BayesClassifier(torch.nn.Module):
    """Logits log p(y|x) + c(x) of the embedded distribution, computed in float64.

    Takes images (B, C, H, W) in [0,1] (float32), returns float32 logits (B, num_classes). The
    class-independent off-manifold term is left out of the logits (softmax ignores it), so the
    logits stay small enough for float32 and every gradient lies exactly on the manifold.
    """

    def __init__(self, distribution: SyntheticDistribution):
        super().__init__()
        precision, logdet = distribution._precisions(0.0)
        self.register_buffer("basis", distribution.basis.clone())  # (D, K)
        self.register_buffer("center", distribution.center.clone())  # (D,)
        self.register_buffer("class_means", distribution.class_means.clone())  # (Y, K)
        self.register_buffer("precision", precision)  # (Y, K, K)
        self.register_buffer("bias", distribution.log_prior - 0.5 * logdet)  # (Y,)

    def forward(self, images):
        # float64 whatever the module was cast to (``--dtype bfloat16`` casts buffers too)
        basis, center, means, precision = (t.double() for t in (self.basis, self.center, self.class_means, self.precision))
        flat = images.reshape(images.shape[0], -1).to(torch.float64)
        centered = ((flat - center) @ basis)[:, None, :] - means[None]
        quadratic = torch.einsum("byi,yij,byj->by", centered, precision, centered)
        return (self.bias.double() - 0.5 * quadratic).to(images.dtype)
