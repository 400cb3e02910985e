"""``score_cosine``: cos(g, s) between the model's input gradient and the score."""

from __future__ import annotations

from pagbench.metrics import BoardColumn, Metric, MetricContext, MetricOutput


def cosine(first, second):
    """Per-image cosine of two (B, ...) tensors in float64; NaN where either is zero."""
    import torch

    a = first.reshape(first.shape[0], -1).double()
    b = second.reshape(second.shape[0], -1).double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    value = (a * b).sum(1) / norms
    return torch.where(norms > 0, value, torch.full_like(value, float("nan")))


class ScoreCosine(Metric):
    name = "score_cosine"
    board_columns = (BoardColumn("score_cosine ± se", "score_cosine", with_stderr=True, position=20, always=True),)
    higher_is_better = True
    requires = frozenset({"gradient", "score"})
    description = "Cosine similarity between the input gradient and the paired score (1 = aligned)."

    def compute(self, context: MetricContext) -> MetricOutput:
        return MetricOutput({self.name: context.masked(cosine(context.gradient_for_score(), context.score))})
