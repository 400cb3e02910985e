"""Aggregation of per-image metric values: mean ± standard error over the finite values.

Non-finite per-image values mark degenerate images (zero or non-finite gradients, NaN outputs);
they are excluded from the mean and counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Summary:
    """Mean over ``n`` images, its standard error (sample std / √n), and ``excluded`` images."""

    value: float | None
    stderr: float | None
    n: int
    excluded: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(values) -> Summary:
    """Summary of a 1-D tensor of per-image values (NaN/inf = excluded)."""
    import torch

    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    finite = values[torch.isfinite(values)]
    count, excluded = int(finite.numel()), int(values.numel() - finite.numel())
    if count == 0:
        return Summary(None, None, 0, excluded)
    mean = finite.mean().item()
    stderr = finite.std(unbiased=True).item() / math.sqrt(count) if count > 1 else 0.0
    return Summary(mean, stderr, count, excluded)


def summarize_ratio(numerator, denominator) -> Summary:
    """mean(numerator) / mean(denominator) over images where both are finite, with the
    delta-method standard error of a ratio of means."""
    import torch

    top = torch.as_tensor(numerator, dtype=torch.float64).reshape(-1)
    bottom = torch.as_tensor(denominator, dtype=torch.float64).reshape(-1)
    keep = torch.isfinite(top) & torch.isfinite(bottom)
    top, bottom = top[keep], bottom[keep]
    count, excluded = int(keep.sum()), int((~keep).sum())
    if count == 0 or bottom.mean().item() == 0.0:
        return Summary(None, None, count, excluded)
    mean_top, mean_bottom = top.mean().item(), bottom.mean().item()
    ratio = mean_top / mean_bottom
    if count < 2:
        return Summary(ratio, 0.0, count, excluded)
    residual = (top - ratio * bottom) / mean_bottom
    return Summary(ratio, residual.std(unbiased=True).item() / math.sqrt(count), count, excluded)


def no_value_reason(degenerate: dict, num_images: int, excluded: int) -> str:
    """Why a metric has n = 0: which degenerate images (zero/non-finite gradients, non-finite
    outputs) left it without a single finite per-image value."""
    counts = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in degenerate.items() if count)
    if sum(degenerate.values()) >= num_images:
        return f"all {num_images} images are degenerate ({counts}): no image left to average"
    return f"no finite value on any of the {num_images} images ({excluded} excluded" + (f"; degenerate: {counts})" if counts else ")")
