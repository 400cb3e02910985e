"""Metrics: small classes computing one batched per-image quantity from a shared batch context.

A metric declares its ``name``, ``higher_is_better``, what it ``requires`` from the batch
(``gradient``, ``score``, ``tangent_basis``, ``signal_mask``) and returns per-image values; means,
standard errors and degenerate-image counts are computed in one place (:mod:`pagbench.aggregate`).
"""

from .base import Metric, MetricContext, MetricOutput

__all__ = ["Metric", "MetricContext", "MetricOutput"]
