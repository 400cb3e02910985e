"""Result documents: one JSON file per run, versioned, validated, written atomically.

Layout (``schema_version`` 1)::

    {"schema_version": 1, "pagbench_version": ..., "plugins": {name: version},
     "created": ISO-8601 UTC, "config": {...every option, the model card, providers, σ...},
     "metrics": {name: {"value", "stderr", "n", "excluded", "higher_is_better"}},
     "curves": {name: {"x": [...], "mean": [...], "stderr": [...], "n": [...]}},
     "metric_settings": {metric: {...}}, "unavailable": {metric: reason},
     "degenerate": {"zero_gradient", "nonfinite_gradient", "nonfinite_logits"},
     "sanity": {"flags": {name: {"value", "threshold", "raised", "detail"}}, "raised": [...], "checked_images"},
     "timing": {...seconds...}, "warnings": [...]}

``sanity`` (:mod:`pagbench.evaluation.sanity`) is written by every run since it was introduced (older
results and entries lack it). ``config.score_provider_fingerprint`` / ``manifold_provider_fingerprint``
identify the providers' weights, and ``config.provider_files`` lists every file a provider read
(a downloaded URL too) with its SHA-256. ``config.weights_sha256`` is :func:`weights_digest` of the
evaluated model (absent in results made before it was recorded).
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

from pagbench.version import __version__
from pagbench.errors import PagbenchError
from pagbench.files.paths import write_json_atomic
from pagbench.results.schema import SCHEMA_VERSION
from pagbench.results.schema import validate_result as follows_schema
REQUIRED = ("schema_version", "pagbench_version", "config", "metrics", "created")
REQUIRED_CONFIG = ("model", "dataset", "split", "num_images", "seed", "gradient")
REQUIRED_METRIC = ("value", "stderr", "n", "higher_is_better")
#: Every top-level field of a schema-1 result (others are dropped when it becomes an entry).
TOP_LEVEL_FIELDS = ("schema_version", "pagbench_version", "plugins", "created", "config", "metrics", "curves",
                    "metric_settings", "unavailable", "degenerate", "sanity", "timing", "warnings", "per_image", "entry_key", "entry_id")
#: Result files larger than this are refused unread (per-image values of 10⁵ images fit).
MAX_RESULT_BYTES = 64 * 2**20
#: Deepest nesting of objects and lists in a result (a result document needs 4).
MAX_DEPTH = 32


#: What a provider's file record may carry into the result, beside location, path and sha256: how
#: the file was loaded (e.g. a network rebuilt by pagbench's own code, or the file's embedded code
#: run under a trust flag), the class it held and a digest of the code it embeds.
PROVIDER_FILE_DETAILS = ("loaded_with", "class_name", "module_src_sha256")


def _provider_files(*providers) -> list:
    """``[{"location", "path", "sha256"[, "loaded_with", "class_name", "module_src_sha256"]}, ...]``:
    the files the providers read (their ``files`` attribute, when they have one), so a result names
    exactly the weights it used and how they were loaded."""
    files = []
    for provider in providers:
        for item in getattr(provider, "files", None) or ():
            if not isinstance(item, dict):
                continue
            record = {key: item.get(key) for key in ("location", "path", "sha256")}
            record.update({key: str(item[key]) for key in PROVIDER_FILE_DETAILS if item.get(key) is not None})
            if record not in files:
                files.append(record)
    return files


def _fingerprint(provider) -> str | None:
    if provider is None:
        return None
    try:
        value = provider.fingerprint
    except Exception:  # a provider's fingerprint never stops a result from being written
        return None
    return value if isinstance(value, str) else None


def weights_digest(module) -> str | None:
    """SHA-256 (hex) of ``module``'s state dict: every entry's name, dtype, shape and bytes in
    order, independent of how the weights were serialised; None when it cannot be read (e.g.
    meta or sparse tensors). ``leaderboard verify`` compares it to tell the same weights from
    weights retrained from a recipe."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    try:
        for name, tensor in module.state_dict().items():
            if not isinstance(tensor, torch.Tensor):
                continue
            data = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes())
    except Exception:  # a digest never stops a result from being written
        return None
    return digest.hexdigest()


def build_result(setup, metrics, curves, settings, degenerate, timing, messages, sanity=None) -> dict:
    """The result document of one run. ``sanity`` is :func:`pagbench.evaluation.sanity.check_batch`'s record
    (None when the batch checks did not run); ``degenerate_gradients`` is added from ``degenerate``."""
    import torch

    from pagbench.extensions.manager import plugin_versions
    from pagbench.evaluation.sanity import resolve_thresholds, sanity_record

    options = setup.options
    config = options.as_dict()
    config.update(
        {
            "model_card": setup.model.card.as_dict(),
            "model_plugin": setup.model.plugin,
            "weights_sha256": weights_digest(setup.model.module),
            "dataset_config": setup.dataset.config,
            "dataset_fingerprint": setup.dataset.fingerprint,
            "image_selection": f"first {options.num_images} images of split {options.split!r}",
            "score": setup.score_kind,
            "score_requested": options.score,
            "score_provider": setup.score_provider_name,
            "sigma": setup.sigma,
            "sigma_used": setup.score_provider.effective_sigma(setup.sigma) if setup.score_provider is not None else None,
            "sigma_units": "[0,1] pixel units",
            "manifold_provider": setup.manifold_provider_name,
            "score_provider_fingerprint": _fingerprint(setup.score_provider),
            "manifold_provider_fingerprint": _fingerprint(setup.manifold_provider),
            "provider_files": _provider_files(setup.score_provider, setup.manifold_provider),
            "device": str(setup.device),
            "dtype": options.dtype,
            "precision": f"{options.dtype} model and inputs in the gradient pass; float64 class weights, attributions and metrics",
            "attribution": setup.attribution.name if setup.attribution is not None else options.attribution,
            "attribution_settings": dict(setup.attribution.settings) if setup.attribution is not None else {},
            "torch_version": torch.__version__,
            "metrics": [metric.name for metric in setup.metrics],
        }
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "pagbench_version": __version__,
        "plugins": plugin_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "metrics": metrics,
        "curves": curves,
        "metric_settings": settings,
        "unavailable": setup.unavailable,
        "degenerate": degenerate,
        "sanity": sanity_record(sanity, degenerate, options.num_images,
                                resolve_thresholds(getattr(options, "sanity_thresholds", None))),
        "timing": timing,
        "warnings": messages,
    }


def default_result_path(result: dict, directory: str | Path = "results") -> Path:
    """``results/<dataset>/<model>-<UTC timestamp>.json``; never an existing file."""
    config = result["config"]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", config["model"]).strip("-") or "model"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(directory) / config["dataset"] / f"{safe}-{stamp}"
    path, counter = Path(f"{base}.json"), 1  # not with_suffix: "noise-0.5-…" has a dot
    while path.exists():
        path, counter = Path(f"{base}-{counter}.json"), counter + 1
    return path


def check_writable(path: str | Path) -> None:
    """Fail early (before any compute) if ``path`` cannot be written: see
    :func:`pagbench.files.paths.check_writable_file` (only a regular file is replaced; the folder must
    accept new files)."""
    from pagbench.files.paths import check_writable_file

    check_writable_file(path, "output")


def write_result(result: dict, path: str | Path) -> Path:
    """Validate (:func:`validate_result` and the published schema, :mod:`pagbench.results.schema`) and
    write atomically (a failure leaves no file behind)."""
    validate_result(result, source=str(path))
    follows_schema(result, source=str(path))
    return write_json_atomic(path, result)


def validate_result(result, source: str = "result") -> dict:
    """Raise :class:`PagbenchError` naming ``source`` if ``result`` is not a valid schema-1 document."""
    if not isinstance(result, dict):
        raise PagbenchError(f"{source}: not a JSON object")
    version = result.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):  # true == 1 in Python, not in the schema
        raise PagbenchError(f"{source}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
    missing = [key for key in REQUIRED if key not in result]
    if missing:
        raise PagbenchError(f"{source}: missing field(s) {', '.join(missing)}")
    config = result["config"]
    if not isinstance(config, dict):
        raise PagbenchError(f"{source}: config is not an object")
    missing = [key for key in REQUIRED_CONFIG if key not in config]
    if missing:
        raise PagbenchError(f"{source}: config lacks {', '.join(missing)}")
    if not isinstance(result["metrics"], dict):
        raise PagbenchError(f"{source}: metrics is not an object")
    for name, entry in result["metrics"].items():
        if not isinstance(entry, dict) or any(key not in entry for key in REQUIRED_METRIC):
            raise PagbenchError(f"{source}: metric {name!r} lacks one of {', '.join(REQUIRED_METRIC)}")
        for key in ("value", "stderr"):
            if entry[key] is not None and (isinstance(entry[key], bool) or not isinstance(entry[key], (int, float))):
                raise PagbenchError(f"{source}: metric {name!r} {key} is not a number")
        if isinstance(entry["n"], bool) or not isinstance(entry["n"], int) or entry["n"] < 0:
            raise PagbenchError(f"{source}: metric {name!r} n is not a count")
        if entry["higher_is_better"] is not None and not isinstance(entry["higher_is_better"], bool):
            raise PagbenchError(f"{source}: metric {name!r} higher_is_better is not true, false or null")
    return result


def nesting_depth(document) -> int:
    """How deeply objects and lists nest in ``document`` (iteratively: no recursion limit)."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class DuplicateKey(ValueError):
    """A JSON object that names one key twice (which value counts would be up to the reader)."""


def _unique_keys(pairs) -> dict:
    """``object_pairs_hook`` for :func:`json.loads`: a dict, or :class:`DuplicateKey`."""
    document = {}
    for key, value in pairs:
        if key in document:
            raise DuplicateKey(key)
        document[key] = value
    return document


def load_result(path: str | Path) -> dict:
    """Read and validate a result file; errors name the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_RESULT_BYTES:
            raise PagbenchError(f"{path}: {size / 2**20:.0f} MiB is larger than a result file can be ({MAX_RESULT_BYTES // 2**20} MiB)")
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PagbenchError(f"{path}: cannot read ({error.strerror or error})") from error
    except UnicodeDecodeError:
        raise PagbenchError(f"{path}: malformed JSON (not UTF-8 text)") from None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise PagbenchError(f"{path}: malformed JSON ({error.msg} at line {error.lineno})") from error
    except DuplicateKey as error:
        raise PagbenchError(f"{path}: malformed JSON (key {str(error)[:80]!r} appears twice in one object)") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise PagbenchError(f"{path}: malformed JSON ({str(error).splitlines()[0][:120]})") from None
    except RecursionError:
        raise PagbenchError(f"{path}: JSON nested too deeply (a result nests at most {MAX_DEPTH} levels)") from None
    if nesting_depth(data) > MAX_DEPTH:
        raise PagbenchError(f"{path}: JSON nested too deeply (a result nests at most {MAX_DEPTH} levels)")
    return validate_result(data, source=str(path))
