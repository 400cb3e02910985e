"""Manifold provider ``score-jacobian``: tangent spaces from any differentiable score provider.

At a small noise level σ a denoiser D(x) = x + σ² s(x, σ) (Tweedie; s the score in [0,1] pixel
units) projects onto the data manifold, so its Jacobian has eigenvalues near 1 along the tangent
space and near 0 across it (Stanczuk et al., ICML 2024). The tangent basis is the top-k
eigenvectors of the symmetrised Jacobian (J + Jᵀ)/2, found by the randomised subspace iteration
of :func:`pagbench_plugins.learned.geometry.denoiser_tangent_basis` (JVPs and VJPs with
``torch.func``, batched with ``vmap``; random start vectors drawn per image, so a basis does not
depend on the batch it is computed in). No autoencoder is needed: any score provider whose scores
are differentiable in x serves (EDM, diffusers, the fitted denoiser, the exact ``analytic`` one).

The score provider is reached only through the registry. For providers built on
:class:`pagbench.evaluation.scores.NetworkScoreProvider` (whose ``scores`` run under ``no_grad``) the
differentiable ``network_score`` is used; any other provider's ``scores`` must be differentiable
(checked once, on a mid-grey probe image, when the provider is built), else it is refused.

This module is imported when the registry is built: torch is imported lazily.
"""

from __future__ import annotations

from pagbench.plugin import ManifoldProviderEntry
from pagbench.plugin import PagbenchError
from pagbench.plugin import ManifoldProvider

NAME = "score-jacobian"
#: Option keys read by this provider; every other ``--provider-option`` goes on to the score provider.
OWN_OPTIONS = ("score_provider", "sigma", "k", "iterations", "oversampling", "conditional", "images_per_pass", "device")
DEFAULTS = dict(sigma=0.1, k=32, iterations=4, oversampling=10, conditional=False, images_per_pass=16)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _factory(dataset, options):
    return ScoreJacobianManifold(dataset, options)


ENTRY = ManifoldProviderEntry(
    NAME, _factory,
    "Top-k eigenvectors of the Jacobian of x + σ²·s(x,σ) of any differentiable score provider "
    "(options score_provider, sigma=0.1, k=32, iterations=4, oversampling=10, conditional=0, images_per_pass=16).",
    options=OWN_OPTIONS)


def _jvp_friendly_attention():
    """Scaled dot-product attention by its plain-math kernel, whose ops all have forward-AD
    formulas (the fused CPU/flash kernels have none: diffusers UNets with attention blocks would
    fail under ``jvp``). A no-op where torch lacks ``torch.nn.attention``."""
    import contextlib

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _parse(options) -> dict:
    """The provider's own options, typed and checked (one-line errors)."""
    values = dict(DEFAULTS)
    try:
        for key, kind in (("sigma", float), ("k", int), ("iterations", int), ("oversampling", int), ("images_per_pass", int)):
            if key in options:
                raw = options[key]
                if kind is int and isinstance(raw, float) and not raw.is_integer():
                    raise ValueError(f"invalid literal for int(): {raw!r}")
                values[key] = kind(raw)
    except (TypeError, ValueError):
        raise PagbenchError(f"{NAME} option {key} must be {'a number' if kind is float else 'an integer'}, got {options[key]!r}") from None
    if "conditional" in options:
        raw = options["conditional"]
        text = str(raw).strip().lower()
        if isinstance(raw, bool) or text in _TRUE + _FALSE:
            values["conditional"] = raw if isinstance(raw, bool) else text in _TRUE
        else:
            raise PagbenchError(f"{NAME} option conditional must be 0/1 (or true/false), got {raw!r}")
    import math

    if not (math.isfinite(values["sigma"]) and values["sigma"] > 0):
        raise PagbenchError(f"{NAME} option sigma must be a finite number > 0 (pixel units), got {values['sigma']}")
    if values["k"] < 1 or values["iterations"] < 1 or values["oversampling"] < 0 or values["images_per_pass"] < 1:
        raise PagbenchError(f"{NAME} needs k >= 1, iterations >= 1, oversampling >= 0, images_per_pass >= 1; got "
                            f"k={values['k']}, iterations={values['iterations']}, oversampling={values['oversampling']}, "
                            f"images_per_pass={values['images_per_pass']}")
    return values


class ScoreJacobianManifold(ManifoldProvider):
    """Tangent basis (B, k, D) = top-k eigenvectors of (J + Jᵀ)/2, J = ∂/∂x [x + σ²·s(x, σ)].

    Options: ``score_provider`` (default: the dataset's default score provider), ``sigma``
    (pixel units, default 0.1; for a provider with discrete noise levels its ``effective_sigma``
    is used), ``k`` (32), ``iterations`` (4), ``oversampling`` (10), ``conditional`` (0: the
    unconditional score, whose Jacobian is the same for every label; 1: the class-conditional
    score at the image's label, a label-dependent basis), ``images_per_pass`` (16: images per
    batched JVP pass; memory grows with it × (k + oversampling)), ``device``. Other options go on
    to the score provider (e.g. ``path`` and ``trust_pickle`` for ``edm``).
    """

    name = NAME

    def __init__(self, dataset, options):
        from pagbench.plugin import registry
        from pagbench.plugin import NetworkScoreProvider, score_image_shape

        options = dict(options or {})
        values = _parse(options)
        self.k, self.iterations, self.oversampling = values["k"], values["iterations"], values["oversampling"]
        self.conditional, self.images_per_pass = values["conditional"], values["images_per_pass"]
        if self.k >= dataset.dim:
            raise PagbenchError(f"{NAME} option k must be below the image dimension {dataset.dim}, got {self.k}")
        if tuple(score_image_shape(dataset)) != tuple(dataset.image_shape):
            raise PagbenchError(f"{NAME}: dataset {dataset.name!r} is scored at another resolution than its images "
                                f"({'x'.join(map(str, score_image_shape(dataset)))}); its score Jacobian is no tangent basis of the images")
        chosen = options.get("score_provider") or registry.datasets().get(dataset.name).default_score_provider
        if not chosen:
            raise PagbenchError(f"{NAME}: dataset {dataset.name!r} has no default score provider; pass --provider-option score_provider=NAME")
        self.score_provider_name = str(chosen)
        entry = registry.score_providers().get(self.score_provider_name)  # unknown name: one line with the closest names
        forwarded = {key: value for key, value in options.items() if key not in OWN_OPTIONS or key == "device"}
        try:
            self.provider = entry.factory(dataset, forwarded)
        except PagbenchError as error:
            raise type(error)(f"{NAME} (score provider {entry.name!r}): {error}") from None
        self.kind = "conditional" if self.conditional else "unconditional"
        self.requested_sigma = values["sigma"]
        self.sigma = float(self.provider.effective_sigma(self.requested_sigma))
        self.network = isinstance(self.provider, NetworkScoreProvider)
        if self.network and not (self.provider.has_conditional if self.conditional else self.provider.has_unconditional):
            hint = getattr(self.provider, "unavailable_hint", "")
            raise PagbenchError(f"{NAME}: score provider {entry.name!r} gives no {'class-conditional' if self.conditional else 'unconditional'} "
                                f"score{f' ({hint})' if hint else ''}; set --provider-option conditional={0 if self.conditional else 1}")
        try:
            self.provider.check(self.requested_sigma, self.kind)
        except PagbenchError as error:
            raise PagbenchError(f"{NAME}: {error}") from None
        self.device = str(getattr(self.provider, "device", options.get("device", "cpu"))) if self.network else "cpu"
        self._check_differentiable(dataset)

    @property
    def fingerprint(self) -> str:
        return (f"{NAME}:{self.provider.fingerprint}:{self.kind}:s{self.sigma:g}:k{self.k}:i{self.iterations}"
                f":o{self.oversampling}")

    # ------------------------------------------------------------------------------ scores
    def _score(self, images, labels):
        """s(x, σ) with autograd, in the dtype of ``images``."""
        labels = labels if self.conditional else None
        if self.network:
            return self.provider.network_score(images, labels, self.requested_sigma).to(images.dtype)
        if labels is None:  # the unconditional score needs no label; the API takes one anyway
            import torch

            labels = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        return self.provider.scores(images, labels, self.requested_sigma, self.kind).to(images.dtype)

    def _dtype(self):
        import torch

        return torch.float32 if self.network else torch.float64

    def _check_differentiable(self, dataset) -> None:
        """Refuse a provider whose scores carry no gradient (e.g. computed under ``no_grad``, or
        converted through numpy): with them the VJPs would be silently zero."""
        import torch

        from torch.func import jvp

        probe = torch.full((1, *dataset.image_shape), 0.5, dtype=self._dtype(), device=self.device, requires_grad=True)
        labels = torch.zeros(1, dtype=torch.long, device=self.device)
        reason = None
        try:
            with torch.enable_grad(), _jvp_friendly_attention():
                score = self._score(probe, labels)
                if not (isinstance(score, torch.Tensor) and score.requires_grad):
                    reason = "its scores carry no gradient (computed without autograd)"
                else:
                    (gradient,) = torch.autograd.grad(score.sum(), probe, allow_unused=True)
                    if gradient is None:
                        reason = "its scores do not depend on the images through autograd"
                    else:  # forward mode too (some kernels have no forward-AD formula)
                        jvp(lambda z: self._score(z, labels), (probe.detach(),), (torch.ones_like(probe),))
        except PagbenchError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure here means: not usable
            first = str(error).splitlines()[0] if str(error) else ""
            reason = f"differentiating its scores failed ({type(error).__name__}: {first})"
        if reason:
            raise PagbenchError(f"{NAME} needs a differentiable score; score provider {self.score_provider_name!r}: {reason}")

    # ---------------------------------------------------------------------------- geometry
    def tangent_basis(self, images, labels):
        import torch

        from .geometry import denoiser_tangent_basis

        sigma2 = self.sigma**2
        parts = []
        for start in range(0, images.shape[0], self.images_per_pass):
            x = images[start : start + self.images_per_pass].to(self.device, self._dtype())
            y = labels[start : start + self.images_per_pass].to(self.device)

            def denoise(z, y=y):
                return z + sigma2 * self._score(z, y)

            with torch.enable_grad(), _jvp_friendly_attention():
                parts.append(denoiser_tangent_basis(denoise, x, self.k, self.iterations, self.oversampling,
                                                    chunk=x.shape[0]).detach().double().cpu())
        return torch.cat(parts)
