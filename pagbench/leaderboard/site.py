"""The static web leaderboard: ``<dir>/site/index.html`` and one page per entry
(``<dir>/site/<dataset>/<entry>.html``), rendered from the same entries and column declarations
as the markdown board (:mod:`pagbench.leaderboard.render`).

The site works from a file:// URL and offline: its CSS and JS are package data
(``pagbench/leaderboard/site_static/``) copied next to the pages; the pages carry a Content-Security-Policy
that allows no inline script or style, so everything an entry says is data. Every text field is
escaped with :func:`html.escape` (``quote=True``) in text and attributes, wrapped in ``<bdi>``
so a right-to-left override cannot reorder the rest of the row, and links are emitted only for
http(s) URLs (anything else is shown as text). Sorting and filtering read ``data-*`` attributes.
The ε and σ curves are inline SVG drawn here from the entries' numbers. Galleries are linked
relatively (``../galleries/...``), not copied.

Output is deterministic (no timestamps, stable ordering) so ``pagbench leaderboard build
--check`` compares byte for byte.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pagbench.leaderboard.store import DEFAULT_ROOT, Entry, configuration, load_entries, safe_name

#: The site's folder inside the leaderboard folder.
SITE = "site"
#: The static assets (package data in ``pagbench/leaderboard/site_static/``), copied to ``site/``.
ASSETS = ("site.css", "site.js")
#: The page's Content-Security-Policy: no inline script or style, images only from the site's origin.
CSP = "default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'"
#: Longest text shown in a table cell (the whole text stays in the cell's title and on the card page).
MAX_CELL_CHARS = 160
#: Longest page file name (without ``.html``); longer entry names are cut and get a hash.
MAX_FILE_STEM = 120
#: Suffixes of the files the site generates (only these are removed when no entry produces them).
GENERATED_SUFFIXES = (".html", ".css", ".js")

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: Readable names of the metric settings that hold a curve's x grid (others are shown by key).
_AXIS_NAMES = {"sigmas": "σ of the score ([0,1] pixel units)", "epsilons": "ε, perturbation norm ([0,1] pixel units)"}
#: Configuration fields shown under the provenance: what pagbench did with the model and the images.
_RUN_FIELDS = ("weights_sha256", "model_plugin", "model_options", "image_selection", "device", "dtype", "precision", "attribution",
               "attribution_options", "score_provider_fingerprint", "manifold_provider_fingerprint", "provider_files",
               "dataset_fingerprint", "torch_version", "trust_required")
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


# ---------------------------------------------------------------------------------- escaping
def clean_text(value) -> str:
    """``str(value)`` that can be written as UTF-8 HTML: lone surrogates and C0 controls (but tab,
    newline and carriage return) become U+FFFD."""
    return _CONTROL.sub("\ufffd", str(value))


def esc(value) -> str:
    """``value`` as HTML text or attribute value (``html.escape`` with ``quote=True``)."""
    return html.escape(clean_text(value), quote=True)


def text(value, limit: int | None = None) -> str:
    """``value`` escaped inside ``<bdi>`` (bidirectional isolation); longer than ``limit``
    characters it is cut, with the whole text in the element's title."""
    full = clean_text(value)
    if limit is not None and len(full) > limit:
        return f'<bdi title="{esc(full)}">{esc(full[:limit])}…</bdi>'
    return f"<bdi>{esc(full)}</bdi>"


def safe_url(value) -> str | None:
    """``value`` when the markdown board would link it too (:data:`pagbench.leaderboard.render._SAFE_URL`: an
    absolute http(s) URL without whitespace, quotes, brackets or backslashes) and it has a host
    and at most 2048 characters, else None (``javascript:``, ``data:``, relative URLs)."""
    from pagbench.leaderboard.render import _SAFE_URL

    if not isinstance(value, str) or len(value) > 2048 or not _SAFE_URL.match(value):
        return None
    try:
        return value if urlsplit(value).hostname else None
    except ValueError:
        return None


def link(url, label=None, limit: int | None = MAX_CELL_CHARS) -> str:
    """An anchor to ``url`` when it is http(s) (:func:`safe_url`), else ``url`` as plain text."""
    label = url if label is None else label
    safe = safe_url(url)
    if safe is None:
        return text(label, limit)
    return f'<a href="{esc(safe)}" rel="noopener noreferrer nofollow">{text(label, limit)}</a>'


def value_html(value, limit: int | None = MAX_CELL_CHARS) -> str:
    """A JSON value of an entry as HTML: http(s) strings linked, numbers in ``%g``, lists and
    objects nested (objects as a definition list)."""
    if isinstance(value, dict):
        if not value:
            return "-"
        items = "".join(f"<dt>{text(key, limit)}</dt><dd>{value_html(item, limit)}</dd>" for key, item in value.items())
        return f"<dl>{items}</dl>"
    if isinstance(value, list):
        return ", ".join(value_html(item, limit) for item in value) if value else "-"
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, float):
        return esc(f"{value:g}")
    if isinstance(value, int):
        return esc(value)
    if safe_url(value):
        return link(value, limit=limit)
    return text(value, limit)


# ------------------------------------------------------------------------------------- paths
def dataset_folder(dataset) -> str:
    """The dataset's folder name in the site (file-safe; names that are not get a short hash)."""
    name = safe_name(clean_text(dataset)).lstrip(".") or "dataset"
    if name != dataset:
        name += "--" + hashlib.sha256(clean_text(dataset).encode()).hexdigest()[:6]
    return name


def page_path(entry: Entry) -> str:
    """The entry's page relative to the site folder: ``<dataset>/<entry>.html``."""
    stem = entry.stem
    if len(stem) > MAX_FILE_STEM:
        stem = stem[:MAX_FILE_STEM - 14] + "--" + hashlib.sha256(stem.encode()).hexdigest()[:12]
    return f"{dataset_folder(entry.dataset)}/{stem}.html"


def _gallery(entry: Entry, root: Path) -> str | None:
    """The entry's gallery PNG relative to the leaderboard folder, when it exists."""
    from pagbench.leaderboard.render import gallery_path

    if dataset_folder(entry.dataset) != entry.dataset:
        return None
    relative = gallery_path(entry)
    try:
        return relative if (root / relative).is_file() else None
    except OSError:  # e.g. a name too long for the file system: there is no such gallery
        return None


# -------------------------------------------------------------------------------------- page
def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(CSP)}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta name=\"referrer\" content=\"no-referrer\">\n"
            f"<title>{esc(title)}</title>\n<link rel=\"stylesheet\" href=\"{up}site.css\">\n"
            f"<script src=\"{up}site.js\" defer></script>\n</head>\n<body>\n{body}\n"
            "<footer>Generated by <code>pagbench leaderboard build</code> from the entries; do not edit by hand. "
            "CI runs <code>pagbench leaderboard build --check</code>.</footer>\n</body>\n</html>\n")


def _directions(columns, rows: list[Entry]) -> dict[str, bool | None]:
    """output → higher is better (True/False) or None, from the rows' records, else the registry."""
    from pagbench.extensions import registry

    found = {}
    for metric in registry.metrics():
        found.update(metric.outputs)
    for column, _ in columns:
        for entry in rows:
            record = entry.result.get("metrics", {}).get(column.output)
            if isinstance(record, dict) and record.get("higher_is_better") in (True, False):
                found[column.output] = record["higher_is_better"]
                break
    return found


def _sort_value(value) -> str:
    return "" if value is None else f"{float(value):.17g}"


def _plain(cell) -> str:
    """A plugin's markdown cell as text (emphasis and code marks dropped)."""
    return re.sub(r"[*`]", "", clean_text(cell))


class _Notes:
    def __init__(self):
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        number = self.reasons.index(reason) + 1
        return f'n/a<sup><a href="#note-{number}" title="{esc(reason)}">{number}</a></sup>'


def _metric_cell(entry: Entry, column, metric: str, notes: _Notes) -> str:
    from pagbench.leaderboard.render import number

    record = entry.metric(column.output)
    if record is None:
        unavailable = column.unavailable_as or metric
        reason = (entry.result.get("unavailable") or {}).get(unavailable)
        if reason is None:
            reason = (f"{metric} was not computed in this run" if metric not in entry.result.get("metrics", {})
                      else f"{metric} had no valid images")
        return f'<td class="num" data-sort="">{notes.mark(clean_text(reason))}</td>'
    shown = esc(number(record["value"]))
    if column.with_stderr:
        stderr = float(record.get("stderr") or 0.0)
        shown += f' <span class="se">± {stderr:.3f}</span>'
    return f'<td class="num" data-sort="{_sort_value(record["value"])}">{shown}</td>'


def _regime(entry: Entry) -> str:
    from pagbench.leaderboard.render import _short

    card = entry.card
    regime = card.get("regime") or "-"
    strength = card.get("strength")
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or float(strength) == 0:
        return clean_text(regime)
    return clean_text(f"{regime} {_short(float(strength))}")


def _sanity_html(entry: Entry) -> str:
    from pagbench.leaderboard.render import FLAG_MARK, raised_flag_texts

    shown = raised_flag_texts(entry)
    if shown is None:
        return "unchecked"
    if not shown:
        return "ok"
    return f'<span class="flag">{FLAG_MARK}</span> ' + text(", ".join(shown), MAX_CELL_CHARS)


def _differences(config: dict, common: dict) -> str:
    from pagbench.leaderboard.render import _short

    changed = [f"{name}={_short(config[name])}" for name in config if config[name] != common.get(name)]
    return text(", ".join(changed), MAX_CELL_CHARS) if changed else "-"


def _config_list(config: dict) -> str:
    return "<dl class=\"config\">" + "".join(f"<dt>{esc(name)}</dt><dd>{value_html(value)}</dd>"
                                             for name, value in config.items()) + "</dl>"


def sanity_legend_html() -> str:
    """The sanity flags' legend: one item per flag of :data:`pagbench.evaluation.sanity.FLAGS`."""
    from pagbench.evaluation.sanity import FLAGS

    items = "".join(f"<li><code>{esc(item.name)}</code> (raised when {'&gt;' if item.above else '&lt;'} "
                    f"{esc(f'{item.threshold:g}')}): {esc(item.explanation)}</li>" for item in FLAGS)
    return ("<details class=\"legend\"><summary>Sanity flags</summary><p>Checked on the first batch of every run; "
            "a raised flag (⚠) means the row's numbers may not mean what they seem.</p>"
            f"<ul>{items}</ul></details>")


def _seed_table(rows: list[Entry], shown: list) -> str:
    from pagbench.leaderboard.seeds import interval_text, seed_groups, seed_interval

    groups = seed_groups(rows)
    if not groups:
        return ""
    head = "".join(f"<th>{esc(column.header)}</th>" for column, _ in shown)
    body = []
    for members in groups:
        seeds = ",".join(str(seed) for seed in sorted({int(m.card.get("seed")) for m in members}))
        cells = "".join(f'<td class="num">{esc(interval_text(seed_interval([m.metric(column.output) for m in members])))}</td>'
                        for column, _ in shown)
        models = ", ".join(m.model for m in members)
        body.append(f"<tr><td>{text(_regime(members[0]))}</td><td>{esc(seeds)}</td><td>{text(models, MAX_CELL_CHARS)}</td>{cells}</tr>")
    return ("<h3>Across training seeds</h3><p>Rows that differ only in the model card's seed; each cell is the mean "
            "[min, max] over the seeds ± the mean over-images standard error.</p>"
            f"<table class=\"seeds\"><thead><tr><th>regime, strength</th><th>seeds</th><th>models</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _options(values) -> str:
    return "".join(f'<option value="{esc(value)}">{esc(value)}</option>' for value in sorted(set(values)))


def _dataset_section(dataset: str, rows: list[Entry], index: int, root: Path, extra, extra_cells) -> str:
    from pagbench.leaderboard.render import (FLAG_MARK, baselines, common_configuration, metric_columns, overview_path,
                                             raised_flags)

    notes = _Notes()
    common = common_configuration(rows)
    shown = metric_columns(rows)
    directions = _directions(shown, rows)
    section = f"ds-{index}"
    parts = [f'<section class="dataset" id="{section}"><h2>{text(dataset)}</h2>']
    parts.append(f"<details class=\"common\" open><summary>Common configuration (shared by most rows)</summary>{_config_list(common)}")
    facts = [f"{esc(label)}: {esc(', '.join(values))}." for label, values in baselines(rows)]
    fingerprints = sorted({clean_text(entry.config.get("dataset_fingerprint") or "unknown") for entry in rows})
    if len(fingerprints) == 1:
        facts.append(f"Dataset fingerprint <code>{esc(fingerprints[0])}</code>.")
    else:
        facts.append(f"<strong>Warning: rows come from {len(fingerprints)} versions of this dataset and are not comparable.</strong>")
    if dataset_folder(dataset) == dataset and (root / overview_path(dataset)).is_file():
        facts.append(f'All models side by side: <a href="../{esc(overview_path(dataset))}">gradient gallery</a>.')
    parts.append("<p>" + " ".join(facts) + "</p></details>")
    regimes = [clean_text(entry.card.get("regime") or "-") for entry in rows]
    architectures = [clean_text(entry.card.get("architecture") or "-") for entry in rows]
    parts.append(
        f'<form class="filters" data-table="{section}-table">'
        f'<label>regime <select data-filter="regime"><option value="">all</option>{_options(regimes)}</select></label> '
        f'<label>architecture <select data-filter="architecture"><option value="">all</option>{_options(architectures)}</select></label> '
        f'<label>text <input type="search" data-filter="text" placeholder="model, regime, description…"></label> '
        f'<output data-count>{len(rows)} of {len(rows)} rows</output></form>')
    headers = ['<th data-sortable data-better="lower" aria-sort="ascending"><button type="button">#</button></th>',
               "<th>model</th>", "<th>regime, strength</th>"]
    for column, _ in shown:
        better = {True: "higher", False: "lower"}.get(directions.get(column.output), "higher")
        headers.append(f'<th data-sortable data-better="{better}" data-output="{esc(column.output)}">'
                       f'<button type="button">{esc(column.header)}</button></th>')
    headers.append("<th>sanity</th>")
    headers += [f"<th>{esc(column.name)}</th>" for column in extra]
    headers += ['<th data-sortable data-better="higher"><button type="button">images</button></th>',
                "<th>pagbench</th>", "<th>config</th>", "<th>gallery</th>"]
    body = []
    for rank, entry in enumerate(rows, start=1):
        card = entry.card
        regime, architecture = clean_text(card.get("regime") or "-"), clean_text(card.get("architecture") or "-")
        search = " ".join(clean_text(part) for part in (entry.model, _regime(entry), architecture, card.get("description") or "",
                                                       card.get("source") or "")).lower()
        mark = f'<span class="flag">{FLAG_MARK}</span> ' if raised_flags(entry) else ""
        gallery = _gallery(entry, root)
        thumb = (f'<a href="../{esc(gallery)}"><img class="thumb" src="../{esc(gallery)}" alt="gallery" loading="lazy"></a>'
                 if gallery else "-")
        images = entry.config.get("num_images")
        cells = [f'<td class="num" data-sort="{rank}">{rank}</td>',
                 f'<td class="model">{mark}<a href="{esc(page_path(entry))}">{text(entry.model, MAX_CELL_CHARS)}</a></td>',
                 f"<td>{text(_regime(entry), MAX_CELL_CHARS)}</td>",
                 *(_metric_cell(entry, column, metric, notes) for column, metric in shown),
                 f"<td>{_sanity_html(entry)}</td>",
                 *(f"<td>{text(_plain(extra_cells[column.name][entry.path]), MAX_CELL_CHARS)}</td>" for column in extra),
                 f'<td class="num" data-sort="{_sort_value(images) if isinstance(images, (int, float)) else ""}">{esc(images)}</td>',
                 f"<td>{text(entry.result.get('pagbench_version', '-'), 40)}</td>",
                 f"<td>{_differences(configuration(entry), common)}</td>",
                 f"<td>{thumb}</td>"]
        body.append(f'<tr data-rank="{rank}" data-regime="{esc(regime)}" data-architecture="{esc(architecture)}" '
                    f'data-search="{esc(search)}">' + "".join(cells) + "</tr>")
    parts.append(f'<div class="scroll"><table class="board" id="{section}-table"><thead><tr>{"".join(headers)}</tr></thead>'
                 f'<tbody>{"".join(body)}</tbody></table></div>')
    if notes.reasons:
        parts.append("<ol class=\"notes\">" + "".join(f'<li id="note-{number}">{text(reason)}</li>'
                                                      for number, reason in enumerate(notes.reasons, start=1)) + "</ol>")
    parts.append(_seed_table(rows, shown))
    parts.append("</section>")
    return "".join(parts)


def render_index(entries: list[Entry], root: str | Path = DEFAULT_ROOT) -> str:
    """``site/index.html``: one sortable, filterable table per dataset, in the board's rank order."""
    from pagbench.leaderboard.render import entry_columns, primary_metric, sort_key

    root = Path(root)
    extra = entry_columns()
    results = [entry.result for entry in entries]
    extra_cells = {column.name: dict(zip((entry.path for entry in entries), column.cells(results))) for column in extra}
    datasets = sorted({entry.dataset for entry in entries})
    nav = "".join(f'<a href="#ds-{index}">{text(dataset)}</a> ' for index, dataset in enumerate(datasets))
    legend = "".join(f"<li><strong>{esc(column.name)}</strong>: {esc(_plain(column.description))}</li>" for column in extra)
    rules = "".join(f"<p>{esc(_plain(column.rule))}</p>" for column in extra if column.rule)
    body = [f"<header><h1>pagbench leaderboard</h1><p>Which image classifiers have perceptually-aligned gradients? "
            f"Every row is one model evaluated in one configuration by <code>pagbench evaluate</code>, rendered from the "
            f"validated entries (the same as <a href=\"../README.md\">the markdown board</a>). Rows are ranked by "
            f"<code>{esc(primary_metric())}</code>; click a column header to sort by it (again to reverse), and filter "
            f"by regime, architecture or text. Values are means over images ± standard error.</p>"
            f"<nav>{nav}</nav></header>"]
    body.append("<details class=\"legend\"><summary>Columns</summary><ul>"
                "<li><strong>#</strong>: the board's rank. <strong>model</strong>: links to the entry's page (provenance, "
                "curves, gallery, the command that reproduces it).</li>"
                "<li><strong>config</strong>: settings in which the row differs from the common configuration.</li>"
                "<li><strong>sanity</strong>: raised sanity flags (⚠), <code>ok</code> when none.</li>"
                f"{legend}</ul>{rules}</details>")
    body.append(sanity_legend_html())
    if not datasets:
        body.append("<p>No entries yet.</p>")
    for index, dataset in enumerate(datasets):
        rows = sorted((entry for entry in entries if entry.dataset == dataset), key=sort_key)
        body.append(_dataset_section(dataset, rows, index, root, extra, extra_cells))
    return _page("pagbench leaderboard", "\n".join(body), depth=0)


# ------------------------------------------------------------------------------------- plots
def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _tick(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True)
class Series:
    """One curve: ``label``, x values and mean ± stderr per x (None where missing)."""

    label: str
    x: tuple
    mean: tuple
    stderr: tuple


def svg_plot(title: str, series: list[Series], x_label: str, y_label: str, width: int = 480, height: int = 300) -> str:
    """An inline SVG line plot of ``series`` (mean as a polyline with a dot per point, ± stderr as
    error bars); x on a log scale when every x is positive and they span more than a factor 20."""
    left, right, top, bottom = 62, 16, 28, 48
    xs = [float(x) for item in series for x, m in zip(item.x, item.mean) if m is not None and _finite(x)]
    ys = [float(m) + sign * float(s or 0.0) for item in series for x, m, s in zip(item.x, item.mean, item.stderr)
          if m is not None and _finite(x) and _finite(m) for sign in (-1, 1)]
    ys = [y for y in ys if _finite(y)]
    if not xs or not ys:
        return f'<p class="noplot">{text(title)}: no finite points.</p>'
    log = min(xs) > 0 and max(xs) / min(xs) > 20
    scale = (lambda v: math.log10(v)) if log else (lambda v: v)
    x_low, x_high = scale(min(xs)), scale(max(xs))
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = min(ys + [0.0]), max(ys)
    if y_high == y_low:
        y_high = y_low + 1
    pad = (y_high - y_low) * 0.05
    y_low, y_high = y_low - pad if y_low < 0 else y_low, y_high + pad

    def px(value):
        return left + (scale(float(value)) - x_low) / (x_high - x_low) * (width - left - right)

    def py(value):
        return top + (y_high - float(value)) / (y_high - y_low) * (height - top - bottom)

    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
             f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13">{esc(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>']
    for value in sorted(set(xs)):
        parts.append(f'<line x1="{_fmt(px(value))}" y1="{height - bottom}" x2="{_fmt(px(value))}" y2="{height - bottom + 4}" stroke="#333"/>')
    for value in (sorted(set(xs))[0], sorted(set(xs))[-1]) if len(set(xs)) > 1 else (xs[0],):
        parts.append(f'<text x="{_fmt(px(value))}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{esc(_tick(value))}</text>')
    for fraction in (0.0, 0.5, 1.0):
        value = y_low + fraction * (y_high - y_low)
        parts.append(f'<text x="{left - 6}" y="{_fmt(py(value) + 4)}" text-anchor="end" font-size="11">{esc(_tick(value))}</text>')
        parts.append(f'<line x1="{left}" y1="{_fmt(py(value))}" x2="{width - right}" y2="{_fmt(py(value))}" stroke="#ddd"/>')
    parts.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 10}" text-anchor="middle" font-size="12">'
                 f'{esc(x_label)}{" (log scale)" if log else ""}</text>')
    parts.append(f'<text x="14" y="{(top + height - bottom) / 2:.1f}" text-anchor="middle" font-size="12" '
                 f'transform="rotate(-90 14 {(top + height - bottom) / 2:.1f})">{esc(y_label)}</text>')
    for number, item in enumerate(series):
        colour = _COLOURS[number % len(_COLOURS)]
        points = [(float(x), float(m), float(s or 0.0)) for x, m, s in zip(item.x, item.mean, item.stderr)
                  if m is not None and _finite(x) and _finite(m) and _finite(s or 0.0)]
        coordinates = " ".join(f"{_fmt(px(x))},{_fmt(py(m))}" for x, m, _ in points)
        parts.append(f'<polyline class="curve" fill="none" stroke="{colour}" stroke-width="2" points="{coordinates}"/>')
        for x, m, s in points:
            parts.append(f'<line x1="{_fmt(px(x))}" y1="{_fmt(py(m - s))}" x2="{_fmt(px(x))}" y2="{_fmt(py(m + s))}" stroke="{colour}"/>')
            parts.append(f'<circle cx="{_fmt(px(x))}" cy="{_fmt(py(m))}" r="3" fill="{colour}"/>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 14 + 14 * number}" text-anchor="end" font-size="11" '
                     f'fill="{colour}">{esc(item.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def curve_plots(entry: Entry) -> list[str]:
    """One SVG per metric with curves in the entry (``curves``), its outputs as series; the x
    axis is named by the metric setting that holds the curve's grid (e.g. ``epsilons``, ``sigmas``)."""
    from pagbench.extensions import registry

    names = sorted((metric.name for metric in registry.metrics()), key=len, reverse=True)
    curves = entry.result.get("curves") or {}
    settings = entry.result.get("metric_settings") or {}
    groups: dict[str, list] = {}
    for name in sorted(curves):
        curve = curves[name]
        if not isinstance(curve, dict) or not all(isinstance(curve.get(k), list) for k in ("x", "mean")):
            continue
        owner = next((metric for metric in names if name == metric or name.startswith(metric + "_")), name)
        groups.setdefault(owner, []).append((name, curve))
    plots = []
    for owner, members in sorted(groups.items()):
        own_settings = settings.get(owner) if isinstance(settings.get(owner), dict) else {}
        axis = next((key for key, value in sorted(own_settings.items()) if value == members[0][1]["x"]), "x")
        series = [Series(label=(name[len(owner) + 1:] if name.startswith(owner + "_") else name) or name,
                         x=tuple(curve["x"]), mean=tuple(curve["mean"]),
                         stderr=tuple(curve.get("stderr") or [0.0] * len(curve["x"])))
                  for name, curve in members]
        plots.append(svg_plot(f"{owner} over {axis}", series, _AXIS_NAMES.get(axis, axis), owner))
    return plots


# --------------------------------------------------------------------------------- entry page
def reproduce_command(entry: Entry) -> str:
    """The command that re-evaluates the entry's row in its stored configuration and compares
    every metric (``pagbench leaderboard verify <dataset>/<entry>``, run where ``--dir`` finds the
    leaderboard folder), with the trust flags the entry needs."""
    import shlex

    from pagbench.files.trust import required_trust

    command = ["pagbench", "leaderboard", "verify", f"{entry.path.parent.name}/{entry.path.stem}"]
    command += sorted(required_trust(entry.config))
    return " ".join(shlex.quote(clean_text(part)) for part in command)


def render_entry_page(entry: Entry, root: str | Path = DEFAULT_ROOT, rank: int | None = None) -> str:
    """``site/<dataset>/<entry>.html``: model card and provenance, all metrics, sanity flags, the
    configuration, the curves as inline SVG, the gallery and the command that reproduces the row."""
    from pagbench.leaderboard.render import number, recorded_provenance

    root = Path(root)
    card = entry.card
    body = [f'<p><a href="../index.html">← leaderboard</a></p><h1 class="long">{text(entry.model)}</h1>'
            f"<p>on {text(entry.dataset)}{'' if rank is None else f', rank {rank}'}; entry <code>{esc(entry.stem)}</code>, "
            f"model plugin {text(entry.config.get('model_plugin', '-'))}, pagbench {text(entry.result.get('pagbench_version', '-'))}.</p>"]
    body.append("<h2>Model card</h2><table class=\"card\"><tbody>")
    for name in ("architecture", "dataset", "regime", "strength", "source", "licence", "description", "seed"):
        value = card.get(name)
        body.append(f"<tr><th>{esc(name)}</th><td>{'-' if value is None or value == '' else value_html(value, None)}</td></tr>")
    body.append("</tbody></table>")
    provenance = card.get("provenance") or {}
    for source, record, names in recorded_provenance(card):
        rows = "".join(f"<tr><th>{esc(name)}</th><td>{value_html(record[name], None)}</td></tr>"
                       for name in names if record.get(name) not in (None, ""))
        body.append(f"<h3>Recorded by {text(source)}</h3><table class=\"card\"><tbody>{rows}</tbody></table>")
    digest = entry.config.get("weights_sha256")
    body.append("<h2>Provenance</h2><p>Weights digest (SHA-256 of the evaluated model's weights): "
                + (f"<code>{esc(digest)}</code>" if digest else "not recorded (the entry predates it)") + ".</p>"
                "<p>What the model's plugin recorded about the weights and what pagbench does to "
                "the input (normalisation, resize, crop, clamp):</p>"
                + (value_html(provenance, None) if provenance else "<p>Nothing recorded by the plugin.</p>"))
    recorded_run = {name: entry.config[name] for name in _RUN_FIELDS if entry.config.get(name) not in (None, "", {}, [])}
    if recorded_run:
        body.append("<h3>How pagbench ran it</h3>" + _config_list(recorded_run))
    body.append("<h2>Metrics</h2><table class=\"metrics\"><thead><tr><th>output</th><th>value</th><th>± se</th><th>n</th>"
                "<th>excluded</th><th>better</th></tr></thead><tbody>")
    metrics = entry.result.get("metrics") or {}
    for name in sorted(metrics):
        record = metrics[name] if isinstance(metrics[name], dict) else {}
        value = record.get("value")
        better = {True: "higher", False: "lower"}.get(record.get("higher_is_better"), "-")
        stderr = record.get("stderr")
        body.append(f"<tr><td>{text(name)}</td><td class=\"num\">{esc(number(value, 4)) if _finite(value) else 'n/a'}</td>"
                    f"<td class=\"num\">{esc(f'{float(stderr):.4f}') if _finite(stderr) else '-'}</td>"
                    f"<td class=\"num\">{esc(record.get('n', '-'))}</td><td class=\"num\">{esc(record.get('excluded', '-'))}</td>"
                    f"<td>{better}</td></tr>")
    body.append("</tbody></table>")
    unavailable = entry.result.get("unavailable") or {}
    if unavailable:
        body.append("<h3>Unavailable</h3><ul>" + "".join(f"<li>{text(name)}: {text(reason)}</li>"
                                                         for name, reason in sorted(unavailable.items())) + "</ul>")
    body.append("<h2>Curves</h2>")
    plots = curve_plots(entry)
    body.append("<div class=\"plots\">" + "".join(plots) + "</div>" if plots else "<p>The entry has no curves.</p>")
    body.append("<h2>Sanity flags</h2>")
    sanity = entry.result.get("sanity")
    if isinstance(sanity, dict) and isinstance(sanity.get("flags"), dict):
        body.append("<table class=\"metrics\"><thead><tr><th>flag</th><th>value</th><th>threshold</th><th>raised</th>"
                    "<th>detail</th></tr></thead><tbody>")
        for name, record in sorted(sanity["flags"].items()):
            record = record if isinstance(record, dict) else {}
            raised = "⚠ yes" if record.get("raised") else "no"
            body.append(f"<tr><td>{text(name)}</td><td class=\"num\">{value_html(record.get('value'))}</td>"
                        f"<td class=\"num\">{value_html(record.get('threshold'))}</td><td>{raised}</td>"
                        f"<td>{value_html(record.get('detail'))}</td></tr>")
        body.append("</tbody></table>")
    else:
        body.append("<p>Unchecked (the entry predates the sanity checks).</p>")
    body.append(sanity_legend_html())
    body.append(f"<h2>Configuration</h2>{_config_list(configuration(entry))}")
    body.append("<details><summary>Everything the run recorded (config)</summary>" + value_html(entry.config, None) + "</details>")
    gallery = _gallery(entry, root)
    body.append("<h2>Gradient gallery</h2>")
    body.append(f'<p><img class="gallery" src="../../{esc(gallery)}" alt="gradient gallery: input, the model\'s input gradient, the score"></p>'
                if gallery else "<p>No gallery drawn (<code>pagbench leaderboard gallery</code> draws it).</p>")
    body.append("<h2>Reproduce</h2><p>Re-evaluates the row in its stored configuration and compares every metric "
                "(from the folder that holds the leaderboard; <code>--dir</code> names another leaderboard folder, "
                "<code>--num-images N</code> makes a quicker check):</p>"
                f"<pre><code>{esc(reproduce_command(entry))}</code></pre>")
    return _page(f"{clean_text(entry.model)[:200]} on {clean_text(entry.dataset)[:100]} · pagbench leaderboard", "\n".join(body), depth=1)


# -------------------------------------------------------------------------------------- build
def asset_text(name: str) -> str:
    """A static asset's text (package data in ``pagbench/leaderboard/site_static/``)."""
    from importlib.resources import files

    return files("pagbench.leaderboard").joinpath("site_static", name).read_text(encoding="utf-8")


def render_site(entries: list[Entry], root: str | Path = DEFAULT_ROOT) -> dict[str, bytes]:
    """Every site file, path relative to the leaderboard folder → bytes: ``site/index.html``,
    the assets and ``site/<dataset>/<entry>.html``. ``root`` is consulted only for which gallery
    images exist. Raises on an entry it cannot render; writes nothing."""
    from pagbench.leaderboard.render import sort_key

    files = {f"{SITE}/index.html": render_index(entries, root).encode("utf-8")}
    for name in ASSETS:
        files[f"{SITE}/{name}"] = asset_text(name).encode("utf-8")
    for dataset in sorted({entry.dataset for entry in entries}):
        rows = sorted((entry for entry in entries if entry.dataset == dataset), key=sort_key)
        for rank, entry in enumerate(rows, start=1):
            files[f"{SITE}/{page_path(entry)}"] = render_entry_page(entry, root, rank).encode("utf-8")
    return files


@dataclass
class SiteReport:
    """Site files that differ from disk (``stale``) and generated-looking files no entry produces
    (``removed``), relative to the leaderboard folder."""

    stale: list[str]
    removed: list[str]


def _existing(root: Path) -> set[str]:
    folder = root / SITE
    if not folder.is_dir():
        return set()
    return {path.relative_to(root).as_posix() for path in folder.rglob("*")
            if path.is_file() and path.suffix in GENERATED_SUFFIXES}


def write_site(files: dict[str, bytes], root: str | Path, check: bool = False) -> SiteReport:
    """Compare ``files`` (from :func:`render_site`) with ``root``; unless ``check``, write the
    changed ones atomically and remove generated files no entry produces any more."""
    from pagbench.files.paths import write_atomic

    root = Path(root)
    stale = []
    for relative, data in files.items():
        path = root / relative
        try:
            current = path.read_bytes() if path.is_file() else None
        except OSError:
            current = None
        if current != data:
            stale.append(relative)
    removed = sorted(_existing(root) - set(files))
    if not check:
        for relative in stale:
            write_atomic(root / relative, lambda stream, data=files[relative]: stream.write(data))
        for relative in removed:
            (root / relative).unlink()
    return SiteReport(stale, removed)


def build_site(root: str | Path = DEFAULT_ROOT, check: bool = False) -> SiteReport:
    """Render the site from ``root``'s entries and write what changed (or, ``check``, only report it)."""
    from pagbench.leaderboard.render import check_board

    root = Path(root)
    check_board(root)
    return write_site(render_site(load_entries(root), root), root, check=check)
