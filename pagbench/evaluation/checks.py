"""Validation of an evaluation's options before any compute (called by the runner's ``_check_options``).

Every number must be finite and in range (σ ≥ 0 and ≤ :data:`MAX_PIXEL_SCALE`; the options
metrics declare are checked by each metric's ``check_options``, with :func:`pixel_scale`,
:func:`check_grid` and :func:`in_grid`), the device must be one pagbench runs on, the
environment variables pagbench reads must parse, provider options must be keys the chosen
providers declare, model-card and normalisation options must be finite numbers, and the cache
directory must be a folder files can be created in. Each problem is one
:class:`~pagbench.errors.PagbenchError` line. Nothing here imports torch unless the device names
CUDA. The same checks serve values that do not come from flags (:func:`card_strength` for Python
cards and strengths read from checkpoints or model-info files, :func:`pixel_scale` for an ε
stored in a file), so they are never copied.
"""

from __future__ import annotations

import math
import os
import re

from pagbench.errors import PagbenchError

#: Devices pagbench evaluates on: ``cpu``, ``cuda`` and ``cuda:N``.
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
#: Option keys every provider accepts: trust is granted by the command line (see pagbench.files.trust),
#: and ``--trust-pickle`` is passed to every provider.
ALWAYS_ACCEPTED = ("trust_pickle",)
#: Most points a grid (``--sigmas``, or one a metric declares) may have: each point is a
#: pass over every image (a score, or a forward pass per direction).
MAX_GRID_POINTS = 1000
#: Largest σ (or a metric's ε, noise level, ...), in [0,1] pixel units: an image spans 1, so at 1e3 nothing of it is
#: left, and far beyond it σ² overflows.
MAX_PIXEL_SCALE = 1e3


def finite(value, option: str, minimum: float | None = None, strict: bool = False) -> float:
    """``value`` as a float that is finite and ≥ ``minimum`` (> with ``strict``), else one line."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PagbenchError(f"{option} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise PagbenchError(f"{option} must be a finite number, got {value!r}")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        raise PagbenchError(f"{option} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return number


def card_strength(value, what: str) -> float | None:
    """A model card's regime strength (``card.strength``, a Python card's ``strength``, a strength
    read from a checkpoint or a model-info file): None (unset) or a finite number ≥ 0, as a float."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise PagbenchError(f"{what} must be a number, got {value!r}")
    return finite(value, what, 0.0)


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` (N below the number of visible GPUs)."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise PagbenchError(f"unsupported device {device!r}: pagbench runs on cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise PagbenchError(f"device {device!r} requested but CUDA is not available")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise PagbenchError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")


def memory_cache_bytes() -> int:
    """``PAGBENCH_MEMORY_CACHE_MB`` (default 2048) in bytes; a bad value is one line."""
    text = os.environ.get("PAGBENCH_MEMORY_CACHE_MB", "2048")
    try:
        megabytes = int(text.strip())
    except ValueError:
        raise PagbenchError(f"PAGBENCH_MEMORY_CACHE_MB must be a whole number of MiB (>= 0), got {text!r}") from None
    if megabytes < 0:
        raise PagbenchError(f"PAGBENCH_MEMORY_CACHE_MB must be >= 0, got {text!r}")
    return megabytes * 2**20


def check_folder(path, what: str) -> None:
    """``path`` is a folder files can be created in, or can be created as one (no file in the way,
    its nearest existing ancestor accepts new files; probed, so /proc or a read-only file system
    is refused even for root): :func:`pagbench.files.paths.check_writable_folder`."""
    from pagbench.files.paths import check_writable_folder

    check_writable_folder(path, what)


def check_cache_dir() -> None:
    from pagbench.files.paths import cache_dir

    check_folder(cache_dir(), "cache directory (PAGBENCH_CACHE_DIR)")


def pixel_scale(value, option: str, strict: bool = True) -> float:
    """A σ, ε or noise level: finite, > 0 (≥ 0 unless ``strict``) and ≤ :data:`MAX_PIXEL_SCALE`."""
    if isinstance(value, bool):
        raise PagbenchError(f"{option} must be a number, got {value!r}")
    number = finite(value, option, 0.0, strict=strict)
    if number > MAX_PIXEL_SCALE:
        raise PagbenchError(f"{option} must be <= {MAX_PIXEL_SCALE:g} ([0,1] pixel units), got {value!r}")
    return number


def check_grid(values, option: str, strict: bool = True) -> None:
    """A grid: 1 to :data:`MAX_GRID_POINTS` values, each a :func:`pixel_scale`."""
    if values is None:
        return
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise PagbenchError(f"{option} must be a sequence of numbers, got {values!r}")
    if len(values) == 0:
        raise PagbenchError(f"{option} is empty")
    if len(values) > MAX_GRID_POINTS:
        raise PagbenchError(f"{option} has {len(values)} points; at most {MAX_GRID_POINTS}")
    for value in values:
        pixel_scale(value, option, strict)


def in_grid(value: float, grid) -> bool:
    """Whether ``value`` is a point of ``grid`` to the 6 significant digits grids are printed with
    (a grid ``0.001:100:20`` has 2.63665…; typing 2.63665 selects it)."""
    return any(math.isclose(float(value), float(point), rel_tol=1e-5, abs_tol=0.0) for point in grid)


def check_numbers(options) -> None:
    """σ, then the options every registered metric declares (:meth:`~pagbench.evaluation.metrics.Metric.check_options`)."""
    from pagbench.extensions import registry

    if options.sigma is not None:
        pixel_scale(options.sigma, "--sigma", strict=False)
    for metric in registry.metrics():
        metric.check_options(options)


def check_model_options(options: dict) -> None:
    """Numbers that describe the model must be finite: ``card.strength``, ``mean``, ``std`` (> 0)."""
    for key, value in (options or {}).items():
        if key == "card.strength":
            card_strength(value, f"--model-option {key}")
        elif key in ("mean", "std") and isinstance(value, str):
            for part in value.split(","):
                finite(part, f"--model-option {key}", 0.0 if key == "std" else None, strict=key == "std")


def _resolved_providers(options) -> list[tuple[str, object]]:
    """(kind, entry) of the score and manifold providers the run will use (None when unknown)."""
    from pagbench.extensions import registry

    dataset = registry.datasets().get(options.dataset)
    chosen = []
    for kind, name, default, table in (
        ("score", options.score_provider, dataset.default_score_provider, registry.score_providers),
        ("manifold", options.manifold_provider, dataset.default_manifold_provider, registry.manifold_providers),
    ):
        name = name or default
        if name is not None:
            chosen.append((kind, table().get(name)))
    return chosen


def check_provider_options(options) -> None:
    """Every ``--provider-option`` key must be declared by the score or the manifold provider in use.

    A provider entry declares its keys in ``options`` (a tuple); a provider that declares none
    (``options=None``, e.g. an older third-party plugin) accepts any key, so then nothing is refused.
    """
    given = [key for key in (options.provider_options or {}) if key not in ALWAYS_ACCEPTED]
    if not given:
        return
    providers = _resolved_providers(options)
    if any(getattr(entry, "options", None) is None for _, entry in providers):
        return
    accepted = sorted({key for _, entry in providers for key in entry.options})
    unknown = [key for key in given if key not in accepted]
    if unknown:
        names = " and ".join(f"{kind} provider {entry.name!r}" for kind, entry in providers) or "no provider"
        raise PagbenchError(f"unknown provider option(s) {', '.join(unknown)} for {names} "
                            f"(accepted: {', '.join(accepted) or 'none'})")


def check_evaluation_options(options) -> None:
    """Everything about ``options`` that can be checked before loading data or models."""
    check_numbers(options)
    check_device(options.device)
    memory_cache_bytes()
    check_model_options(options.model_options)
    check_provider_options(options)
    check_cache_dir()
