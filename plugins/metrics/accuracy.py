"""``accuracy``: fraction of images whose highest logit is the label.

An image whose logits are not all finite (NaN/inf outputs) counts as wrong — a model that
answers NaN did not classify the image — and is also counted under ``degenerate``; so an all-NaN
model has accuracy 0, not "unavailable"."""

from __future__ import annotations

from pagbench.plugin import BoardColumn, Metric, MetricContext, MetricOutput


class Accuracy(Metric):
    name = "accuracy"
    board_columns = (BoardColumn("accuracy", "accuracy", position=10, always=True, rank=2,
                                 legend="top-1 accuracy on the evaluated images."),)
    higher_is_better = True
    description = "Top-1 accuracy on the evaluated images."
    value_ranges = {"accuracy": (0.0, 1.0)}

    def compute(self, context: MetricContext) -> MetricOutput:
        import torch

        logits = context.logits.double().cpu()
        correct = (logits.argmax(1) == context.labels.cpu()).double()
        finite = torch.isfinite(logits).all(1)
        return MetricOutput({self.name: torch.where(finite, correct, torch.zeros_like(correct))})
