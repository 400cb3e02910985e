"""Gradient galleries (the paper's Figure 1, for any models): see whether gradients look like images.

One row per image: the input (clipped to [0,1] for display), each model's input gradient and
the score, side by side. Every gradient and the score are max-normalised,
ĝ = g / max|g| per image, so all panels share one colour scale:

* ``rgb`` (default for 3-channel images): the RGB image (ĝ + 1)/2 — the image a perceptual metric would compare;
  mid-grey is 0.
* ``sum``: the per-pixel sum over channels, divided by its own max |·|, on a diverging colour map
  (blue −1, white 0, red +1). The only choice for 1-channel images.

Under each gradient: its cosine with the score and the model's prediction. matplotlib is imported
lazily and drawn on an Agg canvas (no pyplot, no global backend change); files are written atomically.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pagbench.errors import PagbenchError
from pagbench.leaderboard.render import common_configuration, config_id, gallery_path, overview_path, sort_key
from pagbench.leaderboard.store import DEFAULT_ROOT, GALLERIES, Entry, configuration, load_entries

DISPLAYS = ("auto", "rgb", "sum")
#: Inches per panel and output resolution: each panel is ``PANEL_INCHES * DPI`` pixels square.
PANEL_INCHES = 1.6
DPI = 100
#: Inches above the panels (title, column names) and below them (the legend line).
TOP_INCHES = 0.9
BOTTOM_INCHES = 0.5


@dataclass
class GalleryData:
    """Everything a gallery shows, as float64 numpy arrays.

    ``images`` (N, C, H, W) in [0,1] (before clipping), ``labels`` (N,), ``indices`` (N,) into the
    split; per model: ``gradients[m]`` (N, C, H, W), ``predictions[m]`` (N,), ``cosines[m]`` (N,)
    (NaN without a score or for a zero gradient); ``score`` (N, C, H, W) or None with ``score_note``
    saying why.
    """

    dataset: str
    split: str
    gradient: str
    score_kind: str | None
    sigma: float | None
    images: object
    labels: object
    indices: object
    models: list[str] = field(default_factory=list)
    gradients: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    cosines: dict = field(default_factory=dict)
    score: object = None
    score_note: str = ""

    def subset(self, models: Sequence[str]) -> "GalleryData":
        """The same images with only ``models``."""
        missing = [model for model in models if model not in self.gradients]
        if missing:
            raise PagbenchError(f"gallery has no model {', '.join(missing)}")
        return GalleryData(self.dataset, self.split, self.gradient, self.score_kind, self.sigma, self.images, self.labels,
                           self.indices, list(models), {m: self.gradients[m] for m in models},
                           {m: self.predictions[m] for m in models}, {m: self.cosines[m] for m in models},
                           self.score, self.score_note)


def compute_gallery(models: Sequence[str], *, dataset: str | None = None, split: str = "test", num_images: int = 4,
                    gradient: str | None = None, score: str = "auto", sigma: float | None = None,
                    score_provider: str | None = None, manifold_provider: str | None = None, data_root: str | None = None,
                    device: str = "cpu", provider_options: dict | None = None, first_image: int = 0,
                    cache=None) -> GalleryData:
    """Input gradients of each model and the dataset's score on images ``first_image …
    first_image + num_images − 1`` of ``split`` (``dataset`` None: the default dataset), through
    the runner's pipeline (:func:`pagbench.evaluation.runner.prepare_all`, :func:`pagbench.evaluation.runner.iter_batches`):
    the models share the dataset, the providers and the geometry cache, so the score is computed
    once. Each cosine is cos(g, s) per image, :func:`pagbench.evaluation.metrics.cosine` as the
    metrics compute it (the gradient resized to the score's resolution when the dataset is scored
    at another, ``Dataset.score_image_shape``).
    ``gradient`` None: the dataset's default, as for ``evaluate``. Zoo models train on first use."""
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import prepare_all

    if not models:
        raise PagbenchError("a gallery needs at least one --model")
    if len(set(models)) != len(models):
        raise PagbenchError("a gallery lists each model once")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images <= 0:
        raise PagbenchError(f"--num-images must be positive, got {num_images}")
    if isinstance(first_image, bool) or not isinstance(first_image, int) or first_image < 0:
        raise PagbenchError(f"the first image must be an index >= 0, got {first_image}")
    all_options = [EvaluationOptions(model=model, dataset=dataset, split=split, num_images=first_image + num_images,
                                     batch_size=num_images, gradient=gradient, score=score, sigma=sigma,
                                     score_provider=score_provider, manifold_provider=manifold_provider, data_root=data_root,
                                     device=device, provider_options=dict(provider_options or {}))
                   for model in models]
    setups = prepare_all(all_options, with_metrics=False)
    try:
        return _draw(setups, split, setups[0].options.gradient, first_image, num_images, cache)  # None: the dataset's
    finally:  # a registered module of the caller's keeps its train/eval mode and requires_grad
        from pagbench.models.loading import restore_models

        restore_models(setup.model for setup in setups)


def _draw(setups, split, gradient, first_image, num_images, cache) -> "GalleryData":
    """The gallery's gradients, predictions, score and cosines from prepared ``setups``."""
    import torch

    from pagbench.evaluation.cache import GeometryCache
    from pagbench.evaluation.metrics import cosine
    from pagbench.errors import MetricUnavailable
    from pagbench.evaluation.runner import iter_batches

    first = setups[0]
    indices = list(range(first_image, first_image + num_images))
    batch = first.dataset.split(split).batch(indices)
    data = GalleryData(first.options.dataset, split, gradient, None, None, batch.images.double().numpy(),
                       batch.labels.numpy(), batch.indices.numpy())
    with_score = first.score_provider is not None
    if with_score:
        try:
            first.score_provider.check(first.sigma, first.score_kind)
        except MetricUnavailable as error:
            with_score, data.score_note = False, str(error)
    else:
        data.score_note = first.score_unavailable or f"no score provider for {first.options.dataset!r}"
    cache = cache if cache is not None else GeometryCache()
    for setup in setups:
        (context,) = iter_batches(setup, indices, cache=cache, needs_score=with_score)
        name = setup.options.model
        data.models.append(name)
        data.gradients[name] = context.gradient.numpy()
        data.predictions[name] = context.logits.argmax(1).cpu().numpy()
        if context.score is not None:
            if data.score is None:
                data.score_kind, data.sigma, data.score = setup.score_kind, setup.sigma, context.score.double().cpu().numpy()
            data.cosines[name] = context.masked(cosine(context.gradient_for_score(), context.score)).numpy()
        else:
            data.cosines[name] = torch.full((num_images,), float("nan"), dtype=torch.float64).numpy()
    return data


def _normalised(array):
    """array / max|array| per image (N, ...); zero images stay zero."""
    import numpy as np

    scale = np.abs(array.reshape(len(array), -1)).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return array / scale.reshape(-1, *([1] * (array.ndim - 1)))


def resolve_display(display: str, channels: int) -> str:
    if display not in DISPLAYS:
        raise PagbenchError(f"unknown display {display!r}; choose from {', '.join(DISPLAYS)}")
    if display == "auto":
        return "rgb" if channels == 3 else "sum"
    if display == "rgb" and channels != 3:
        raise PagbenchError(f"--display rgb needs 3-channel images, these have {channels}")
    return display


def gallery_size(num_models: int, num_images: int, with_score: bool = True) -> tuple[int, int]:
    """The PNG's (width, height) in pixels."""
    columns = 1 + num_models + (1 if with_score else 0)
    width = columns * PANEL_INCHES
    height = num_images * PANEL_INCHES + TOP_INCHES + BOTTOM_INCHES
    return round(width * DPI), round(height * DPI)


def render_gallery(data: GalleryData, output: str | Path, display: str = "auto", title: str | None = None) -> Path:
    """Draw ``data`` into the PNG ``output`` (written atomically); returns its path.

    The PNG is :func:`gallery_size` pixels: one square panel per image and column (input, each
    model, the score), plus a title band and a legend line.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pagbench.files.paths import write_atomic

    output = Path(output)
    if output.suffix.lower() != ".png":
        raise PagbenchError(f"{output}: a gallery is a PNG file (name it .png)")
    count, channels = data.images.shape[0], data.images.shape[1]
    display = resolve_display(display, channels)
    panels = [("input", None)] + [(model, data.gradients[model]) for model in data.models]
    with_score = data.score is not None
    if with_score:
        panels.append(("score", data.score))
    width, height = gallery_size(len(data.models), count, with_score)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    columns = len(panels)
    top = 1 - TOP_INCHES * DPI / height
    bottom = BOTTOM_INCHES * DPI / height
    grid = figure.add_gridspec(count, columns, left=0.02, right=0.98, top=top, bottom=bottom, wspace=0.08, hspace=0.32)

    def show(axes, picture):
        if display == "rgb":
            axes.imshow(np.clip((np.transpose(picture, (1, 2, 0)) + 1) / 2, 0, 1), interpolation="nearest")
        else:
            summed = picture.sum(axis=0)
            scale = np.abs(summed).max()
            axes.imshow(summed / scale if scale > 0 else summed, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")

    normalised = {name: _normalised(values) for name, values in panels if values is not None}
    for row in range(count):
        for column, (name, _) in enumerate(panels):
            axes = figure.add_subplot(grid[row, column])
            axes.set_xticks([])
            axes.set_yticks([])
            if name == "input" and column == 0:
                image = np.clip(data.images[row], 0, 1)
                if channels == 3:
                    axes.imshow(np.transpose(image, (1, 2, 0)), interpolation="nearest")
                else:
                    axes.imshow(image.mean(axis=0), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                axes.set_xlabel(f"#{int(data.indices[row])}  label {int(data.labels[row])}", fontsize=7, labelpad=2)
            else:
                show(axes, normalised[name][row])
                if name == "score" and column == columns - 1:
                    axes.set_xlabel("reference", fontsize=7, labelpad=2)
                else:
                    cosine = data.cosines[name][row]
                    cosine_text = "cos n/a" if not np.isfinite(cosine) else f"cos {cosine:+.2f}"
                    axes.set_xlabel(f"{cosine_text}  pred {int(data.predictions[name][row])}", fontsize=7, labelpad=2)
            if row == 0:
                label = name
                if name == "score" and column == columns - 1:
                    label = f"score ({data.score_kind},\nσ={data.sigma:g})"
                elif column > 0:
                    label = _wrap(name)
                axes.set_title(label, fontsize=7)
    score_text = f"score {data.score_kind} at σ={data.sigma:g}" if with_score else data.score_note
    heading = title or f"{data.dataset}/{data.split}: input gradients ({data.gradient}) and {score_text}"
    figure.suptitle(textwrap.fill(heading, max(30, int(width / 6.5))), fontsize=9, y=1 - 0.1 * DPI / height, va="top")
    legend = ("panels: ĝ = g / max|g| per image, shown as the RGB image (ĝ+1)/2 (grey = 0)"
              if display == "rgb" else
              "panels: per-pixel channel sum of g / max|·| per image; blue −1, white 0, red +1")
    figure.text(0.5, 0.05 * DPI / height, textwrap.fill(legend, max(40, int(width / 5.2))), ha="center", va="bottom", fontsize=7)

    def write(stream):
        figure.savefig(stream, format="png", dpi=DPI, metadata={"Software": None})

    return write_atomic(output, write)


def _wrap(name: str, width: int = 22) -> str:
    """Break long model names at ``-`` so column titles fit their panel."""
    if len(name) <= width:
        return name
    lines, current = [], ""
    for part in name.split("-"):
        piece = part if not current else "-" + part
        if current and len(current) + len(piece) > width:
            lines.append(current + "-")
            current = part
        else:
            current += piece
    lines.append(current)
    return "\n".join(lines)


def gallery(models: Sequence[str], output: str | Path, display: str = "auto", title: str | None = None, **options) -> Path:
    """Compute (:func:`compute_gallery`, keyword ``options``) and draw (:func:`render_gallery`)."""
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise PagbenchError(f"{output}: a gallery is a PNG file (name it .png)")
    from pagbench.results.documents import check_writable

    check_writable(output)
    return render_gallery(compute_gallery(models, **options), output, display=display, title=title)


# ------------------------------------------------------------------------- the board's galleries
@dataclass
class GalleryReport:
    written: list[Path]
    removed: list[Path]


def draw_galleries(root: str | Path = DEFAULT_ROOT, datasets: tuple[str, ...] = (), num_images: int = 4,
                   device: str = "cpu", data_root: str | None = None, display: str = "auto",
                   trust_checkpoint: bool = False, trust_pickle: bool = False) -> GalleryReport:
    """Draw every entry's gallery (``galleries/<dataset>/<entry>.png``: input, the entry's gradient,
    the score, in the entry's configuration) and per dataset an overview of all models sharing the
    table's common configuration, in board order (``galleries/<dataset>/overview.png``).

    Gallery images in those folders that belong to no entry any more are removed. Imports torch
    and matplotlib; zoo models that are not in the model store are trained first.

    Entries whose run needed ``--trust-checkpoint`` / ``--trust-pickle`` are refused, before any
    gallery is computed, unless the caller grants the same trust (``trust_*``: typed on this
    command line; trust keys stored in entries are ignored, see :mod:`pagbench.files.trust`).
    """
    root = Path(root)
    entries = load_entries(root)
    known = sorted({entry.dataset for entry in entries})
    unknown = [name for name in datasets if name not in known]
    if unknown:
        raise PagbenchError(f"no leaderboard entries for dataset(s) {', '.join(unknown)} (have: {', '.join(known) or 'none'})")
    from pagbench.files.trust import check_granted, required_trust, strip_trust

    for entry in entries:
        if entry.dataset in (datasets or known):
            check_granted(required_trust(entry.config), trust_checkpoint, trust_pickle, f"entry {entry.path}",
                          "pagbench leaderboard gallery")
    written, removed = [], []
    for dataset in datasets or known:
        rows = sorted((entry for entry in entries if entry.dataset == dataset), key=sort_key)
        common = common_configuration(rows)
        groups: dict[str, list[Entry]] = {}
        for entry in rows:
            groups.setdefault(config_id(configuration(entry)), []).append(entry)
        for identity, members in sorted(groups.items()):
            config = json.loads(identity)
            data = compute_gallery(
                [entry.model for entry in members], dataset=dataset, split=config["split"], num_images=num_images,
                gradient=config["gradient"], score=config["score"], sigma=config["sigma"],
                score_provider=config["score_provider"], manifold_provider=config["manifold_provider"],
                provider_options={**strip_trust(config["provider_options"]), **({"trust_pickle": "1"} if trust_pickle else {})},
                data_root=data_root, device=device,
            )
            for entry in members:
                written.append(render_gallery(data.subset([entry.model]), root / gallery_path(entry), display=display))
            if config == common:
                written.append(render_gallery(data, root / overview_path(dataset), display=display))
        keep = {root / gallery_path(entry) for entry in rows} | {root / overview_path(dataset)}
        for path in sorted((root / GALLERIES / dataset).glob("*.png")):
            if path not in keep:
                path.unlink()
                removed.append(path)
    return GalleryReport(written, removed)
