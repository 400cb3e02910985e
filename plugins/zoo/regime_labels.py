"""Regime labels (weak / Bayes-aligned / excessive) for a sweep of one training regime.

A *sweep* is every entry of one dataset, one architecture, one training regime (``model_card``
``regime`` with ``strength`` > 0) and one evaluation configuration (the entry key without the
model name), together with its *reference*: the entry of the same dataset, architecture and
evaluation configuration whose regime is ``standard``. Write A₀, c₀, r₀ for the reference's
accuracy, score_cosine and off/on robustness ratio, and a(s), c(s), r(s) for strength s.

1. A strength *keeps accuracy* when a(s) ≥ A₀ − :data:`ACCURACY_TOLERANCE`.
2. The *peak* s* is the accuracy-keeping strength with the highest score_cosine. It counts only
   when it beats the reference by more than the standard error of the difference,
   c(s*) − c₀ > √(se(s*)² + se₀²).
3. With a peak, an accuracy-keeping strength is **Bayes-aligned** when it has at least half the
   peak's gain, c(s) ≥ c₀ + (c(s*) − c₀)/2, and its off-manifold sensitivity has fallen,
   r(s) < r₀ (skipped when a ratio is missing); otherwise it is **weak** when s < s*, and
   undecided beyond the peak. Without a peak every accuracy-keeping strength is **weak**
   (robust training has not yet bought alignment).
4. A strength that loses accuracy is **excessive** when it lies beyond the peak (without a
   peak: beyond every accuracy-keeping strength); otherwise it is undecided. A strength beyond
   the peak whose on-manifold sensitivity fell below :data:`ON_COLLAPSE` (half) of the
   reference's is excessive too: it has become robust along the manifold as well.

Undecided (``-``): entries that are not part of a sweep (the reference itself, the Bayes-optimal
model, other models), sweeps without a unique reference, sweeps with fewer than
:data:`MIN_STRENGTHS` strengths, and entries missing accuracy or score_cosine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

#: Accuracy loss (absolute, w.r.t. the standard model) beyond which a strength "loses accuracy".
ACCURACY_TOLERANCE = 0.05
#: Strengths of a regime needed (besides the standard model) before labels are given.
MIN_STRENGTHS = 2
WEAK, ALIGNED, EXCESSIVE, UNDECIDED = "weak", "Bayes-aligned", "excessive", "-"

#: A strength beyond the peak whose on-manifold sensitivity fell below this fraction of the
#: reference's is excessive even if accuracy holds (robust along the manifold too).
ON_COLLAPSE = 0.5
_ACCURACY, _COSINE, _RATIO, _ON = "accuracy", "score_cosine", "manifold_robustness_off_on_ratio", "manifold_robustness_on"


def _metric(result: dict, name: str) -> tuple[float | None, float]:
    record = result["metrics"].get(name)
    if not isinstance(record, dict) or record.get("value") is None:
        return None, 0.0
    return float(record["value"]), float(record.get("stderr") or 0.0)


def _group(result: dict) -> str:
    """Dataset, architecture and evaluation configuration (the entry key without the model)."""
    from pagbench.plugin import entry_key

    key = entry_key(result)
    key.pop("model")
    card = result["config"].get("model_card") or {}
    return json.dumps([card.get("architecture"), key], sort_keys=True)


def _strength(result: dict) -> float | None:
    card = result["config"].get("model_card") or {}
    strength = card.get("strength")
    return float(strength) if isinstance(strength, (int, float)) and math.isfinite(strength) else None


def regime_labels(results: Sequence[dict]) -> list[str]:
    """One label per result document (same order): weak, Bayes-aligned, excessive or ``-``.

    ``results`` may mix datasets, regimes and configurations; see the module docstring.
    """
    labels = [UNDECIDED] * len(results)
    groups: dict[str, list[int]] = {}
    for index, result in enumerate(results):
        groups.setdefault(_group(result), []).append(index)
    for members in groups.values():
        references = [i for i in members if (results[i]["config"].get("model_card") or {}).get("regime") == "standard"]
        if len(references) != 1:
            continue
        reference = results[references[0]]
        sweeps: dict[str, list[int]] = {}
        for i in members:
            card = results[i]["config"].get("model_card") or {}
            strength = _strength(results[i])
            if card.get("regime") not in (None, "standard") and strength is not None and strength > 0:
                sweeps.setdefault(card["regime"], []).append(i)
        for sweep in sweeps.values():
            for i, label in _label_sweep(reference, [results[i] for i in sweep]).items():
                labels[sweep[i]] = label
    return labels


@dataclass(frozen=True)
class Point:
    """One strength of a sweep (or the reference, strength 0): seed means where there are seeds.
    ``cosine_se`` is the standard error of score_cosine; ``ratio`` the off/on robustness ratio and
    ``on`` the on-manifold sensitivity (None where not measured)."""

    strength: float
    accuracy: float
    cosine: float
    cosine_se: float = 0.0
    ratio: float | None = None
    on: float | None = None


def _point(result: dict) -> Point | None:
    accuracy, _ = _metric(result, _ACCURACY)
    cosine, cosine_se = _metric(result, _COSINE)
    if accuracy is None or cosine is None:
        return None
    return Point(_strength(result) or 0.0, accuracy, cosine, cosine_se, _metric(result, _RATIO)[0], _metric(result, _ON)[0])


def _label_sweep(reference: dict, sweep: list[dict]) -> dict[int, str]:
    strengths = [_strength(result) for result in sweep]
    if len(set(strengths)) != len(strengths):
        return {}
    base = _point(reference)
    if base is None:
        return {}
    points = {index: point for index, point in ((i, _point(r)) for i, r in enumerate(sweep)) if point is not None}
    order = list(points)
    return {index: label for index, label in zip(order, label_points(base, [points[i] for i in order]))}


def label_points(reference: Point, points: Sequence[Point]) -> list[str]:
    """Labels for ``points`` (distinct strengths > 0) against ``reference`` by the module's rule."""
    if len({point.strength for point in points}) < MIN_STRENGTHS:
        return [UNDECIDED] * len(points)
    kept = {i for i, point in enumerate(points) if point.accuracy >= reference.accuracy - ACCURACY_TOLERANCE}
    peak = max(kept, key=lambda i: (points[i].cosine, -points[i].strength), default=None)
    if peak is not None and not points[peak].cosine - reference.cosine > math.sqrt(points[peak].cosine_se**2 + reference.cosine_se**2):
        peak = None
    if peak is not None:
        peak_strength = points[peak].strength
        half_gain = reference.cosine + (points[peak].cosine - reference.cosine) / 2
    else:
        peak_strength = max((points[i].strength for i in kept), default=0.0)
    labels = []
    for index, point in enumerate(points):
        collapsed = point.on is not None and reference.on is not None and point.on < ON_COLLAPSE * reference.on
        if index not in kept or (collapsed and point.strength > peak_strength):
            labels.append(EXCESSIVE if point.strength > peak_strength else UNDECIDED)
        elif peak is None:
            labels.append(WEAK)
        elif point.cosine >= half_gain and (point.ratio is None or reference.ratio is None or point.ratio < reference.ratio):
            labels.append(ALIGNED)
        elif point.strength < peak_strength:
            labels.append(WEAK)
        else:
            labels.append(UNDECIDED)
    return labels


#: The rule as the leaderboard states it (below its column legend).
BOARD_RULE = """**Regime-label rule.** A sweep is every entry of one dataset, architecture, regime (strength > 0)
and evaluation configuration, with the `standard` entry of the same architecture and configuration
as its reference (accuracy A₀, score_cosine c₀, off/on ratio r₀); it is labelled when it has at
least {MIN_STRENGTHS} strengths. A strength *keeps accuracy* when its accuracy ≥ A₀ − {ACCURACY_TOLERANCE}.
The *peak* s* is the accuracy-keeping strength with the highest score_cosine; it counts only when
c(s*) − c₀ exceeds the standard error of that difference. With a peak, an accuracy-keeping strength
is **Bayes-aligned** when c(s) ≥ c₀ + (c(s*) − c₀)/2 and r(s) < r₀; otherwise it is **weak** below the
peak and `-` above it. Without a peak, accuracy-keeping strengths are **weak**. A strength that loses
accuracy is **excessive** when it lies beyond the peak (without a peak: beyond every
accuracy-keeping strength), else `-`; so is a strength beyond the peak whose on-manifold
sensitivity fell below {ON_COLLAPSE} × the reference's. The standard and Bayes-optimal rows are
references (`-`).
"""


def board_column():
    """The leaderboard's ``regime label`` column (:class:`pagbench.extensions.records.EntryColumn`)."""
    from pagbench.plugin import EntryColumn

    return EntryColumn(
        name="regime label",
        cells=regime_labels,
        description="weak / Bayes-aligned / excessive within a sweep of one regime (rule below); `-` when it cannot be decided.",
        rule=BOARD_RULE.format(MIN_STRENGTHS=MIN_STRENGTHS, ACCURACY_TOLERANCE=ACCURACY_TOLERANCE, ON_COLLAPSE=ON_COLLAPSE),
    )
