"""Sweep reports: from result files of one regime at several strengths to the paper's figure,
a markdown table and a regime label per strength.

Rows are grouped by strength (seeds averaged; min–max over seeds kept for the figure's bands and
the table's seed intervals: mean [min, max] over training seeds beside the mean over-images
standard error, :func:`pagbench.leaderboard.seeds.seed_interval`). Strength 0 is the standard model. Regime labels use the same rule as the leaderboard
(:mod:`pagbench_plugins.zoo.regime_labels`), applied to the seed means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pagbench.plugin import interval_text, seed_interval
from pagbench.plugin import PagbenchError

METRICS = (
    "accuracy",
    "score_cosine",
    "lpips_alignment",
    "on_manifold_fraction",
    "manifold_robustness_on",
    "manifold_robustness_off",
    "manifold_robustness_off_on_ratio",
)


@dataclass
class SweepRow:
    """One strength: per-metric mean over seeds, min/max over seeds and the mean over-images standard error."""

    strength: float
    seeds: list[int] = field(default_factory=list)
    mean: dict[str, float | None] = field(default_factory=dict)
    low: dict[str, float | None] = field(default_factory=dict)
    high: dict[str, float | None] = field(default_factory=dict)
    stderr: dict[str, float | None] = field(default_factory=dict)  #: mean over seeds of the over-images standard error
    models: list[str] = field(default_factory=list)
    cosine_se: float = 0.0
    label: str = ""
    #: metric → (σ grid, mean over seeds of the per-σ means), for runs made with ``--sigmas``
    sigma_curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def collect(results: list[dict], regime: str | None = None) -> tuple[str, str, list[SweepRow]]:
    """Group results by strength; returns (dataset, regime, rows sorted by strength).

    Results must share a dataset; strength-0 results of any regime count as the standard model.
    """
    if not results:
        raise PagbenchError("no result files to report on")
    datasets = {result["config"]["dataset"] for result in results}
    if len(datasets) > 1:
        raise PagbenchError(f"results mix datasets: {', '.join(sorted(datasets))}")
    regimes = {result["config"]["model_card"].get("regime") for result in results if (result["config"]["model_card"].get("strength") or 0) > 0}
    if regime is None:
        if len(regimes) != 1:
            raise PagbenchError(f"results mix regimes ({', '.join(sorted(map(str, regimes)))}); choose one with --regime")
        regime = regimes.pop()
    grouped: dict[float, list[dict]] = {}
    for result in results:
        card = result["config"]["model_card"]
        strength = float(card.get("strength") or 0.0)
        if strength > 0 and card.get("regime") != regime:
            continue
        grouped.setdefault(strength, []).append(result)
    rows = []
    for strength in sorted(grouped):
        row = SweepRow(strength=strength)
        for name in METRICS:
            interval = seed_interval([r["metrics"].get(name) for r in grouped[strength]])
            row.mean[name], row.low[name], row.high[name], row.stderr[name] = interval.mean, interval.low, interval.high, interval.stderr
        errors = [r["metrics"]["score_cosine"]["stderr"] or 0.0 for r in grouped[strength] if "score_cosine" in r["metrics"]]
        row.cosine_se = sum(errors) / len(errors) if errors else 0.0
        row.seeds = sorted(r["config"]["model_card"].get("seed") or 0 for r in grouped[strength])
        row.models = sorted(r["config"]["model"] for r in grouped[strength])
        row.sigma_curves = _sigma_curves(grouped[strength])
        rows.append(row)
    label_regimes(rows)
    return datasets.pop(), regime, rows


#: Metrics whose curves run over the score's σ (``--sigmas``): their ``metric_settings`` say ``sigmas``.
SIGMA_METRICS = ("score_cosine", "lpips_alignment")


def _sigma_curves(results: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Per metric, the σ curve averaged over the seeds' results (only when every seed has the same grid)."""
    curves = {}
    for name in SIGMA_METRICS:
        found = [r["curves"][name] for r in results
                 if name in (r.get("curves") or {}) and (r.get("metric_settings") or {}).get(name, {}).get("sigmas")]
        if not found or len(found) != len(results) or any(curve["x"] != found[0]["x"] for curve in found):
            continue
        means = []
        for column in zip(*(curve["mean"] for curve in found)):
            values = [value for value in column if value is not None]
            means.append(sum(values) / len(values) if values else None)
        curves[name] = (list(found[0]["x"]), means)
    return curves


def render_sigma_curves(rows: list[SweepRow]) -> str:
    """Tables of alignment across the score's σ (one per metric that has σ curves; "" when none)."""
    parts = []
    for name in SIGMA_METRICS:
        with_curve = [row for row in rows if name in row.sigma_curves]
        if not with_curve:
            continue
        grid = with_curve[0].sigma_curves[name][0]
        lines = ["", f"{name} across the score's σ ([0,1] pixel units; mean over seeds):", "",
                 "| strength | " + " | ".join(f"σ = {sigma:g}" for sigma in grid) + " |", "|---|" + "---|" * len(grid)]
        for row in with_curve:
            sigmas, means = row.sigma_curves[name]
            strength = "0 (standard)" if row.strength == 0 else f"{row.strength:g}"
            cells = [_cell(mean) for mean in means] if sigmas == grid else ["(another grid)"] * len(grid)
            lines.append(f"| {strength} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def label_regimes(rows: list[SweepRow]) -> None:
    """Set ``row.label`` by :func:`.regime_labels.label_points` (standard row: "standard")."""
    from .regime_labels import Point, label_points

    def point(row: SweepRow):
        if row.mean.get("accuracy") is None or row.mean.get("score_cosine") is None:
            return None
        return Point(row.strength, row.mean["accuracy"], row.mean["score_cosine"], row.cosine_se,
                     row.mean.get("manifold_robustness_off_on_ratio"), row.mean.get("manifold_robustness_on"))

    standard = next((row for row in rows if row.strength == 0), None)
    reference = point(standard) if standard is not None else None
    swept = [(row, point(row)) for row in rows if row.strength > 0]
    swept = [(row, p) for row, p in swept if p is not None]
    labels = label_points(reference, [p for _, p in swept]) if reference is not None else ["-"] * len(swept)
    for row in rows:
        row.label = "standard" if row is standard else "-"
    for (row, _), label in zip(swept, labels):
        row.label = label


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_markdown(dataset: str, regime: str, rows: list[SweepRow]) -> str:
    """A markdown table: one row per strength (seed means)."""
    header = (
        f"| {regime} strength | seeds | accuracy | score_cosine | lpips_alignment | on_manifold_fraction | "
        "on (ε) | off (ε) | off/on | regime |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in rows:
        strength = "0 (standard)" if row.strength == 0 else f"{row.strength:g}"
        lines.append(
            f"| {strength} | {len(row.models)} | {_cell(row.mean['accuracy'])} | {_cell(row.mean['score_cosine'])} | "
            f"{_cell(row.mean['lpips_alignment'])} | {_cell(row.mean['on_manifold_fraction'])} | "
            f"{_cell(row.mean['manifold_robustness_on'])} | {_cell(row.mean['manifold_robustness_off'])} | "
            f"{_cell(row.mean['manifold_robustness_off_on_ratio'])} | {row.label} |"
        )
    return f"### {regime} on {dataset}\n\n" + header + "\n".join(lines) + "\n" + render_seed_intervals(rows) + render_sigma_curves(rows)


#: The seed-interval table's columns: (header, metric).
INTERVAL_COLUMNS = (("accuracy", "accuracy"), ("score_cosine", "score_cosine"), ("lpips_alignment", "lpips_alignment"),
                    ("on_manifold_fraction", "on_manifold_fraction"), ("off/on", "manifold_robustness_off_on_ratio"))


def render_seed_intervals(rows: list[SweepRow]) -> str:
    """The across-seeds table (strengths trained with several seeds only; "" when none was):
    mean [min, max] over the training seeds ± the mean over-images standard error."""
    several = [row for row in rows if len(set(row.seeds)) > 1]
    if not several:
        return ""
    lines = ["", "Across training seeds: mean [min, max] over the seeds ± the mean over-images standard error.", "",
             "| strength | seeds | " + " | ".join(header for header, _ in INTERVAL_COLUMNS) + " |",
             "|---|---|" + "---|" * len(INTERVAL_COLUMNS)]
    for row in several:
        strength = "0 (standard)" if row.strength == 0 else f"{row.strength:g}"
        cells = [strength, ",".join(map(str, row.seeds))]
        for _, name in INTERVAL_COLUMNS:
            cells.append(_interval(row, name))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _interval(row: SweepRow, name: str) -> str:
    from pagbench.plugin import SeedInterval

    return interval_text(SeedInterval(row.mean.get(name), row.low.get(name), row.high.get(name), row.stderr.get(name),
                                      len(row.seeds) if row.mean.get(name) is not None else 0))


def plot(dataset: str, regime: str, rows: list[SweepRow], path: str | Path, headline_epsilon: float | None = None) -> Path:
    """The paper's layout: top, on- vs off-manifold sensitivity; bottom, accuracy and alignment;
    strength on a log axis (the standard model drawn at the left edge); min–max bands over seeds."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pagbench.plugin import write_atomic

    positive = [row.strength for row in rows if row.strength > 0]
    if not positive:
        raise PagbenchError("a sweep figure needs at least one positive strength")
    left = min(positive) / 3.0
    xs = [row.strength if row.strength > 0 else left for row in rows]
    with_sigma = [row for row in rows if "score_cosine" in row.sigma_curves]
    if with_sigma:  # a third panel: score cosine across the score's σ, one line per strength
        figure = plt.figure(figsize=(6.5, 9.5))
        top = figure.add_subplot(3, 1, 1)
        bottom = figure.add_subplot(3, 1, 2, sharex=top)
        sigma_axis = figure.add_subplot(3, 1, 3)
    else:
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6.5), sharex=True)

    def series(axis, name, label, colour, style="-"):
        points = [(x, row.mean[name], row.low[name], row.high[name]) for x, row in zip(xs, rows) if row.mean.get(name) is not None]
        if not points:
            return
        x, mean, low, high = zip(*points)
        axis.plot(x, mean, style, color=colour, marker="o", label=label)
        axis.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)

    epsilon = f" (ε = {headline_epsilon:g})" if headline_epsilon else ""
    series(top, "manifold_robustness_off", "off-manifold", "tab:red")
    series(top, "manifold_robustness_on", "on-manifold", "tab:blue")
    top.set_ylabel("softmax L1 change" + epsilon)
    top.legend(loc="best")
    top.set_title(f"{regime} on {dataset}")
    series(bottom, "accuracy", "accuracy", "black", "--")
    series(bottom, "score_cosine", "score cosine", "tab:green")
    series(bottom, "lpips_alignment", "1 − LPIPS", "tab:purple")
    series(bottom, "on_manifold_fraction", "on-manifold fraction", "tab:orange", ":")
    bottom.set_ylabel("accuracy / alignment")
    bottom.set_xscale("log")
    bottom.set_xlabel(f"{regime} strength (standard model at the left edge)")
    bottom.legend(loc="best", fontsize="small")
    for axis in (top, bottom):
        for x, row in zip(xs, rows):
            if row.label == "Bayes-aligned":
                axis.axvspan(x / 1.25, x * 1.25, color="gold", alpha=0.15, linewidth=0)
        axis.axvline(left * 1.7, color="grey", linewidth=0.5)
    if with_sigma:
        colours = plt.get_cmap("viridis")
        for index, row in enumerate(with_sigma):
            sigmas, means = row.sigma_curves["score_cosine"]
            points = [(sigma, mean) for sigma, mean in zip(sigmas, means) if mean is not None]
            if points:
                label = "standard" if row.strength == 0 else f"{row.strength:g}"
                sigma_axis.plot(*zip(*points), marker="o", color=colours(index / max(len(with_sigma) - 1, 1)), label=label)
        sigma_axis.set_xlabel("σ of the score ([0,1] pixel units)")
        sigma_axis.set_ylabel("score cosine")
        sigma_axis.legend(title=f"{regime} strength", fontsize="small", loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return write_atomic(path, lambda stream: stream.write(buffer.getvalue()))
