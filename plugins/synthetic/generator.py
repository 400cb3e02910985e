"""The embedded ground-truth distribution: a class-conditional Gaussian mixture on a flat manifold.

Every image is ``x = c + U (a_y + L_y ξ) + τ n`` with

* ``c`` the mid-grey image (0.5 everywhere),
* ``U`` (D, K) an orthonormal basis of smooth image patterns (the low-frequency 2-D DCT-II
  patterns with ``u + v <= max_frequency``, per channel), so the data manifold is the
  K-dimensional affine subspace ``c + span(U)`` and its tangent space is ``span(U)`` everywhere,
* ``a_y`` (K,) the class mean and ``S_y = L_y L_yᵀ`` (K, K) the class covariance inside that
  subspace: a few class-specific high-variance directions (a class-specific sub-subspace) on
  top of a small isotropic floor, so the Bayes classifier is quadratic, not linear,
* ``ξ ~ N(0, I_K)`` and ``n ~ N(0, I_D)``, ``τ`` the isotropic off-manifold noise (pixel units).

Convolving with Gaussian noise of standard deviation σ (pixel units, the same [0,1] units as the
images) keeps the mixture Gaussian with ``v = τ² + σ²``::

    Σ_y(σ) = U (S_y + v I_K) Uᵀ + v P_⊥,        P_⊥ = I_D − U Uᵀ

so densities, scores and the Bayes posterior are exact in closed form (Woodbury reduces every
D×D operation to K×K). The off-manifold part of every class score, ``−P_⊥(x − c)/v``, is the same
for all classes, so it cancels from ``∇ log p(y|x)``: the Bayes-optimal gradient lies exactly on
the manifold, which is the paper's premise made exact.

Pixels are deliberately not clipped to [0,1] (clipping would break the exact density); with the
default parameters a fraction of a percent of pixels fall outside.
"""

from __future__ import annotations

import math
import torch

from .config import SyntheticConfig

DTYPE = torch.float64


def dct_basis(channels: int, size: int, max_frequency: int) -> torch.Tensor:
    """Orthonormal low-frequency DCT-II patterns, shape (D, K), D = channels·size², float64.

    Pattern (ch, u, v) lives in channel ``ch`` only; frequencies satisfy ``u + v <= max_frequency``.
    """
    positions = torch.arange(size, dtype=DTYPE)
    one_d = []
    for u in range(size):
        scale = math.sqrt(1.0 / size) if u == 0 else math.sqrt(2.0 / size)
        one_d.append(scale * torch.cos(math.pi * (2 * positions + 1) * u / (2 * size)))
    columns = []
    for channel in range(channels):
        for u in range(max_frequency + 1):
            for v in range(max_frequency + 1 - u):
                image = torch.zeros(channels, size, size, dtype=DTYPE)
                image[channel] = torch.outer(one_d[u], one_d[v])
                columns.append(image.reshape(-1))
    return torch.stack(columns, dim=1)


class SyntheticDistribution:
    """Exact density, scores, Bayes posterior and sampler of the embedded dataset.

    All tensors are float64. Images are flattened to (B, D) internally; public methods accept
    (B, C, H, W) or (B, D) and return the same layout as the input for image-shaped outputs.
    """

    def __init__(self, config: SyntheticConfig = SyntheticConfig()):
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        self.basis = dct_basis(config.channels, config.size, config.max_frequency)  # (D, K)
        self.center = torch.full((config.dim,), 0.5, dtype=DTYPE)
        dim_k = self.basis.shape[1]
        self.manifold_dim = dim_k
        means, factors = [], []
        for _ in range(config.num_classes):
            means.append(config.mean_std * torch.randn(dim_k, generator=generator, dtype=DTYPE))
            rotation, _ = torch.linalg.qr(torch.randn(dim_k, dim_k, generator=generator, dtype=DTYPE))
            stds = torch.full((dim_k,), config.floor_std, dtype=DTYPE)
            stds[: config.class_rank] = config.within_std
            factors.append(rotation * stds)  # L_y = Q_y diag(stds), S_y = L_y L_yᵀ
        self.class_means = torch.stack(means)  # (Y, K) coefficients a_y
        self.class_factors = torch.stack(factors)  # (Y, K, K)
        self.class_covariances = self.class_factors @ self.class_factors.transpose(1, 2)
        self.log_prior = torch.full((config.num_classes,), -math.log(config.num_classes), dtype=DTYPE)

    # ----------------------------------------------------------------------------- sampling
    def sample(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``count`` images (count, C, H, W) float32 and labels (count,) int64, balanced."""
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(count) % cfg.num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        latent = torch.randn(count, self.manifold_dim, generator=generator, dtype=DTYPE)
        coefficients = self.class_means[labels] + torch.einsum("bij,bj->bi", self.class_factors[labels], latent)
        noise = torch.randn(count, cfg.dim, generator=generator, dtype=DTYPE)
        flat = self.center + coefficients @ self.basis.T + cfg.noise_std * noise
        return flat.reshape(count, cfg.channels, cfg.size, cfg.size).float(), labels

    # ------------------------------------------------------------------------------ algebra
    def _variance(self, sigma: float) -> float:
        return self.config.noise_std**2 + float(sigma) ** 2

    def _precisions(self, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A_y = (S_y + v I)^{-1} (Y, K, K) and log det(S_y + v I) (Y,)."""
        eye = torch.eye(self.manifold_dim, dtype=DTYPE)
        covariance = self.class_covariances + self._variance(sigma) * eye
        return torch.linalg.inv(covariance), torch.linalg.slogdet(covariance).logabsdet

    def _flatten(self, images: torch.Tensor) -> torch.Tensor:
        return images.reshape(images.shape[0], -1).to(DTYPE)

    def class_log_likelihoods(self, images: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """log p_σ(x|y) for every class, shape (B, Y), exact (float64)."""
        flat = self._flatten(images)
        offset = flat - self.center
        coordinates = offset @ self.basis  # (B, K)
        off_manifold = offset - coordinates @ self.basis.T
        variance = self._variance(sigma)
        precision, logdet = self._precisions(sigma)
        centered = coordinates[:, None, :] - self.class_means[None]  # (B, Y, K)
        quadratic = torch.einsum("byi,yij,byj->by", centered, precision, centered)
        dim, dim_k = self.config.dim, self.manifold_dim
        shared = (off_manifold**2).sum(1, keepdim=True) / variance + (dim - dim_k) * math.log(variance)
        return -0.5 * (quadratic + logdet + shared + dim * math.log(2 * math.pi))

    def log_density(self, images: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """log p_σ(x), shape (B,)."""
        return torch.logsumexp(self.class_log_likelihoods(images, sigma) + self.log_prior, dim=1)

    def bayes_logits(self, images: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """log p_σ(y|x) up to a class-independent shift, (B, Y) float64.

        Terms shared by all classes (the off-manifold quadratic form, constants) are dropped: they
        do not change the posterior and would otherwise dominate the logits' magnitude.
        """
        coordinates = (self._flatten(images) - self.center) @ self.basis
        precision, logdet = self._precisions(sigma)
        centered = coordinates[:, None, :] - self.class_means[None]
        quadratic = torch.einsum("byi,yij,byj->by", centered, precision, centered)
        return self.log_prior - 0.5 * (quadratic + logdet)

    def posterior(self, images: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """p_σ(y|x), shape (B, Y)."""
        return torch.softmax(self.bayes_logits(images, sigma), dim=1)

    def _on_manifold_class_scores(self, coordinates: torch.Tensor, sigma: float) -> torch.Tensor:
        """−A_y (Uᵀ(x−c) − a_y) for every class, (B, Y, K) coefficients."""
        precision, _ = self._precisions(sigma)
        centered = coordinates[:, None, :] - self.class_means[None]
        return -torch.einsum("yij,byj->byi", precision, centered)

    def scores(self, images: torch.Tensor, labels: torch.Tensor, sigma: float, kind: str) -> torch.Tensor:
        """Exact scores in pixel units, same shape as ``images``, float64.

        kind: ``conditional`` ∇ log p_σ(x|y), ``unconditional`` ∇ log p_σ(x), or ``posterior``
        ∇ log p_σ(y|x) = ∇ log p_σ(x|y) − ∇ log p_σ(x), computed without cancellation as
        Σ_{y'≠y} p_σ(y'|x) (s_y − s_y') so that confident points keep their direction.
        """
        flat = self._flatten(images)
        offset = flat - self.center
        coordinates = offset @ self.basis
        class_scores = self._on_manifold_class_scores(coordinates, sigma)  # (B, Y, K)
        labels = labels.to(torch.long)
        own = class_scores[torch.arange(flat.shape[0]), labels]  # (B, K)
        if kind == "posterior":
            weights = self.posterior(images, sigma)
            weights = weights.scatter(1, labels[:, None], 0.0)
            coefficient = torch.einsum("by,byk->bk", weights, own[:, None, :] - class_scores)
            result = coefficient @ self.basis.T
        else:
            off_manifold = -(offset - coordinates @ self.basis.T) / self._variance(sigma)
            if kind == "conditional":
                coefficient = own
            elif kind == "unconditional":
                coefficient = torch.einsum("by,byk->bk", self.posterior(images, sigma), class_scores)
            else:
                raise ValueError(f"unknown score kind {kind!r}")
            result = coefficient @ self.basis.T + off_manifold
        return result.reshape(images.shape)

    def tangent_basis(self, count: int) -> torch.Tensor:
        """Orthonormal tangent basis, (count, K, D) float64: rows span the manifold's tangent space."""
        return self.basis.T.unsqueeze(0).expand(count, -1, -1)

    def bayes_accuracy(self, images: torch.Tensor, labels: torch.Tensor, sigma: float = 0.0) -> float:
        """Accuracy of the Bayes-optimal classifier on (images, labels) at noise σ."""
        return (self.bayes_logits(images, sigma).argmax(1) == labels).double().mean().item()
