"""Score providers and the pairing of model gradients with scores.

A score provider returns ∇x log p_σ(x|y) ("conditional"), ∇x log p_σ(x) ("unconditional") or
their difference ∇x log p_σ(y|x) ("posterior"), all in [0,1] pixel units at a noise level σ in
[0,1] pixel units, as float64 tensors shaped like the images. Providers whose model works in
another range convert (for [−1,1] models: σ₋₁ = 2σ, score = 2·score₋₁) and say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SCORE_KINDS = ("posterior", "conditional", "unconditional")

#: The score each gradient is compared with when ``--score auto``. Logits are defined only up to
#: an additive function of x, so only ∇ log softmax(f)_y has a model-independent meaning: for the
#: Bayes-optimal model it *is* ∇ log p(x|y) − ∇ log p(x). Hence the default ``logprob ↔ posterior``,
#: under which the Bayes-optimal model scores exactly 1. The others follow the paper's readings:
#: the target logit as an energy (≈ log p(x|y) + c(x)) and the logit sum (the reference code's
#: choice) or log-sum-exp against the unconditional score.
PAIRED_SCORE = {
    "logprob": "posterior",
    "logit": "conditional",
    "logsumexp": "unconditional",
    "logit-sum": "unconditional",
}


class ScoreProvider:
    """Base class. Subclasses implement :meth:`conditional` and :meth:`unconditional`, or
    :meth:`scores` directly when they can do better (e.g. exact posterior scores)."""

    name: str = "score"
    #: σ used when the user gives none, in [0,1] pixel units.
    default_sigma: float = 0.0
    #: Whether scores may be cached on disk (cheap closed forms need not be).
    disk_cache: bool = True

    @property
    def fingerprint(self) -> str:
        """Identifies the provider's weights and settings in cache keys."""
        return self.name

    def effective_sigma(self, sigma: float) -> float:
        """The σ (pixel units) the scores for a requested ``sigma`` are really taken at, e.g. the
        closest noise level of a discrete schedule. Results record it as ``sigma_used``."""
        return sigma

    def check(self, sigma: float, kind: str) -> None:
        """Raise :class:`pagbench.errors.PagbenchError` before any compute when scores of ``kind``
        at ``sigma`` cannot be provided (e.g. σ ≤ 0 for a learned score). Default: accept."""

    def conditional(self, images: "torch.Tensor", labels: "torch.Tensor", sigma: float) -> "torch.Tensor":
        raise NotImplementedError(f"{self.name} provides no class-conditional score")

    def unconditional(self, images: "torch.Tensor", sigma: float) -> "torch.Tensor":
        raise NotImplementedError(f"{self.name} provides no unconditional score")

    def scores(self, images: "torch.Tensor", labels: "torch.Tensor", sigma: float, kind: str) -> "torch.Tensor":
        """Scores of ``kind`` for images (B, C, H, W) in [0,1]; float64, same shape."""
        if kind == "conditional":
            return self.conditional(images, labels, sigma).double()
        if kind == "unconditional":
            return self.unconditional(images, sigma).double()
        if kind == "posterior":
            return self.conditional(images, labels, sigma).double() - self.unconditional(images, sigma).double()
        raise ValueError(f"unknown score kind {kind!r}")


def resize_images(images: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":
    """Images or gradients (B, C, H, W) resized to ``size`` by area averaging (a fixed linear
    map), or returned unchanged when already that size. Scores of datasets whose score model
    works at another resolution (``Dataset.score_image_shape``, e.g. ImageNet scored at 64×64)
    are taken on resized images, and gradients are resized the same way before comparison."""
    import torch.nn.functional as functional

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return functional.interpolate(images, size=tuple(size), mode="area")


def score_image_shape(dataset) -> tuple[int, int, int]:
    """The (C, H, W) at which scores of ``dataset`` are taken (its image shape unless it sets
    ``score_image_shape``)."""
    return tuple(getattr(dataset, "score_image_shape", None) or dataset.image_shape)


def check_sigma(sigma: float, provider: str) -> float:
    """σ must be > 0 (pixel units) for learned scores: raise a one-line error otherwise."""
    from pagbench.errors import PagbenchError

    if not float(sigma) > 0:
        raise PagbenchError(f"score provider {provider!r} needs --sigma > 0 (pixel units), got {sigma}")
    return float(sigma)


class NetworkScoreProvider(ScoreProvider):
    """Base for scores computed by a network (denoisers, diffusion models), in [0,1] pixel units.

    Subclasses set ``name``, ``default_sigma`` (> 0), ``image_shape`` (C, H, W) of the network,
    ``has_conditional`` / ``has_unconditional``, and implement ``network_score(images, labels,
    sigma)`` for images already at ``image_shape`` (labels None = unconditional), returning the
    score in [0,1] units. This base checks σ > 0 and the kinds before any compute, resizes images
    to the score resolution, evaluates in chunks of ``chunk_size`` without autograd, and returns
    float64 on the CPU.
    """

    default_sigma: float = 0.05
    image_shape: tuple[int, int, int] = (0, 0, 0)
    has_conditional: bool = True
    has_unconditional: bool = True
    chunk_size: int = 64
    device: str = "cpu"
    unavailable_hint: str = ""

    def configure(self, options: dict) -> None:
        """Read the common options: ``device`` and ``chunk`` (images per network call; peak
        memory grows linearly with it)."""
        from pagbench.errors import PagbenchError

        self.device = str(options.get("device", self.device))
        try:
            self.chunk_size = int(options.get("chunk", self.chunk_size))
        except ValueError:
            raise PagbenchError(f"provider option chunk must be an integer, got {options.get('chunk')!r}") from None
        if self.chunk_size < 1:
            raise PagbenchError(f"provider option chunk must be positive, got {self.chunk_size}")

    def check_dataset(self, dataset) -> None:
        """Raise a one-line error when the network's image shape does not fit ``dataset``."""
        from pagbench.errors import PagbenchError

        wanted = score_image_shape(dataset)
        if tuple(self.image_shape) != tuple(wanted):
            raise PagbenchError(
                f"score model {self.name!r} works on {'x'.join(map(str, self.image_shape))} images but dataset "
                f"{dataset.name!r} is scored at {'x'.join(map(str, wanted))}"
            )

    def check(self, sigma: float, kind: str) -> None:
        from pagbench.errors import PagbenchError

        check_sigma(sigma, self.name)
        missing = []
        if kind in ("conditional", "posterior") and not self.has_conditional:
            missing.append("class-conditional")
        if kind in ("unconditional", "posterior") and not self.has_unconditional:
            missing.append("unconditional")
        if missing:
            raise PagbenchError(f"score provider {self.name!r} gives no {' or '.join(missing)} score (needed for --score {kind})"
                                + (f"; {self.unavailable_hint}" if self.unavailable_hint else ""))

    def network_score(self, images, labels, sigma):
        raise NotImplementedError

    def _evaluate(self, images, labels, sigma):
        import torch

        check_sigma(sigma, self.name)
        images = resize_images(images.float(), self.image_shape[-2:])
        parts = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.chunk_size):
                chunk = images[start : start + self.chunk_size].to(self.device)
                chunk_labels = None if labels is None else labels[start : start + self.chunk_size].to(self.device)
                parts.append(self.network_score(chunk, chunk_labels, float(sigma)).double().cpu())
        return torch.cat(parts)

    def conditional(self, images, labels, sigma):
        return self._evaluate(images, labels, sigma)

    def unconditional(self, images, sigma):
        return self._evaluate(images, None, sigma)
