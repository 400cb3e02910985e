"""Reading weights files safely and fitting them to an architecture strictly (imports torch).

Reading (:func:`read_checkpoint`):

* The format is recognised from the file's first bytes, never its name: PyTorch zip
  (``torch.save``), legacy PyTorch pickle, safetensors, TorchScript. HTML pages (a download
  that returned a login or error page), Git LFS pointers, other text, empty, truncated and
  corrupt files are refused with a one-line :class:`~pagbench.errors.PagbenchError`.
* PyTorch files are always read with ``torch.load(weights_only=True)``, which cannot run code.
  Full pickled modules (and anything else that needs arbitrary unpickling) and TorchScript
  programs run code from the file when loaded: they are read only with ``trust=True``
  (``--trust-checkpoint``).
* ``inert_objects=True`` reads files whose *metadata* weights-only loading refuses (a
  dill-pickled ``args``, a cox ``Parameters``, a numpy scalar next to the weights): it is read
  again by a restricted unpickler that rebuilds only tensors and plain containers and replaces
  every other class or function by an :class:`InertObject` placeholder, which records what the
  pickle passed to it and is never the file's code: nothing from the file is imported, called or
  run. If the weights themselves are such an object (a whole pickled module), the file is refused
  as without the flag.

Fitting (:func:`fit_checkpoint`):

* Wrappers ``{'state_dict' | 'model' | 'model_state_dict' | 'net' | 'ema' | ...: weights}`` are
  unwrapped (``key`` picks one explicitly, e.g. ``ema``).
* The robustness library's layout (``module.model.*`` the network, ``module.attacker.*`` a copy
  of it, ``module.normalizer.new_mean`` / ``new_std`` its normalisation; with or without the
  ``module.`` of DataParallel) keeps the network, drops the attacker and uses the normaliser's
  mean and std. That normaliser clamps its input to [0,1] first, and the clamp is part of the
  model (zero input gradient at pixels at or beyond 0 and 1; outputs that ignore how far a
  perturbed pixel leaves [0,1]): it is kept, on the architecture's normalisation layer, and the
  card's ``input_clamp`` says so (``clamp=False`` drops it, and says that instead).
* State dicts of the ``Sequential(Normalize, model)`` that older ``with_normalization`` built
  (``0.mean``, ``0.std``, ``1.*``) load into today's wrapper (``normalize.*``, ``network.*``).
* Prefixes ``module.`` (DataParallel), ``model.`` and ``_orig_mod.`` (``torch.compile``) are
  stripped from the start of keys (``startswith``, never a substring) when that makes more keys
  match the architecture.
* Normalisation buffers stored in the checkpoint (``normalize.mean/std``, ``mean/std``,
  ``mu/sigma``) replace the architecture's default normalisation; without them the default stays
  and the card says so.
* Loading is strict: any missing, unexpected or wrongly shaped key is an error whose one line
  lists them. The only tolerated gaps are BatchNorm's ``num_batches_tracked`` counters (unused in
  eval mode) and normalisation buffers (the architecture's defaults are kept). A classifier head
  whose class count differs from the dataset's is refused unless ``replace_head=True``, which
  keeps the architecture's freshly initialised head and marks the model as needing fine-tuning.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from pagbench.errors import PagbenchError

TRUST_HINT = "pass --trust-checkpoint only if you trust where the file came from"

#: Keys under which training scripts store the weights, in order of preference.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "network", "ema", "state_dict_ema", "model_ema")
#: Prefixes that wrappers add to every key (DataParallel / DDP, a ``model`` attribute, torch.compile).
PREFIXES = ("module.", "model.", "_orig_mod.")
#: (mean key, std key) pairs under which checkpoints store their input normalisation.
NORMALIZATION_KEYS = (
    ("normalizer.new_mean", "normalizer.new_std"),
    ("normalize.mean", "normalize.std"),
    ("normalization.mean", "normalization.std"),
    ("mean", "std"),
    ("mu", "sigma"),
)

# Plain-data classes that training scripts commonly pickle next to the weights; rebuilding them
# runs no code from the file, so weights-only loading may accept them.
_SAFE_GLOBALS = [argparse.Namespace]


@dataclass
class Checkpoint:
    """A weights file as read from disk: ``content`` is whatever it held (a dict of tensors, a
    wrapper dict, or — trusted files only — a ``torch.nn.Module``)."""

    path: Path
    format: str  # "torch", "torch-legacy", "safetensors" or "torchscript"
    sha256: str
    content: Any
    trusted_load: bool = False  # True when reading it needed --trust-checkpoint
    inert_objects: list[str] = field(default_factory=list)  # globals read as InertObject placeholders


@dataclass
class FitReport:
    """How a checkpoint was fitted to an architecture (recorded as the model card's provenance)."""

    wrapper_keys: list[str] = field(default_factory=list)
    layout: str = "state dict"
    stripped_prefixes: list[str] = field(default_factory=list)
    normalization: str = "architecture default"
    mean: list[float] | None = None
    std: list[float] | None = None
    replaced_head: list[str] = field(default_factory=list)
    checkpoint_classes: int | None = None
    tolerated_missing: list[str] = field(default_factory=list)
    clamp: str | None = None  # what happens to pixels outside [0,1] (set for robustness-library layouts)

    def as_dict(self) -> dict:
        data = {
            "checkpoint_keys": self.wrapper_keys,
            "layout": self.layout,
            "stripped_prefixes": self.stripped_prefixes,
            "normalization": self.normalization,
        }
        if self.mean is not None:
            data.update(mean=self.mean, std=self.std)
        if self.replaced_head:
            data.update(replaced_head=self.replaced_head, checkpoint_classes=self.checkpoint_classes)
        if self.tolerated_missing:
            data["defaults_kept_for"] = self.tolerated_missing
        if self.clamp is not None:
            data["input_clamp"] = self.clamp
        return data


# ----------------------------------------------------------------------------------------- reading
def _one_line(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _check_safetensors_extent(path: Path, size: int, header_length: int) -> None:
    """A safetensors file is an 8-byte header length, a JSON header and the tensor data; the
    header says where every tensor ends, so a cut file is recognised before reading any data."""
    if header_length > size - 8:
        raise PagbenchError(f"weights file {path} is a truncated safetensors file ({size} bytes; its header alone needs {header_length + 8})")
    try:
        with open(path, "rb") as stream:
            stream.seek(8)
            header = json.loads(stream.read(header_length))
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise PagbenchError(f"weights file {path} has a corrupt safetensors header ({_one_line(error)})") from error
    if 8 + header_length + end > size:
        raise PagbenchError(f"weights file {path} is a truncated safetensors file ({size} bytes of {8 + header_length + end})")


def sniff_format(path: Path) -> str:
    """The weights format of ``path`` from its first bytes, or a one-line error saying what the
    file is instead (missing, empty, HTML, Git LFS pointer, text, truncated, foreign zip)."""
    if not path.exists():
        raise PagbenchError(f"weights file {path} does not exist")
    if path.is_dir():
        raise PagbenchError(f"weights file {path} is a directory, not a file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            head = stream.read(4096)
    except OSError as error:
        raise PagbenchError(f"cannot read weights file {path}: {error.strerror or error}") from error
    if size == 0:
        raise PagbenchError(f"weights file {path} is empty")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise PagbenchError(f"weights file {path} is truncated or corrupt (its zip directory is unreadable: {_one_line(error)})") from error
        if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
            return "torchscript"
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return "torch"
        shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
        raise PagbenchError(f"weights file {path} is a zip archive but not a PyTorch checkpoint (it holds {shown})")
    if len(head) >= 9 and head[8:9] == b"{":
        _check_safetensors_extent(path, size, int.from_bytes(head[:8], "little"))
        return "safetensors"
    if head.startswith(b"\x80"):
        return "torch-legacy"  # pickle protocol >= 2: torch.save(..., _use_new_zipfile_serialization=False)
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in stripped[:1024]:
        raise PagbenchError(
            f"weights file {path} is an HTML page ({size} bytes), not weights: the download probably returned "
            "a login, consent or error page; download the file itself"
        )
    if head.startswith(b"version https://git-lfs"):
        raise PagbenchError(f"weights file {path} is a Git LFS pointer, not the weights: fetch them with 'git lfs pull'")
    if _looks_like_text(head):
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:60] if head.strip() else ""
        raise PagbenchError(f"weights file {path} is a text file (starting {first!r}), not weights")
    raise PagbenchError(
        f"weights file {path} is not a recognised weights format (PyTorch .pt/.pth/.bin, safetensors or TorchScript); "
        "it may be corrupt"
    )


def _unsupported_global(error: BaseException) -> str:
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else "a Python object"


class InertObject:
    """Stands in for a pickled class or function that weights-only loading refuses.

    Unpickling "calls" it (REDUCE / NEWOBJ / BUILD) with what the file stored; it only records
    that: ``args`` (positional arguments) and ``state`` (what ``__setstate__`` received). Calling
    a placeholder's result gives another placeholder. Nothing from the file is imported or run.
    ``pickled_as`` is the global's dotted name.
    """

    pickled_as = "?"

    def __new__(cls, *args, **kwargs):
        if not isinstance(cls, type):  # NEWOBJ whose "class" is itself a placeholder's result
            cls = type(cls)
        instance = object.__new__(cls)
        instance.args, instance.state = args, None
        return instance

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return type(self)(*args)

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.pickled_as}: not unpickled>"


def _inert_class(full_name: str) -> type:
    return type(full_name.rsplit(".", 1)[-1], (InertObject,), {"pickled_as": full_name, "__module__": __name__})


def _inert_weights(content) -> bool:
    """True if the weights themselves (the top level, or a wrapper key's value) are placeholders."""
    if isinstance(content, InertObject):
        return True
    return isinstance(content, Mapping) and any(isinstance(content.get(key), InertObject) for key in WRAPPER_KEYS)


def _plain_data_globals() -> dict:
    """The globals a restricted read rebuilds for real: what ``torch.save`` of tensors and plain
    containers needs (tensor and parameter rebuilders, dtypes, ``torch.Size``, ``OrderedDict``,
    bytes via ``_codecs.encode``, sets) and :data:`_SAFE_GLOBALS`. Storage classes are resolved by
    torch itself. Everything else becomes an :class:`InertObject`."""
    import _codecs
    import collections

    allowed = {"collections.OrderedDict": collections.OrderedDict, "_codecs.encode": _codecs.encode, "torch.Size": torch.Size,
               "torch.device": torch.device, "builtins.set": set, "builtins.frozenset": frozenset,
               "builtins.bytearray": bytearray, "builtins.complex": complex, "builtins.slice": slice}
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter", "_rebuild_parameter_with_state"):
        if hasattr(torch._utils, name):
            allowed[f"torch._utils.{name}"] = getattr(torch._utils, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[f"torch.{name}"] = getattr(torch, name)
    allowed.update({f"{g.__module__}.{g.__qualname__}": g for g in _SAFE_GLOBALS})
    return allowed


def _restricted_pickle_module(replaced: set):
    """A ``pickle_module`` for ``torch.load`` whose unpickler (pure Python) resolves only
    :func:`_plain_data_globals` and replaces every other global by an :class:`InertObject`
    subclass (recording its name in ``replaced``); BUILD only sets the state of placeholders,
    ``OrderedDict``, ``argparse.Namespace``, tensors and parameters (as weights-only loading
    does), never of a class or function. Torch's own wrapper still reads the tensor storages."""
    import _compat_pickle
    import types

    allowed = _plain_data_globals()
    buildable = (InertObject, dict, argparse.Namespace, torch.Tensor)

    class RestrictedUnpickler(pickle._Unpickler):
        dispatch = dict(pickle._Unpickler.dispatch)

        def find_class(self, module, name):
            if self.proto < 3 and self.fix_imports:
                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
            full_name = f"{module}.{name}"
            if full_name in allowed:
                return allowed[full_name]
            replaced.add(full_name)
            return _inert_class(full_name)

        def load_build(self):
            state = self.stack.pop()
            instance = self.stack[-1]
            if isinstance(instance, type) or not isinstance(instance, buildable):
                raise pickle.UnpicklingError(f"refusing to set the state of a {type(instance).__name__}")
            if type(instance) is torch.Tensor:  # legacy tensor state, as weights-only loading allows it
                instance.set_(*state)
                return
            if isinstance(instance, InertObject) or type(instance) is torch.nn.Parameter:
                instance.__setstate__(state)
                return
            if isinstance(instance, torch.Tensor):
                raise pickle.UnpicklingError(f"refusing to set the state of a {type(instance).__name__}")
            if isinstance(state, tuple) and len(state) == 2:
                state, slots = state
                if slots:
                    raise pickle.UnpicklingError("refusing slot state")
            if state:
                instance.__dict__.update(state)

        dispatch[pickle.BUILD[0]] = load_build

    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()

    module = types.ModuleType("pagbench_restricted_pickle")
    module.Unpickler, module.load = RestrictedUnpickler, load
    return module


def _load_with_inert_objects(path: Path):
    """Read ``path`` with the restricted unpickler of :func:`_restricted_pickle_module`; returns
    (content, the names replaced by placeholders)."""
    replaced: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "couldn't retrieve source code for container"
        content = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle_module(replaced))
    return content, sorted(replaced)


def read_checkpoint(path, trust: bool = False, inert_objects: bool = False) -> Checkpoint:
    """Read a weights file without running code from it (unless ``trust``); see the module doc.

    ``inert_objects``: refused metadata objects become :class:`InertObject` placeholders instead
    of making the file unreadable (never for the weights themselves).
    """
    path = Path(path).expanduser()
    kind = sniff_format(path)
    if kind in ("torch", "torchscript"):
        from pagbench.files.integrity import verify_archive

        verify_archive(path)  # torch.load does not check the zip's CRCs: a flipped bit would load
    sha256 = sha256_of(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            content = load_file(str(path), device="cpu")
        except Exception as error:
            raise PagbenchError(f"weights file {path} is a corrupt safetensors file: {_one_line(error)}") from error
        return Checkpoint(path, kind, sha256, content)
    if kind == "torchscript":
        if not trust:
            raise PagbenchError(f"weights file {path} is a TorchScript program: loading it runs code stored in the file; {TRUST_HINT}")
        try:
            content = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise PagbenchError(f"weights file {path}: TorchScript could not be loaded ({_one_line(error)})") from error
        return Checkpoint(path, kind, sha256, content, trusted_load=True)
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with allow(_SAFE_GLOBALS) if allow else contextlib.nullcontext():
            content = torch.load(path, map_location="cpu", weights_only=True)
        return Checkpoint(path, kind, sha256, content)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise PagbenchError(f"weights file {path} is truncated or corrupt ({_one_line(error)})") from error
        refused = error
    except Exception as error:  # truncated or corrupt data: any exception the reader happens to raise
        raise PagbenchError(f"weights file {path} is truncated or corrupt ({_one_line(error)})") from error
    if inert_objects and not trust:
        try:
            content, names = _load_with_inert_objects(path)
        except Exception:  # anything the placeholders cannot stand in for: refused below
            content, names = None, []
        if names and content is not None and not _inert_weights(content):
            return Checkpoint(path, kind, sha256, content, inert_objects=names)
    if not trust:
        raise PagbenchError(
            f"weights file {path} holds pickled Python objects ({_unsupported_global(refused)}), e.g. a whole model rather than a "
            f"state dict; safe loading refuses them because unpickling runs code from the file; {TRUST_HINT}"
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise PagbenchError(
            f"weights file {path} could not be unpickled ({type(error).__name__}: {_one_line(error)}); "
            "the code that defines its classes must be importable"
        ) from error
    return Checkpoint(path, kind, sha256, content, trusted_load=True)


# -------------------------------------------------------------------------------------- unwrapping
def unwrap(checkpoint: Checkpoint, key: str | None = None):
    """``(weights, wrapper_keys)``: ``weights`` is a dict of tensors or a ``torch.nn.Module``."""
    content, trail = checkpoint.content, []
    for _ in range(4):
        if isinstance(content, torch.nn.Module):
            return content, trail
        if not isinstance(content, Mapping):
            raise PagbenchError(f"{checkpoint.path} holds a {type(content).__name__}" + (f" under {'/'.join(trail)}" if trail else "") + ", not weights")
        if key is not None:
            if key not in content:
                raise PagbenchError(f"{checkpoint.path} has no {key!r} entry (it has {', '.join(map(str, list(content)[:8]))})")
            content = content[key]
            trail.append(key)
            key = None
            continue
        tensors = {name: value for name, value in content.items() if isinstance(value, torch.Tensor)}
        if tensors and len(tensors) == len(content):
            return dict(content), trail
        wrapper = next((name for name in WRAPPER_KEYS if isinstance(content.get(name), (Mapping, torch.nn.Module))), None)
        if wrapper is None:
            if tensors:
                return tensors, trail  # a state dict with a few non-tensor extras: the extras are not weights
            shown = ", ".join(map(str, list(content)[:8])) or "nothing"
            raise PagbenchError(f"{checkpoint.path} holds no weights (its entries: {shown}); choose one with --model-option checkpoint_key=KEY")
        content = content[wrapper]
        trail.append(wrapper)
    raise PagbenchError(f"{checkpoint.path}: weights nested deeper than expected under {'/'.join(trail)}")


# ----------------------------------------------------------------------------------------- fitting
def _listing(keys, limit: int = 4) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else ("es" if word.endswith("ch") else "s"))


def _shape(tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


#: What the card says about pixels outside [0,1] for robustness-library checkpoints.
CLAMP_KEPT = "clamped to [0,1] before normalisation, as the robustness library's InputNormalize does (zero gradient at pixels at or beyond 0 and 1)"
CLAMP_DROPPED = "none: pixels outside [0,1] pass unclamped (clamp=false; the robustness library itself clamps them to [0,1])"
CLAMP_UNAVAILABLE = (
    "none: the architecture's normalisation layer cannot clamp, but the robustness library clamps inputs to [0,1]; "
    "outputs differ for inputs outside [0,1] and gradients at pixels at 0 or 1"
)


def is_robustness_layout(state: Mapping) -> bool:
    """The robustness library's ``AttackerModel`` layout: ``[module.]model.*`` next to
    ``[module.]attacker.*`` and/or ``[module.]normalizer.*``."""
    keys = [key[len("module.") :] if key.startswith("module.") else key for key in state]
    return any(k.startswith("model.") for k in keys) and any(k.startswith(("attacker.", "normalizer.")) for k in keys)


def split_robustness_layout(state: Mapping):
    """An ``AttackerModel`` state dict (``[module.]model.*``, ``[module.]attacker.*``,
    ``[module.]normalizer.new_mean/new_std``) → (the network's weights, (new_mean, new_std) or
    None). The attacker's copy of the network is dropped."""
    plain = {(key[len("module.") :] if key.startswith("module.") else key): value for key, value in state.items()}
    mean, std = plain.get("normalizer.new_mean"), plain.get("normalizer.new_std")
    network = {key[len("model.") :]: value for key, value in plain.items() if key.startswith("model.")}
    return network, ((mean, std) if mean is not None and std is not None else None)


def _from_legacy_sequential(state: dict) -> dict:
    """``0.mean``/``0.std``/``1.*`` (the Sequential that older ``with_normalization`` built) →
    ``normalize.*``/``network.*``; other state dicts unchanged."""
    if "0.mean" not in state or "0.std" not in state:
        return state
    rest = [key for key in state if key not in ("0.mean", "0.std")]
    if not rest or not all(key.startswith("1.") for key in rest):
        return state
    renamed = {"normalize.mean": state["0.mean"], "normalize.std": state["0.std"]}
    renamed.update({"network." + key[2:]: state[key] for key in rest})
    return renamed


def _strip_candidates(state: dict) -> list[tuple[dict, list[str]]]:
    """``state`` with up to three wrapper prefixes stripped (each from the keys that start with
    it), every combination, with the prefixes removed."""
    candidates = [(state, [])]
    frontier = candidates
    for _ in range(3):
        following = []
        for current, removed in frontier:
            for prefix in PREFIXES:
                if not any(key.startswith(prefix) for key in current):
                    continue
                stripped = {(key[len(prefix) :] if key.startswith(prefix) else key): value for key, value in current.items()}
                if len(stripped) == len(current):  # stripping must not merge two keys
                    following.append((stripped, removed + [prefix]))
        candidates = candidates + following
        frontier = following
    return candidates


def _as_normalization(values, reference, what: str, source: str):
    tensor = torch.as_tensor(values).detach().to(torch.float32).flatten()
    if tensor.numel() == 1 and reference.numel() > 1:
        tensor = tensor.expand(reference.numel())
    if tensor.numel() != reference.numel():
        raise PagbenchError(f"{source}: its normalisation {what} has {tensor.numel()} values, the architecture's has {reference.numel()}")
    if not bool(torch.isfinite(tensor).all()):
        raise PagbenchError(f"{source}: its normalisation {what} holds non-finite values {tensor.tolist()}")
    if what == "std" and not bool((tensor > 0).all()):
        raise PagbenchError(f"{source}: its normalisation std must be positive, got {tensor.tolist()}")
    return tensor.reshape(reference.shape).clone()


def fit_checkpoint(
    module: torch.nn.Module,
    state: Mapping,
    *,
    num_classes: int,
    replace_head: bool = False,
    normalization: tuple | None = None,
    source: str = "checkpoint",
    architecture: str = "the architecture",
    report: FitReport | None = None,
    clamp: bool | None = None,
) -> FitReport:
    """Load ``state`` (a dict of tensors) into ``module`` strictly; see the module doc.

    ``module`` is an untrained architecture, e.g. a :class:`pagbench.models.wrappers.ImageClassifier`
    (the weights then load into ``module.network``, or into the whole wrapper if the keys say so).
    ``normalization`` = (mean, std) given by the user overrides any normalisation in ``state``.
    ``num_classes`` is the dataset's class count. ``clamp``: None clamps inputs to [0,1] for
    robustness-library layouts only (as that library does), True / False force it on / off (on
    normalisation layers made by :func:`pagbench.models.loading.normalize_module`). Raises a one-line
    :class:`PagbenchError`.
    """
    from pagbench.models.wrappers import ImageClassifier, normalizers

    report = report or FitReport()
    state = {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not state:
        raise PagbenchError(f"{source} holds no tensors")
    found_normalization = None
    robustness = is_robustness_layout(state)
    if robustness:
        state, stored = split_robustness_layout(state)
        report.layout = "robustness library: module.model.* kept, module.attacker.* and module.normalizer.* dropped"
        if stored is not None:
            found_normalization = (*stored, "checkpoint (robustness library module.normalizer.new_mean/new_std)")
    elif isinstance(module, ImageClassifier):
        legacy = _from_legacy_sequential(state)
        if legacy is not state:
            state = legacy
            report.layout = "Sequential(Normalize, network) of older with_normalization: 0.* -> normalize.*, 1.* -> network.*"

    targets = [("", module)]
    if isinstance(module, ImageClassifier):
        targets.append(("network", module.network))
    best = None
    for target_name, target in targets:
        expected_keys = set(target.state_dict())
        for candidate, removed in _strip_candidates(state):
            score = (len(expected_keys & candidate.keys()), -len(removed), -len(target_name))
            if best is None or score > best[0]:
                best = (score, target_name, target, candidate, removed)
    _, target_name, target, state, report.stripped_prefixes = best
    state = dict(state)
    expected = target.state_dict()

    for mean_key, std_key in NORMALIZATION_KEYS:
        if mean_key in state and std_key in state and mean_key not in expected and std_key not in expected:
            mean, std = state.pop(mean_key), state.pop(std_key)
            if found_normalization is None:
                found_normalization = (mean, std, f"checkpoint ({mean_key}/{std_key})")

    inner_normalizers = {name: child for name, child in normalizers(target).items()}
    normalizer_keys = {f"{name}.{buffer}" if name else buffer for name in inner_normalizers for buffer in ("mean", "std")}
    missing = [key for key in expected if key not in state]
    report.tolerated_missing = [key for key in missing if key.endswith("num_batches_tracked") or key in normalizer_keys]
    missing = [key for key in missing if key not in report.tolerated_missing]
    unexpected = [key for key in state if key not in expected]
    mismatched = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]

    head = [
        key
        for key in mismatched
        if state[key].ndim == expected[key].ndim >= 1
        and expected[key].shape[0] == num_classes
        and state[key].shape[1:] == expected[key].shape[1:]
    ]
    head_classes = {int(state[key].shape[0]) for key in head}
    if head and head == mismatched and len(head_classes) == 1 and not missing and not unexpected:
        classes = head_classes.pop()
        if not replace_head:
            raise PagbenchError(
                f"{source} has a {classes}-class classifier ({_listing(head)}) but the dataset has {num_classes} classes: "
                f"pagbench does not score a model on labels it was not trained for; pass --replace-head to put an untrained "
                f"{num_classes}-class head on it (the result is then marked requires_finetuning)"
            )
        for key in head:
            state.pop(key)
        report.replaced_head, report.checkpoint_classes, mismatched = head, classes, []

    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{_plural(len(missing), 'missing key')}: {_listing(missing)}")
        if unexpected:
            parts.append(f"{_plural(len(unexpected), 'unexpected key')}: {_listing(unexpected)}")
        if mismatched:
            shown = [f"{key} (checkpoint {_shape(state[key])}, model {_shape(expected[key])})" for key in mismatched]
            parts.append(f"{_plural(len(mismatched), 'shape mismatch')}: {_listing(shown, 3)}")
        matched = len(expected) - len(missing) - len(report.tolerated_missing) - len(mismatched)
        hint = f"; only {matched} of {len(expected)} keys fit: is the architecture right?" if matched < len(expected) / 2 else ""
        stripped = f" (after stripping {', '.join(report.stripped_prefixes)})" if report.stripped_prefixes else ""
        raise PagbenchError(f"{source} does not fit {architecture}{stripped}: " + "; ".join(parts) + hint)

    merged = {key: state.get(key, value) for key, value in expected.items()}
    target.load_state_dict(merged, strict=True)

    if normalization is not None:
        found_normalization = (normalization[0], normalization[1], "model options mean/std")
    all_normalizers = normalizers(module)
    for name, normalizer in all_normalizers.items():
        for buffer in ("mean", "std"):
            values = getattr(normalizer, buffer)
            if not bool(torch.isfinite(values).all()):
                raise PagbenchError(f"{source}: its normalisation {buffer} ({name + '.' if name else ''}{buffer}) holds non-finite values {values.flatten().tolist()}")
    if found_normalization is not None:
        mean, std, where = found_normalization
        if len(all_normalizers) != 1:
            count = "no" if not all_normalizers else str(len(all_normalizers))
            raise PagbenchError(f"{source} comes with an input normalisation but {architecture} has {count} normalisation layers to put it in")
        (normalizer,) = all_normalizers.values()
        normalizer.mean.copy_(_as_normalization(mean, normalizer.mean, "mean", source))
        normalizer.std.copy_(_as_normalization(std, normalizer.std, "std", source))
        report.normalization = where
        report.tolerated_missing = [key for key in report.tolerated_missing if key not in normalizer_keys]
    elif all_normalizers and any(key in normalizer_keys for key in state):
        report.normalization = "checkpoint (the architecture's normalisation buffers)"
    if len(all_normalizers) == 1:
        (normalizer,) = all_normalizers.values()
        report.mean, report.std = normalizer.mean.flatten().tolist(), normalizer.std.flatten().tolist()
    wanted = robustness if clamp is None else bool(clamp)
    can_clamp = len(all_normalizers) == 1 and hasattr(next(iter(all_normalizers.values())), "clamp")
    if robustness or clamp is not None:
        if can_clamp:
            next(iter(all_normalizers.values())).clamp = wanted
        if wanted and not can_clamp:
            report.clamp = CLAMP_UNAVAILABLE
            if clamp:
                raise PagbenchError(f"{architecture} has no pagbench normalisation layer that could clamp its input to [0,1]")
        elif wanted:
            report.clamp = CLAMP_KEPT if robustness else "clamped to [0,1] before normalisation"
        else:
            report.clamp = CLAMP_DROPPED if robustness else "none"
    return report
