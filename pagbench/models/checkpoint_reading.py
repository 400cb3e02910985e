"""Reading weights files safely (imports torch); fitting them is :mod:`pagbench.models.checkpoint_fitting`.

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


Unwrapping (:func:`unwrap`): wrappers ``{'state_dict' | 'model' | 'model_state_dict' | 'net' | 'ema' |
...: weights}`` are unwrapped (``key`` picks one explicitly, e.g. ``ema``).
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


# ----------------------------------------------------------------------------------------- reading
def one_line(error: BaseException, limit: int = 160) -> str:
    """``error``'s message on one line (whitespace runs collapsed), at most ``limit`` characters
    (cut with an ellipsis); the exception's class name when it has no message."""
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
        raise PagbenchError(f"weights file {path} has a corrupt safetensors header ({one_line(error)})") from error
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
            raise PagbenchError(f"weights file {path} is truncated or corrupt (its zip directory is unreadable: {one_line(error)})") from error
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
            raise PagbenchError(f"weights file {path} is a corrupt safetensors file: {one_line(error)}") from error
        return Checkpoint(path, kind, sha256, content)
    if kind == "torchscript":
        if not trust:
            raise PagbenchError(f"weights file {path} is a TorchScript program: loading it runs code stored in the file; {TRUST_HINT}")
        try:
            content = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise PagbenchError(f"weights file {path}: TorchScript could not be loaded ({one_line(error)})") from error
        return Checkpoint(path, kind, sha256, content, trusted_load=True)
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with allow(_SAFE_GLOBALS) if allow else contextlib.nullcontext():
            content = torch.load(path, map_location="cpu", weights_only=True)
        return Checkpoint(path, kind, sha256, content)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise PagbenchError(f"weights file {path} is truncated or corrupt ({one_line(error)})") from error
        refused = error
    except Exception as error:  # truncated or corrupt data: any exception the reader happens to raise
        raise PagbenchError(f"weights file {path} is truncated or corrupt ({one_line(error)})") from error
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
            f"weights file {path} could not be unpickled ({type(error).__name__}: {one_line(error)}); "
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

