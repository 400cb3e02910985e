"""``lpips_alignment`` = 1 − LPIPS(ĝ, ŝ), the perceptual similarity of gradient and score.

ĝ = g / max|g| and ŝ = s / max|s| per image, so both lie in [−1, 1], the range LPIPS expects.
Grayscale images are repeated to 3 channels and images smaller than 32×32 are upsampled
(bilinear) to 32×32 first. LPIPS is AlexNet-LPIPS v0.1 from the ``lpips`` package: its linear
calibration layers ship with the package; the AlexNet backbone is torchvision's ImageNet weights
(``alexnet-owt-7be5be79.pth``), the ``alexnet`` asset (``pagbench assets fetch alexnet``). When
that file is missing and cannot be downloaded, the metric is reported unavailable with the path
it looked in and the fetch command: it never silently runs on random weights. A file whose hash
differs from the pin is an error naming it, not "unavailable".
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pagbench.plugin import MetricUnavailable
from pagbench.plugin import offline
from pagbench.plugin import BoardColumn, Metric, MetricContext, MetricOption, MetricOutput

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/" + ALEXNET_FILE
#: The 8 hex digits in the file's name: the prefix of its SHA-256 (how torch.hub checks it).
ALEXNET_SHA256_PREFIX = ALEXNET_FILE.rsplit("-", 1)[1].split(".")[0]
MIN_SIZE = 32


#: The asset name of the backbone (``pagbench assets fetch alexnet``).
ASSET = "alexnet"


def backbone_asset():
    """The backbone's :class:`pagbench.files.assets.AssetEntry` (declared by this plugin's ``register_assets``)."""
    from pagbench.plugin import AssetEntry

    return AssetEntry(name=ASSET, filename=ALEXNET_FILE, url=ALEXNET_URL, size=244_408_911, sha256=ALEXNET_SHA256_PREFIX,
                      licence="BSD-3-Clause (torchvision)", metrics=("lpips_alignment",),
                      description="torchvision's ImageNet AlexNet, the LPIPS v0.1 backbone (SHA-256 prefix as torch.hub checks)")


def _asset():
    """The registered backbone asset (the test-only table applied), or this plugin's own declaration."""
    from pagbench.plugin import assets
    from pagbench.plugin import UnknownNameError

    try:
        return assets.get(ASSET)
    except UnknownNameError:
        return backbone_asset()


def _pin() -> str:
    return _asset().sha256 or ALEXNET_SHA256_PREFIX


def backbone_path() -> Path:
    """Where the AlexNet weights are read: ``$PAGBENCH_LPIPS_BACKBONE``; else the ``alexnet``
    asset (``<asset root>/alexnet/alexnet-owt-7be5be79.pth``) when present; else torch's hub
    cache when the file is there (an earlier download); else the asset's path (where it is fetched)."""
    explicit = os.environ.get("PAGBENCH_LPIPS_BACKBONE")
    if explicit:
        return Path(explicit)
    from pagbench.plugin import assets

    entry = _asset()
    path = assets.local_path(entry)
    if path.exists() or assets.overridden(entry):
        return path
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    return hub if hub.exists() else path


def _reachable() -> bool:
    """Whether the backbone's host answers (a 3 s connection attempt)."""
    from urllib.parse import urlsplit

    parts = urlsplit(_asset().url or ALEXNET_URL)
    try:
        socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=3).close()
    except (OSError, TypeError):
        return False
    return True


def _fetch(url: str, path: Path) -> None:
    """Download the backbone asset to ``path`` with pagbench's asset downloader (resumable,
    hash-checked against the published prefix before it is moved into place)."""
    from pagbench.plugin import assets

    assets.download(_asset())


def _try_download(path: Path) -> bool:
    """Fetch the backbone where the network allows; False when offline or unreachable. A
    download whose SHA-256 does not start with the pin is never kept and is refused (one line)."""
    from pagbench.plugin import PagbenchError

    if offline() or not _reachable():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    from pagbench.plugin import DownloadFailed

    try:
        _fetch(_asset().url or ALEXNET_URL, path)
    except DownloadFailed:  # unreachable: reported unavailable; a wrong or HTML file is an error naming it
        return False
    if path.exists():
        try:
            _check_pinned_backbone(path)
        except PagbenchError:
            path.unlink()  # a download that is not the pinned file is never kept
            raise
    return path.exists()


def _check_pinned_backbone(path: Path) -> None:
    """Refuse (one-line :class:`~pagbench.errors.PagbenchError` naming the file, not "unavailable")
    a backbone file whose SHA-256 does not start with the 8 hex digits in its published name; the
    digest is computed once per (size, mtime) (:func:`pagbench.files.pinned.file_digest`)."""
    from pagbench.plugin import check_pinned

    check_pinned(path, _pin(), what="LPIPS AlexNet backbone",
                 remedy=f"delete it and run `pagbench assets fetch {ASSET}` (or set PAGBENCH_LPIPS_BACKBONE)")


_BUILT: dict = {}


def shared_lpips(random_backbone: bool = False):
    """:func:`build_lpips`, built once per process per backbone file (building AlexNet is slow)."""
    key = "random" if random_backbone else str(backbone_path())
    if key not in _BUILT:
        _BUILT[key] = build_lpips(random_backbone)
    return _BUILT[key]


def user_supplied_backbone() -> bool:
    """True when ``$PAGBENCH_LPIPS_BACKBONE`` names the file (the user's choice), False for torch's
    hub cache (where pagbench downloads it)."""
    return bool(os.environ.get("PAGBENCH_LPIPS_BACKBONE"))


def check_backbone(random_backbone: bool = False) -> None:
    """The cheap part of :func:`build_lpips`: the backbone file exists (downloading it where the
    network allows) and is a torch zip archive; a file in torch's hub cache, or one pagbench
    downloaded, must have a SHA-256 starting with :data:`ALEXNET_SHA256_PREFIX` (hashed once per
    file size and mtime), else it is refused in one line. A file the user names with
    ``$PAGBENCH_LPIPS_BACKBONE`` is not refused for its hash: its SHA-256, and whether it matches
    the pin, are recorded in the metric's settings (:meth:`LpipsAlignment.describe`). Imports
    neither ``lpips`` nor builds AlexNet."""
    import zipfile

    if random_backbone:
        return
    path = backbone_path()
    downloaded = False
    if not path.exists():
        if not _try_download(path):
            raise MetricUnavailable(
                f"LPIPS AlexNet backbone weights not found at {path} (offline); run `pagbench assets fetch {ASSET}`, "
                f"or put {ALEXNET_FILE} there or set PAGBENCH_LPIPS_BACKBONE"
            )
        downloaded = True
    if not zipfile.is_zipfile(path):
        raise MetricUnavailable(f"LPIPS backbone {path} is not a readable state dict (not a torch zip archive)")
    if downloaded or not user_supplied_backbone():
        _check_pinned_backbone(path)


def backbone_record(random_backbone: bool = False) -> dict:
    """What the result records about the backbone: its path, SHA-256 and whether it matches the pin."""
    if random_backbone:
        return {"backbone": "random (test only)"}
    from pagbench.plugin import file_digest, matches

    path = backbone_path()
    try:
        digest = file_digest(path)
    except OSError:
        return {"backbone": str(path)}
    record = {"backbone": str(path), "backbone_sha256": digest, "backbone_pinned": matches(digest, _pin())}
    from pagbench.plugin import assets

    if not user_supplied_backbone() and assets.overridden(_asset()):
        record["asset_table"] = f"TEST-ONLY override {assets.override_table_path()}"
    return record


def build_lpips(random_backbone: bool = False):
    """AlexNet-LPIPS v0.1 in eval mode with the ImageNet backbone (or random, if asked)."""
    import contextlib
    import io
    import warnings

    check_backbone(random_backbone)  # before `import lpips` (seconds) and building AlexNet
    import lpips
    import torch

    path = backbone_path()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # banner, torchvision deprecations
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if not random_backbone:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise MetricUnavailable(f"LPIPS backbone {path} is not a readable state dict ({error})") from error
        features = {key[len("features.") :]: value for key, value in state.items() if key.startswith("features.")}
        slices = dict(model.net.named_parameters())
        mapped = {}
        for name in slices:
            _, index, kind = name.split(".")  # slice<k>.<features index>.<weight|bias>
            key = f"{index}.{kind}"
            if key not in features:
                raise MetricUnavailable(f"LPIPS backbone {path} lacks features.{key}")
            mapped[name] = features[key]
        model.net.load_state_dict(mapped, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def to_lpips_input(images):
    """Max-abs normalise per image to [−1, 1], grey → RGB, upsample to at least 32×32."""
    import torch.nn.functional as functional

    images = images.float()
    scale = images.reshape(images.shape[0], -1).abs().amax(1).clamp_min(1e-30)
    images = images / scale.view(-1, 1, 1, 1)
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    height, width = images.shape[-2:]
    if min(height, width) < MIN_SIZE:
        factor = MIN_SIZE / min(height, width)
        size = (round(height * factor), round(width * factor))
        images = functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images


class LpipsAlignment(Metric):
    name = "lpips_alignment"
    board_columns = (BoardColumn(
        "lpips_alignment", "lpips_alignment", position=30, always=True,
        legend="1 − LPIPS(ĝ, ŝ) with ĝ = g/max|g|, ŝ = s/max|s| (AlexNet LPIPS v0.1).\n"
               "  Higher is better. `n/a` with a numbered note giving the reason when the run could not compute it."),)
    higher_is_better = True
    requires = frozenset({"gradient", "score"})
    description = "1 − LPIPS(AlexNet, v0.1) between max-normalised gradient and score."
    value_ranges = {"lpips_alignment": (-float("inf"), 1.0)}  # LPIPS is a distance >= 0 (not bounded above)
    options = (MetricOption("lpips_random_backbone", "flag", default=False, hidden=True, recorded_after="data_root",
                            help="Test only: LPIPS with a random AlexNet.", board_text="**random LPIPS backbone (test only)**"),)

    def __init__(self, random_backbone: bool = False):
        self.random_backbone = random_backbone
        self._random = random_backbone
        self._model = None
        self._model_random = None

    def check_available(self, setup) -> None:
        """Cheap: the backbone file is there (:func:`check_backbone`); the network is built on the
        first :meth:`compute` (``prepare`` does no heavy work)."""
        self._random = self.random_backbone or bool(self.option(setup.options, "lpips_random_backbone"))
        check_backbone(self._random)

    def describe(self, setup):
        from .score_cosine import sigma_settings

        return {"network": "alex", "version": "0.1", **backbone_record(self._random), **sigma_settings(setup)}

    def curve_grid(self, setup):
        from .score_cosine import sigma_curve_grid

        return sigma_curve_grid(self.name, setup)

    def _alignment(self, model, gradient_input, score, context):
        """1 − LPIPS of one batch of (normalised gradient, score) pairs, on the evaluation device;
        NaN where the score is zero or the gradient degenerate."""
        import torch

        device = context.images.device
        with torch.no_grad():
            distance = model(gradient_input, to_lpips_input(score).to(device))
        value = 1.0 - distance.reshape(-1).double()
        score_ok = (score.reshape(score.shape[0], -1).abs().amax(1) > 0).to(value.device)
        value = torch.where(score_ok, value, torch.full_like(value, float("nan")))
        return context.masked(value)

    def compute(self, context: MetricContext) -> MetricOutput:
        """One batched LPIPS pass per σ (the whole batch at once); the normalised gradient is
        computed once and reused across the σ grid."""
        import torch

        device = context.images.device
        if self._model is None or self._model_random != self._random:
            self._model, self._model_random = shared_lpips(random_backbone=self._random), self._random
        model = self._model.to(device)
        gradient_input = to_lpips_input(context.gradient_for_score()).to(device)
        values = {self.name: self._alignment(model, gradient_input, context.score, context)}
        curves = {}
        if context.sigma_scores is not None:
            columns = []
            for score in context.sigma_scores:
                if score is context.score:
                    columns.append(values[self.name])
                    continue
                resized = gradient_input if score.shape == context.score.shape else to_lpips_input(context.gradient_like(score)).to(device)
                columns.append(self._alignment(model, resized, score, context))
            curves[self.name] = torch.stack(columns, dim=1)
        return MetricOutput(values, curves)
