"""``signal_distractor_ratio`` for datasets with a known signal / distractor mask.

For every noise level σ in the dataset's grid (pixel units), with one Gaussian draw n per image:

    signal(σ)     = ‖softmax f(x + σ n ⊙ m) − softmax f(x)‖₁          (m: signal mask)
    distractor(σ) = ‖softmax f(x + σ n ⊙ (1 − m)) − softmax f(x)‖₁

The headline is mean signal / mean distractor at the middle noise level of the grid; a model
that relies on the signal and ignores the distractor has a ratio well above 1.
"""

from __future__ import annotations

from pagbench.plugin import MetricUnavailable
from pagbench.plugin import Metric, MetricOption, MetricContext, MetricOutput, check_grid


class SignalDistractorRatio(Metric):
    name = "signal_distractor_ratio"
    higher_is_better = True
    requires = frozenset({"signal_mask"})
    description = "Output change under noise on the signal vs. on the distractor region."
    value_ranges = {"signal_sensitivity": (0.0, 2.0), "distractor_sensitivity": (0.0, 2.0), "signal_distractor_ratio": (0.0, float("inf"))}
    options = (
        MetricOption("noise_levels", "floats", setting="noise_levels", recorded_after="headline_epsilon",
                     help="Noise grid for signal_distractor_ratio: a,b,c or lo:hi:n.", board_text="noise levels {value}"),
    )

    def __init__(self):
        self._levels: list[float] = []

    @property
    def outputs(self):
        return {"signal_sensitivity": None, "distractor_sensitivity": None}

    def derived_outputs(self):
        return {self.name: True}

    def check_options(self, options) -> None:
        check_grid(self.option(options, "noise_levels"), "--noise-levels")

    def check_available(self, setup) -> None:
        if not setup.dataset.has_signal_mask:
            raise MetricUnavailable(f"dataset {setup.dataset.name!r} has no signal/distractor mask")
        levels = self.option(setup.options, "noise_levels") or setup.dataset.noise_levels
        if not levels:
            raise MetricUnavailable(f"dataset {setup.dataset.name!r} defines no noise levels")
        self._levels = [float(level) for level in levels]

    @property
    def headline_index(self) -> int:
        return len(self._levels) // 2

    def curve_grid(self, setup):
        return {"signal_sensitivity": self._levels, "distractor_sensitivity": self._levels}

    def describe(self, setup):
        return {"noise_levels": self._levels, "headline_noise_level": self._levels[self.headline_index]}

    def compute(self, context: MetricContext) -> MetricOutput:
        import torch

        images = context.images
        mask = context.signal_mask.to(images.device, images.dtype)
        noise = context.randomness.randn("signal_distractor", *images.shape[1:]).to(images.device, images.dtype)
        reference = context.reference_probabilities()
        curves = {}
        for name, region in (("signal_sensitivity", mask), ("distractor_sensitivity", 1.0 - mask)):
            changes = []
            for level in self._levels:
                moved = context.probabilities(images + level * noise * region)
                changes.append((moved - reference).abs().sum(1).cpu())
            curves[name] = torch.stack(changes, dim=1)
        values = {name: curve[:, self.headline_index] for name, curve in curves.items()}
        return MetricOutput(values, curves)

    def derived(self, per_image):
        from pagbench.plugin import summarize_ratio

        return {self.name: summarize_ratio(per_image["signal_sensitivity"], per_image["distractor_sensitivity"])}
