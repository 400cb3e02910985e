"""Scores from NVlabs EDM / EDM2 network pickles, loaded without NVIDIA's code.

An EDM network pickle is a dict whose ``'ema'`` entry is the preconditioned denoiser
``D(x; σ, class_labels)``. Its class is not importable: the pickle stores the defining module's
source code, and each such object reduces to ``torch_utils.persistence._reconstruct_persistent_obj``
applied to ``meta = {type: 'class', version, module_src, class_name, state}``.

:func:`load_network_pickle` first reads the file with :mod:`.edm_restricted`, which executes
nothing from it: the published architectures (SongUNet DDPM++/NCSN++, DhariwalUNet/ADM under
EDM/VP/VE/iDDPM preconditioning) are rebuilt as pagbench's own modules (:mod:`.edm_networks`,
:mod:`.edm_preconditioning`) from the recorded constructor arguments and filled with the file's
tensors, no trust needed. Only a file of other classes needs its embedded ``module_src`` executed —
arbitrary code — which is refused unless trusted. With trust, :class:`NetworkUnpickler` resolves the
persistence globals to pagbench's own implementations (a fresh module per embedded source;
stand-in ``torch_utils`` / ``dnnlib`` modules while that source is executed, unless the real
packages are importable), storages through ``torch.load(weights_only=True)``, and allows other
globals only from torch, numpy, collections and a few builtins. Only the network has to come back:
an object whose embedded module cannot run here (EDM2 snapshots also hold their training loss,
whose module imports psutil and training-only ``torch_utils`` parts) unpickles to an
:class:`UnavailableObject`, and :func:`network_of` refuses an ``'ema'`` that is or holds one.

Units: EDM works on images in [−1, 1] with σ in those units, so for [0,1] images x and σ:
x₋₁ = 2x − 1, σ₋₁ = 2σ, score₋₁ = (D(x₋₁; σ₋₁) − x₋₁)/σ₋₁², and score₀₁ = 2·score₋₁.
Pretrained pickles: https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/ (e.g.
``edm-cifar10-32x32-cond-vp.pkl``, ``edm-imagenet-64x64-cond-adm.pkl``; CC BY-NC-SA 4.0).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import linecache
import pickle
import sys
import types
from pathlib import Path

from pagbench.plugin import PagbenchError
from pagbench.plugin import offline

from .edm_restricted import AttributeDict, NotImplementedHere, OwnNetworkMismatch, SafeUnpickler, own_network_contents, read_records

TRUST_HINT = ("unpickling it runs code stored in the file; pass --trust-pickle "
              "(or --provider-option trust_pickle=1) only if you trust its source")


# --------------------------------------------------------------------------------- stand-ins
def _persistent_class(cls):
    """Stand-in for ``torch_utils.persistence.persistent_class``: the class itself."""
    return cls


def _const_like(reference, value, shape=None, dtype=None, device=None, memory_format=None):
    """Stand-in for ``torch_utils.misc.const_like``: a constant tensor like ``reference``."""
    import torch

    tensor = torch.as_tensor(value, dtype=dtype or reference.dtype, device=device or reference.device)
    return tensor.expand(shape) if shape is not None else tensor


def _missing(module_name):
    def __getattr__(name):
        raise PagbenchError(f"the network pickle's code uses {module_name}.{name}, which pagbench does not provide; "
                            f"put NVlabs' {module_name.split('.')[0]} package on PYTHONPATH")

    return __getattr__


def _stand_in_modules() -> dict[str, types.ModuleType]:
    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")
    persistence.persistent_class = _persistent_class
    persistence.__getattr__ = _missing("torch_utils.persistence")
    misc = types.ModuleType("torch_utils.misc")
    misc.const_like = _const_like
    misc.__getattr__ = _missing("torch_utils.misc")
    torch_utils.persistence, torch_utils.misc = persistence, misc
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = dnnlib.EasyDict = AttributeDict
    util.__getattr__ = _missing("dnnlib.util")
    dnnlib.util = util
    return {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "torch_utils.misc": misc,
            "dnnlib": dnnlib, "dnnlib.util": util}


@contextlib.contextmanager
def _imports_for_embedded_code():
    """Make ``torch_utils`` / ``dnnlib`` importable while embedded source runs (the real packages
    when installed, else the stand-ins), restoring ``sys.modules`` afterwards."""
    stand_ins = {}
    for name, module in _stand_in_modules().items():
        root = name.split(".")[0]
        if name not in sys.modules and importlib.util.find_spec(root) is None:
            stand_ins[name] = module
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name in stand_ins:
            if sys.modules.get(name) is stand_ins[name]:
                del sys.modules[name]


# ------------------------------------------------------------------------------ reconstruction
_MODULES: dict[str, types.ModuleType | str] = {}  # source digest -> module, or why its code failed


class UnavailableObject:
    """What a persistent object becomes when its embedded module cannot be executed here."""

    def __init__(self, class_name: str, reason: str):
        self.class_name, self.reason = class_name, reason

    def __repr__(self):
        return f"<unavailable {self.class_name}: {self.reason}>"


def module_from_source(source: str) -> types.ModuleType:
    """Execute ``source`` in a fresh module (one per distinct source text). This runs code.
    Raises ``ImportError`` (also on later calls) when the source cannot be executed."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    if digest not in _MODULES:
        name = f"_pagbench_edm_{digest}"
        module = types.ModuleType(name)
        module.__file__ = f"<network pickle source {digest}>"
        sys.modules[name] = module  # dataclasses and the like look their module up
        # inspect.getsource finds the text here: NVlabs' own persistent_class reads it when the real
        # torch_utils is importable; tracebacks through the embedded code show its lines too
        linecache.cache[module.__file__] = (len(source), None, source.splitlines(True), module.__file__)
        try:
            with _imports_for_embedded_code():
                exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 — trusted by the user
        except Exception as error:
            del sys.modules[name]
            message = str(error).splitlines()[0] if str(error) else ""
            _MODULES[digest] = f"its code failed: {type(error).__name__}: {message}"
        else:
            _MODULES[digest] = module
    if isinstance(_MODULES[digest], str):
        raise ImportError(_MODULES[digest])
    return _MODULES[digest]


def reconstruct_persistent_object(meta):
    """Our implementation of the ``_reconstruct_persistent_obj`` contract: build the class from
    the embedded source, make an instance without calling ``__init__``, restore its state."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "module_src" not in meta or "class_name" not in meta:
        raise pickle.UnpicklingError("unsupported persistent object record in the network pickle")
    try:
        module = module_from_source(meta["module_src"])
    except ImportError as error:
        return UnavailableObject(str(meta["class_name"]), str(error))
    cls = module
    for part in meta["class_name"].split("."):
        cls = getattr(cls, part)
    instance = cls.__new__(cls)
    state = meta.get("state") or {}
    setstate = getattr(instance, "__setstate__", None)
    if callable(setstate):
        setstate(dict(state))
    else:
        instance.__dict__.update(state)
    return instance


class NetworkUnpickler(SafeUnpickler):
    """The trusted reader: :class:`~.edm_restricted.SafeUnpickler`'s names (dnnlib, storages via
    ``weights_only`` loading, the exact safe globals), persistent objects rebuilt by executing their
    embedded source, and — since that code runs anyway — any global from torch, numpy, collections
    and a few more builtins."""

    SPECIAL = {**SafeUnpickler.SPECIAL,
               ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent_object}
    ROOTS = ("torch", "numpy", "collections", "copyreg", "_codecs")
    BUILTINS = {"set", "frozenset", "slice", "range", "complex", "bytearray", "object", "dict", "list", "tuple",
                "int", "float", "bool", "str", "bytes", "getattr"}

    def allowed(self, module, name):
        return (super().allowed(module, name) or (module == "builtins" and name in self.BUILTINS)
                or module.split(".")[0] in self.ROOTS)


# ---------------------------------------------------------------------------------- the file
def fetch_url(location: str, sha256: str | None = None, option: str = "sha256") -> Path:
    """Download an http(s) URL once into ``<cache dir>/downloads/<hash of the URL>/<name>`` with
    pagbench's asset downloader (resumable ``.part``, retries, HTML pages refused, atomic move) and
    return that path. With ``sha256`` (the provider option named ``option``) the download must
    match it before it is stored; without, its SHA-256 is pinned on first download
    (:mod:`pagbench.files.assets`). Failures are one line."""
    from pagbench.plugin import assets
    from pagbench.plugin import cache_dir
    from pagbench.plugin import normalise_pin

    pin = normalise_pin(sha256, option) if sha256 is not None else None
    folder = hashlib.sha256(location.encode()).hexdigest()[:16]
    entry = assets.AssetEntry(name=f"url-{folder}", filename=Path(location.split("?")[0]).name or "network.pkl",
                              url=location, sha256=pin, folder=folder, description=location)
    target = cache_dir() / "downloads" / folder / entry.filename
    if target.is_file():
        return target
    return assets.download(entry, cache_dir() / "downloads")


def _check_pin(data: bytes, where: str, sha256: str | None, option: str) -> str:
    """The SHA-256 of ``data``; a mismatch with the pin ``sha256`` (full or a prefix of at least
    8 hex digits) is a one-line error."""
    from pagbench.plugin import matches, normalise_pin

    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None:
        pin = normalise_pin(sha256, option)
        if not matches(digest, pin):
            raise PagbenchError(f"{where} has SHA-256 {digest[:16]}…, not the pinned {option}={pin[:16]}…: refusing to use it "
                                f"(a different or damaged file)")
    return digest


def read_source(location: str, sha256: str | None = None, option: str = "sha256") -> tuple[bytes, str, str]:
    """The pickle's bytes, a display name and its SHA-256, from a local path or an http(s) URL
    (downloaded once into ``<cache dir>/downloads`` by :func:`fetch_url`). With ``sha256`` (the provider option named
    ``option``) the bytes must match it — a download before it is stored, a stored download or a
    local file every time it is read — else a one-line error and nothing is stored."""
    if location.startswith(("http://", "https://")):
        from pagbench.plugin import cache_dir

        target = cache_dir() / "downloads" / hashlib.sha256(location.encode()).hexdigest()[:16] / Path(location.split("?")[0]).name
        if not target.is_file():
            if offline():
                raise PagbenchError(f"cannot download {location} offline (PAGBENCH_OFFLINE is set); download it and pass path=FILE")
            target = fetch_url(location, sha256, option)
        location = str(target)
    path = Path(location)
    if not path.is_file():
        raise PagbenchError(f"network pickle {path} not found")
    data = path.read_bytes()
    return data, str(path), _check_pin(data, str(path), sha256, option)


def sniff(data: bytes, where: str) -> None:
    """Reject files that are clearly not a network pickle, with a one-line reason."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in head:
        raise PagbenchError(f"{where} is an HTML page, not a network pickle (a login or error page saved instead of the file?)")
    if data[:2] == b"PK":
        raise PagbenchError(f"{where} is a zip archive (torch.save format?), not an EDM network pickle")
    if len(data) < 2 or data[0] != 0x80:
        raise PagbenchError(f"{where} is not a pickle file")


#: location → ``{"location", "path", "sha256"}`` of the last file read for it (:func:`source_record`).
_READ: dict[str, dict] = {}


def source_record(location: str) -> dict | None:
    """``{"location", "path", "sha256"}`` of the file last read for ``location`` (a URL's
    download or a local file), for the result's ``config.provider_files``; None if none was read."""
    return _READ.get(location)


def load_network_pickle(location: str, trust: bool, sha256: str | None = None, option: str = "sha256"):
    """The unpickled contents (a dict with ``'ema'``) of an EDM network pickle and the first 16
    hex digits of its SHA-256. ``sha256`` pins the file (see :func:`read_source`); the file's full
    SHA-256 is remembered for :func:`source_record`, with how it was loaded (``loaded_with``), the
    network's ``class_name`` and its records' ``module_src_sha256``.

    The published architectures load as pagbench's own modules without running anything from the
    file, trusted or not (a file that names them but does not fit them is a one-line error, or with
    ``trust`` runs its own code instead); other classes need ``trust``."""
    data, where, digest = read_source(location, sha256, option)
    _READ[location] = {"location": location, "path": where, "sha256": digest}
    sniff(data, where)
    try:
        contents, provenance = own_network_contents(data, where)
        _READ[location].update(provenance)
        return contents, digest[:16]
    except NotImplementedHere as reason:
        why = f"{where} is a network pickle that pagbench's own EDM networks cannot read ({reason})"
    except OwnNetworkMismatch as error:
        why = str(error)
        if not trust:
            raise PagbenchError(f"{why}; --trust-pickle would run the file's own code instead") from None
    except (pickle.UnpicklingError, EOFError) as error:
        raise PagbenchError(f"{where} cannot be unpickled (truncated or not an EDM network pickle): {error}") from None
    except Exception as error:
        raise PagbenchError(f"{where}: reading the network records failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    if not trust:
        raise PagbenchError(f"{why}: {TRUST_HINT}")
    _READ[location].update({"loaded_with": "the file's embedded code (--trust-pickle)", **_embedded_record(data)})
    try:
        return NetworkUnpickler(io.BytesIO(data)).load(), digest[:16]
    except PagbenchError:
        raise
    except (pickle.UnpicklingError, EOFError) as error:
        raise PagbenchError(f"{where} cannot be unpickled (truncated or not an EDM network pickle): {error}") from None
    except Exception as error:
        raise PagbenchError(f"{where}: reconstructing the network failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None


def _embedded_record(data: bytes) -> dict:
    """``class_name`` and ``module_src_sha256`` of the ``'ema'`` record, read inertly; {} when unreadable."""
    try:
        record = read_records(data).get("ema")
        return {"class_name": record.class_name, "module_src_sha256": record.module_src_sha256}
    except Exception:  # noqa: BLE001 — provenance only; the trusted reader reports real problems
        return {}


def _unavailable_part(network):
    """The first (path, placeholder) among ``network`` and its submodules, else None."""
    pending = [("ema", network)]
    while pending:
        path, part = pending.pop()
        if isinstance(part, UnavailableObject):
            return path, part
        pending += [(f"{path}.{name}", child) for name, child in (getattr(part, "_modules", None) or {}).items()]
    return None


def network_of(contents, where: str):
    import torch

    network = contents.get("ema") if isinstance(contents, dict) else None
    unavailable = _unavailable_part(network)
    if unavailable:
        path, part = unavailable
        raise PagbenchError(f"{where}: {path} ({part.class_name}) cannot be reconstructed here: {part.reason}")
    if not isinstance(network, torch.nn.Module):
        raise PagbenchError(f"{where} has no 'ema' network (keys: {', '.join(map(str, contents)) if isinstance(contents, dict) else type(contents).__name__})")
    for attribute in ("img_resolution", "img_channels"):
        if not hasattr(network, attribute):
            raise PagbenchError(f"{where}: the 'ema' network has no {attribute}; not an EDM preconditioned network")
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network
