"""The metric interface and the per-batch context every metric reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from ..aggregate import Summary


@dataclass
class MetricContext:
    """Everything computed once per batch and shared by all metrics.

    images (B, C, H, W) float32 in [0,1] on the evaluation device; labels (B,) int64;
    logits (B, Y) detached; gradient (B, C, H, W) float64 on the CPU (the chosen input gradient);
    gradient_ok (B,) bool, False for zero or non-finite gradients; score (B, C, H, W) float64 or
    None; tangent_basis (B, k, D) float64 with orthonormal rows, or None; signal_mask
    (B, 1, H, W) bool or None. ``probabilities(x)`` runs the model without gradients and returns
    softmax probabilities (B, Y) float64. ``randomness.randn(stream, *shape)`` draws (B, *shape)
    float64 standard normals from per-image streams seeded by the run's seed, the image index and
    the stream name, so numbers do not depend on the batch size.
    """

    images: "torch.Tensor"
    labels: "torch.Tensor"
    logits: "torch.Tensor"
    gradient: "torch.Tensor"
    gradient_ok: "torch.Tensor"
    probabilities: Callable[["torch.Tensor"], "torch.Tensor"]
    randomness: Any
    dataset: Any
    options: Any
    score: "torch.Tensor | None" = None
    tangent_basis: "torch.Tensor | None" = None
    signal_mask: "torch.Tensor | None" = None

    def reference_probabilities(self) -> "torch.Tensor":
        """softmax of the batch's logits (B, Y) float64, from the gradient pass: no extra forward."""
        import torch

        return torch.softmax(self.logits.double(), dim=1)

    def gradient_for_score(self) -> "torch.Tensor":
        """The gradient resized like the images were for the score when the score is taken at
        another resolution (``Dataset.score_image_shape``), else the gradient itself."""
        from ..scores import resize_images

        if self.score is None or self.score.shape == self.gradient.shape:
            return self.gradient
        return resize_images(self.gradient, self.score.shape[-2:])

    def masked(self, values: "torch.Tensor") -> "torch.Tensor":
        """``values`` with NaN where the gradient is degenerate (excluded from means)."""
        import torch

        values = values.double().cpu()
        return torch.where(self.gradient_ok, values, torch.full_like(values, float("nan")))


@dataclass
class MetricOutput:
    """Per-image values (name → (B,)) and curves (name → (B, G)) of one batch."""

    values: dict[str, "torch.Tensor"] = field(default_factory=dict)
    curves: dict[str, "torch.Tensor"] = field(default_factory=dict)


class Metric:
    """Base class for metrics. Subclasses set the class attributes and implement ``compute``.

    ``outputs`` maps each per-image value the metric reports to its direction (True: higher is
    better, False: lower is better, None: descriptive). By default it is ``{name: higher_is_better}``.
    """

    name: str = ""
    higher_is_better: bool | None = True
    requires: frozenset[str] = frozenset()
    description: str = ""

    @property
    def outputs(self) -> dict[str, bool | None]:
        return {self.name: self.higher_is_better}

    def check_available(self, setup) -> None:
        """Raise :class:`pagbench.errors.MetricUnavailable` when the metric cannot run.

        ``setup`` is the :class:`pagbench.runner.EvaluationSetup` (dataset, providers, options).
        """

    def compute(self, context: MetricContext) -> MetricOutput:
        raise NotImplementedError

    def derived(self, per_image: dict[str, "torch.Tensor"]) -> dict[str, "Summary"]:
        """Summaries computed from the whole run's per-image values (e.g. ratios of means)."""
        return {}

    def derived_outputs(self) -> dict[str, bool | None]:
        return {}

    def curve_grid(self, setup) -> dict[str, list[float]]:
        """The x-values of each curve this metric reports (e.g. the ε grid)."""
        return {}

    def describe(self, setup) -> dict:
        """Settings recorded in the result (e.g. the ε grid and the headline ε)."""
        return {}
