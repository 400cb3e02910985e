"""RobustBench's per-model information (paper, ε, clean and robust accuracy), read at run time.

pagbench holds no copy of it. RobustBench keeps one JSON file per model in its repository,
``model_info/DATASET/THREAT_MODEL/NAME.json`` (the ``robustbench`` package on PyPI does not ship
them). The file for a model is looked for, in this order:

1. ``--model-option model_info=DIR``: a RobustBench checkout's ``model_info`` folder (the checkout
   itself is accepted too), read as ``DIR/DATASET/THREAT/NAME.json``;
2. ``MODEL_DIR/model_info/DATASET/THREAT/NAME.json`` in the model directory;
3. online only (``PAGBENCH_OFFLINE`` unset): the single file from RobustBench's repository
   (:data:`RAW_URL`), saved atomically at the place of 2. so later runs read it offline. A failed
   download is a warning: the model is still evaluated, its card then says that no information
   was found.

Values are converted as pagbench records them: accuracies (percentage strings in RobustBench's
files) become fractions, ``eps`` (e.g. ``"8/255"``) a float in [0,1] pixel units next to the
text given. Pure Python (no torch, no robustbench).
"""

from __future__ import annotations

import json
import math
import warnings
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote

from pagbench.plugin import PagbenchError

RAW_URL = "https://raw.githubusercontent.com/RobustBench/robustbench/master/model_info/{dataset}/{threat_model}/{name}.json"
TIMEOUT_S = 10
MAX_BYTES = 1 << 20
NONE = "none: pass --model-option model_info=DIR (RobustBench's model_info folder) or run online"

#: (field pagbench records, field in RobustBench's file) for accuracies (percent strings there).
ACCURACIES = (
    ("clean_accuracy", "clean_acc"),
    ("autoattack_accuracy", "autoattack_acc"),
    ("external_accuracy", "external"),
    ("reported_accuracy", "reported"),
    ("corruptions_accuracy", "corruptions_acc"),
    ("corruptions_accuracy_3d", "corruptions_acc_3d"),
    ("corruptions_mce", "corruptions_mce"),
    ("corruptions_mce_3d", "corruptions_mce_3d"),
)
TEXT = (("paper", "name"), ("link", "link"), ("authors", "authors"), ("venue", "venue"), ("architecture", "architecture"), ("footnote", "footnote"), ("dataset_in_file", "dataset"))
PLAIN = ("additional_data", "number_forward_passes", "unreliable")


from pagbench.plugin import offline as _offline  # noqa: E402  (one definition of PAGBENCH_OFFLINE)


def _number(text, where: str, field: str):
    if isinstance(text, bool):
        raise PagbenchError(f"{where}: field {field!r} is {text!r}, not a number")
    if text is None or str(text).strip().lower() in ("", "null", "none", "n/a", "-"):
        return None
    if isinstance(text, (int, float)):
        number = float(text)
    else:
        value = str(text).strip().rstrip("%").strip()
        try:
            number = float(Fraction(value)) if "/" in value else float(value)
        except (ValueError, ZeroDivisionError, OverflowError):
            raise PagbenchError(f"{where}: field {field!r} is {text!r}, not a number or fraction") from None
    if not math.isfinite(number):
        raise PagbenchError(f"{where}: field {field!r} is {text!r}, not a finite number")
    return number


def convert(raw: dict, threat_model: str, where: str) -> dict:
    """pagbench's record of one RobustBench model_info entry (see the module doc)."""
    entry = {ours: raw[theirs] for ours, theirs in TEXT if raw.get(theirs) not in (None, "")}
    for ours, theirs in ACCURACIES:
        value = _number(raw.get(theirs), where, theirs)
        if value is not None:
            if value < 0 or (value > 100 and not ours.startswith("corruptions_mce")):  # an mCE may pass 100
                raise PagbenchError(f"{where}: field {theirs!r} is {raw.get(theirs)!r}, not a percentage in 0..100")
            entry[ours] = round(value / 100, 6)
    if threat_model in ("Linf", "L2") and raw.get("eps") not in (None, ""):
        from pagbench.plugin import pixel_scale

        entry["eps"] = pixel_scale(_number(raw["eps"], where, "eps"), f"{where}: field 'eps'", strict=False)
        entry["eps_text"] = str(raw["eps"])
    # the robust accuracy RobustBench's leaderboard shows: "external" where given, else AutoAttack's
    field, robust = ("external", entry["external_accuracy"]) if "external_accuracy" in entry else ("autoattack_acc", entry.get("autoattack_accuracy"))
    if threat_model == "corruptions":
        field, robust = "corruptions_acc", entry.get("corruptions_accuracy")
    if robust is not None:
        entry["robust_accuracy"], entry["robust_accuracy_field"] = robust, field
    for key in PLAIN:
        if raw.get(key) is not None:
            entry[key] = raw[key]
    return entry


def parse(text: bytes | str, threat_model: str, where: str) -> dict:
    """A model_info file's content, converted; a one-line error naming ``where`` when malformed."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        detail = " ".join(str(error).split())
        raise PagbenchError(f"RobustBench model information file {where} is not valid JSON ({detail})") from None
    if not isinstance(raw, dict):
        raise PagbenchError(f"RobustBench model information file {where} holds a JSON {type(raw).__name__}, not an object")
    return convert(raw, threat_model, where)


def read(path: Path, threat_model: str) -> dict:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise PagbenchError(f"cannot read RobustBench model information file {path}: {error.strerror or error}") from error
    return parse(text, threat_model, str(path))


def relative_path(spec) -> Path:
    return Path(spec.dataset) / spec.threat_model / f"{spec.model}.json"


def _option_dir(value) -> Path:
    directory = Path(str(value)).expanduser()
    if not directory.is_dir():
        raise PagbenchError(f"--model-option model_info={value}: no such directory (give RobustBench's model_info folder)")
    # a RobustBench checkout is accepted in place of its model_info folder
    if (directory / "model_info").is_dir() and not any((directory / name).is_dir() for name in ("cifar10", "cifar100", "imagenet")):
        directory = directory / "model_info"
    return directory


def _fetch(url: str) -> bytes:
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "pagbench"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        data = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"more than {MAX_BYTES} bytes")
    return data


def _download(spec, target: Path) -> dict | None:
    """The model's file from RobustBench's repository, saved at ``target``; None (with a warning)
    when that fails."""
    from pagbench.plugin import write_atomic

    url = RAW_URL.format(dataset=quote(spec.dataset), threat_model=quote(spec.threat_model), name=quote(spec.model))
    try:
        data = _fetch(url)
        info = parse(data, spec.threat_model, url)
        write_atomic(target, lambda stream: stream.write(data))
    except Exception as error:  # a warning, not an error: the model is evaluated without the information
        detail = " ".join(str(error).split())[:160] or type(error).__name__
        warnings.warn(f"could not get RobustBench's model information for robustbench:{spec.key} from {url}: {detail}", stacklevel=3)
        return None
    return info


def find(spec, options: dict, model_dir: Path | None, download: bool = True) -> tuple[dict | None, dict]:
    """``(information or None, provenance)`` for the model ``spec`` names; see the module doc.
    ``download=False`` reads local files only (the card built from a name alone)."""
    tried = []
    if options.get("model_info") not in (None, ""):
        path = _option_dir(options["model_info"]) / relative_path(spec)
        if path.is_file():
            return read(path, spec.threat_model), {"info_source": "--model-option model_info", "info_file": str(path.resolve())}
        tried.append(str(path))
    if model_dir is not None:
        path = Path(model_dir) / "model_info" / relative_path(spec)
        if path.is_file():
            return read(path, spec.threat_model), {"info_source": "model directory", "info_file": str(path.resolve())}
        tried.append(str(path))
        if download and not _offline():
            info = _download(spec, path)
            if info is not None:
                url = RAW_URL.format(dataset=spec.dataset, threat_model=spec.threat_model, name=spec.model)
                return info, {"info_source": f"downloaded from {url}", "info_file": str(path.resolve())}
            tried.append("RobustBench's repository (download failed)")
        elif download:
            tried.append("no download (PAGBENCH_OFFLINE is set)")
    return None, {"info_source": NONE, "info_tried": tried}
