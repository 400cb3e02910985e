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
