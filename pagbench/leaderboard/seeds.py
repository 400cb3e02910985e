"""Seed statistics of the leaderboard: rows that are several training seeds of one recipe, and
each metric's mean [min, max] over those seeds ± the mean over-images standard error."""

from __future__ import annotations

from dataclasses import dataclass

from pagbench.leaderboard.formatting import number
from pagbench.leaderboard.store import Entry, recipe_key


@dataclass(frozen=True)
class SeedInterval:
    """One metric over the training seeds of a recipe: the mean, min and max of the per-seed
    values, and ``stderr``, the mean over seeds of the over-images standard errors."""

    mean: float | None
    low: float | None
    high: float | None
    stderr: float | None
    seeds: int


def seed_interval(records) -> SeedInterval:
    """:class:`SeedInterval` of metric records (``{"value", "stderr", ...}`` or None, one per seed);
    seeds without a value are left out."""
    values = [float(r["value"]) for r in records if isinstance(r, dict) and r.get("value") is not None]
    errors = [float(r.get("stderr") or 0.0) for r in records if isinstance(r, dict) and r.get("value") is not None]
    if not values:
        return SeedInterval(None, None, None, None, 0)
    return SeedInterval(sum(values) / len(values), min(values), max(values), sum(errors) / len(errors), len(values))


def interval_text(interval: SeedInterval) -> str:
    """``0.590 [0.570, 0.610] ± 0.010``: mean [min, max] over seeds ± mean over-images standard error."""
    if interval.mean is None:
        return "n/a"
    text = number(interval.mean)
    if interval.seeds > 1:
        text += f" [{number(interval.low)}, {number(interval.high)}]"
    return text + f" ± {interval.stderr:.3f}"


def seed_groups(rows: list[Entry]) -> list[list[Entry]]:
    """Groups of ``rows`` (in their order) that are several training seeds of one recipe."""
    groups: dict[str, list[Entry]] = {}
    for entry in rows:
        key = recipe_key(entry)
        if key is not None:
            groups.setdefault(key, []).append(entry)
    return [members for members in groups.values() if len({m.card.get("seed") for m in members}) > 1]
