"""``score_cosine``: cos(g, s) between the model's input gradient (or the chosen attribution) and the score.

With ``--sigmas`` it also reports the curve over the σ grid (``curves.score_cosine``, x = σ in
[0,1] pixel units); the headline value is the one at the headline σ, a point of the grid.
"""

from __future__ import annotations

from pagbench.plugin import BoardColumn, Metric, MetricContext, MetricOutput, cosine


class ScoreCosine(Metric):
    name = "score_cosine"
    board_columns = (BoardColumn(
        "score_cosine ± se", "score_cosine", with_stderr=True, position=20, always=True, rank=1,
        legend="mean over images of cos(g, s) between the model's input gradient g and the\n"
               "  score s (see the table's configuration), ± standard error. Higher is better.",
        note="`score_cosine` is the primary metric because it is exact for the embedded data (the Bayes-optimal\n"
             "model scores 1), is computed for every dataset with a score provider, and needs no downloaded\n"
             "network; `lpips_alignment` (the paper's metric) needs the AlexNet weights and is shown where available."),)
    higher_is_better = True
    requires = frozenset({"gradient", "score"})
    description = "Cosine similarity between the input gradient and the paired score (1 = aligned)."
    value_ranges = {"score_cosine": (-1.0, 1.0)}

    def compute(self, context: MetricContext) -> MetricOutput:
        values = {self.name: context.masked(cosine(context.gradient_for_score(), context.score))}
        curves = {}
        if context.sigma_scores is not None:
            import torch

            curves[self.name] = torch.stack(
                [values[self.name] if score is context.score else context.masked(cosine(context.gradient_like(score), score))
                 for score in context.sigma_scores], dim=1)
        return MetricOutput(values, curves)

    def curve_grid(self, setup):
        return sigma_curve_grid(self.name, setup)

    def describe(self, setup):
        return sigma_settings(setup)


def sigma_curve_grid(name: str, setup) -> dict:
    """``{name: σ grid}`` when the run has ``--sigmas``, else {}."""
    return {name: list(setup.sigmas)} if getattr(setup, "sigmas", None) else {}


def sigma_settings(setup) -> dict:
    """The σ grid, the headline σ and the σ the provider really used at each point (``--sigmas`` runs)."""
    if not getattr(setup, "sigmas", None):
        return {}
    return {"sigmas": list(setup.sigmas), "headline_sigma": setup.sigma,
            "sigmas_used": [setup.score_provider.effective_sigma(sigma) for sigma in setup.sigmas],
            "sigma_units": "[0,1] pixel units"}
