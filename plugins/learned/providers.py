"""Score and manifold providers backed by models pagbench fits itself (see :mod:`.fit`)."""

from __future__ import annotations

import torch

from pagbench.plugin import PagbenchError
from pagbench.plugin import ManifoldProvider
from pagbench.plugin import NetworkScoreProvider

from . import store


def _device(options) -> str:
    return str(options.get("device", "cpu"))


def _fitted(kind: str, dataset, options, device: str, **match):
    """(store directory, model, record) of the fitted ``kind`` for ``dataset``: the directory named
    by the ``<kind>=DIR`` provider option, else the newest one matching ``match``."""
    directory = store.find(kind, dataset.name, options.get(kind), **match)
    model, record = store.load(directory, device)
    return directory, model, record


class DenoiserScores(NetworkScoreProvider):
    """Score = (D(x, σ, y) − x)/σ² from a denoiser trained by denoising score matching in [0,1]
    pixel units (no conversion needed). Conditional (label y) and unconditional (label dropped).
    Default σ = 0.05 pixel units: small enough to be the data score, large enough for a denoiser
    trained on CPU to be accurate (the error of D is amplified by 1/σ²)."""

    name = "denoiser"
    default_sigma = 0.05

    def __init__(self, dataset, options):
        self.configure(options)
        _, self.model, self.record = _fitted("denoiser", dataset, options, self.device)
        network = self.record["network"]
        self.image_shape = tuple(self.record["image_shape"])
        self.check_dataset(dataset)
        self.has_conditional = network["num_classes"] == dataset.num_classes
        self.unavailable_hint = f"the denoiser has {network['num_classes']} classes, the dataset {dataset.num_classes}"

    @property
    def fingerprint(self) -> str:
        return f"denoiser:{self.record['identifier']}"

    def network_score(self, images, labels, sigma):
        return self.model.score(images, sigma, labels)


class AutoencoderManifold(ManifoldProvider):
    """Tangent space = column space of the decoder's Jacobian at the encoder mean (forward-mode
    AD, batched QR); k = the autoencoder's latent dimension."""

    name = "autoencoder"

    def __init__(self, dataset, options):
        match = {"latent_dim": int(options["latent_dim"])} if "latent_dim" in options else {}
        self.device = _device(options)
        directory, self.model, self.record = _fitted("autoencoder", dataset, options, self.device, **match)
        shape = tuple(self.record["network"]["image_shape"])
        if shape != tuple(dataset.image_shape):
            raise PagbenchError(f"autoencoder {directory.name} works on {'x'.join(map(str, shape))} images, "
                                f"dataset {dataset.name!r} has {'x'.join(map(str, dataset.image_shape))}")

    @property
    def fingerprint(self) -> str:
        return f"autoencoder:{self.record['identifier']}"

    def tangent_basis(self, images, labels):
        from .geometry import decoder_tangent_basis

        with torch.no_grad():
            latents, _ = self.model.encode(images.to(self.device))
        return decoder_tangent_basis(self.model.decode, latents).double().cpu()


class DenoiserManifold(ManifoldProvider):
    """Top-k eigenvectors of the symmetrised Jacobian of the fitted (unconditional) denoiser at
    σ = ``manifold_sigma`` (default 0.1 pixel units), by randomised subspace iteration.
    Options: ``k`` (default 32), ``manifold_sigma``, ``iterations`` (4), ``oversampling`` (10)."""

    name = "denoiser"

    def __init__(self, dataset, options):
        self.device = _device(options)
        directory, self.model, self.record = _fitted("denoiser", dataset, options, self.device)
        try:
            self.k = int(options.get("k", 32))
            self.sigma = float(options.get("manifold_sigma", 0.1))
            self.iterations = int(options.get("iterations", 4))
            self.oversampling = int(options.get("oversampling", 10))
        except ValueError as error:
            raise PagbenchError(f"denoiser manifold options: {error}") from None
        if not (0 < self.k < dataset.dim) or not self.sigma > 0 or self.iterations < 1 or self.oversampling < 0:
            raise PagbenchError(f"denoiser manifold needs 0 < k < {dataset.dim}, manifold_sigma > 0, iterations >= 1; "
                                f"got k={self.k}, manifold_sigma={self.sigma}, iterations={self.iterations}")
        if self.record["network"]["channels"] != dataset.image_shape[0]:
            raise PagbenchError(f"denoiser {directory.name} has {self.record['network']['channels']} channels, "
                                f"dataset {dataset.name!r} has {dataset.image_shape[0]}")

    @property
    def fingerprint(self) -> str:
        return f"denoiser-manifold:{self.record['identifier']}:k{self.k}:s{self.sigma:g}:i{self.iterations}:o{self.oversampling}"

    def tangent_basis(self, images, labels):
        from .geometry import denoiser_tangent_basis

        sigma = self.sigma

        def denoise(x):
            return self.model(x, sigma)

        return denoiser_tangent_basis(denoise, images.to(self.device), self.k, self.iterations, self.oversampling).double().cpu()
