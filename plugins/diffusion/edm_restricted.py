"""Reading NVlabs EDM network pickles without executing anything from the file.

An EDM pickle stores each network object as ``torch_utils.persistence._reconstruct_persistent_obj(
meta)`` with ``meta = {type, version, module_src, class_name, state}``; ``state`` is the module's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, plain attributes, and the constructor's
``_init_args`` / ``_init_kwargs``). :class:`RecordUnpickler` turns every such object into an inert
:class:`PersistentRecord` (its ``module_src`` is only hashed, never compiled), torch's own
``ModuleDict`` into a :class:`TorchModuleRecord`, ``dnnlib.EasyDict`` into :class:`AttributeDict`,
storages into tensors through ``torch.load(weights_only=True)``, and allows no other global than
the exact names in :data:`SAFE_GLOBALS` (collections.OrderedDict, torch's tensor rebuilders, numpy
scalars and dtypes, plain builtins).

:func:`own_network_contents` then builds pagbench's own module (:mod:`.edm_networks`,
:mod:`.edm_preconditioning`) for the ``'ema'`` record from its recorded constructor arguments —
validated first: known keys, types, ranges; the file is hostile — on the ``meta`` device, matches
the records' module tree, class names, plain attributes and every tensor's name and shape against
it (strict: missing, unexpected and mismatched keys are listed), and only then allocates and fills
it. A file whose classes pagbench does not implement raises :class:`NotImplementedHere` (the caller
may then run the file's own code, with the user's trust).
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import pickle

from pagbench.plugin import PagbenchError


class AttributeDict(dict):
    """A dict whose keys are also attributes (what EDM's ``dnnlib.EasyDict`` objects unpickle to)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


def shown(value, limit: int = 60) -> str:
    """A file-provided name or value for a one-line message: control characters escaped, cut to ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "…"


class ForeignGlobal(pickle.UnpicklingError):
    """The pickle names a global the reader does not load."""


class NotImplementedHere(Exception):
    """The file holds classes (or globals) pagbench does not implement; ``str()`` says which."""


class OwnNetworkMismatch(PagbenchError):
    """The file names pagbench's classes but its arguments or tensors do not fit them (one line)."""


def storage_from_bytes(data: bytes):
    """A torch storage pickled by ``torch.storage._load_from_bytes``, read with ``weights_only``."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


_BUILTINS = ("set", "frozenset", "slice", "complex", "bytearray", "dict", "list", "tuple", "int", "float", "bool", "str", "bytes")
_TORCH_DTYPES = ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool", "half",
                 "float", "double", "long", "int")
#: The exact globals any EDM pickle reader here may resolve (besides its own special names).
SAFE_GLOBALS = frozenset(
    {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
     ("torch", "Size"), ("torch", "device"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
     ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("copyreg", "_reconstructor")}
    | {("builtins", name) for name in _BUILTINS} | {("torch", name) for name in _TORCH_DTYPES})


class SafeUnpickler(pickle.Unpickler):
    """Resolves ``SPECIAL`` names to their replacements and otherwise only :data:`SAFE_GLOBALS`;
    anything else raises :class:`ForeignGlobal`. Subclasses extend ``SPECIAL`` (and may widen
    :meth:`allowed`)."""

    SPECIAL = {("torch.storage", "_load_from_bytes"): storage_from_bytes,
               ("dnnlib.util", "EasyDict"): AttributeDict, ("dnnlib", "EasyDict"): AttributeDict}

    def allowed(self, module: str, name: str) -> bool:
        return (module, name) in SAFE_GLOBALS

    def find_class(self, module, name):
        if (module, name) in self.SPECIAL:
            return self.SPECIAL[(module, name)]
        if self.allowed(module, name):
            return super().find_class(module, name)
        raise ForeignGlobal(f"the network pickle refers to {shown(module)}.{shown(name)}, which pagbench does not load")


# ------------------------------------------------------------------------------------ records
class PersistentRecord:
    """An EDM persistent object, inert: ``class_name``, ``module_src_sha256`` (hex), ``version``,
    ``state`` (dict)."""

    def __init__(self, class_name: str, module_src_sha256: str, version, state: dict):
        self.class_name, self.module_src_sha256, self.version, self.state = class_name, module_src_sha256, version, state

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a persistent object record cannot be given a state")

    def __repr__(self):
        return f"<EDM record {self.class_name}>"


class TorchModuleRecord:
    """torch's ``ModuleDict``, inert: ``class_name`` and the ``state`` its ``__setstate__`` got."""

    class_name = "torch.nn.ModuleDict"

    def __init__(self):
        self.state = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("a ModuleDict's state is not a dict")
        self.state = dict(state)


def persistent_record(meta):
    """What ``_reconstruct_persistent_obj(meta)`` gives here: a :class:`PersistentRecord` (the
    embedded source is hashed, never executed)."""
    if (not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str)
            or not isinstance(meta.get("module_src"), str) or not isinstance(meta.get("state") or {}, dict)):
        raise pickle.UnpicklingError("unsupported persistent object record in the network pickle")
    digest = hashlib.sha256(meta["module_src"].encode("utf-8", "surrogatepass")).hexdigest()
    return PersistentRecord(meta["class_name"], digest, meta.get("version"), dict(meta.get("state") or {}))


class RecordUnpickler(SafeUnpickler):
    """Unpickles an EDM pickle into records; executes nothing from the file."""

    SPECIAL = {**SafeUnpickler.SPECIAL,
               ("torch_utils.persistence", "_reconstruct_persistent_obj"): persistent_record,
               ("torch.nn.modules.container", "ModuleDict"): TorchModuleRecord}


def read_records(data: bytes):
    """The pickle's contents with every network object as a record. Raises :class:`ForeignGlobal`
    for a global outside the allow-list, ``pickle.UnpicklingError`` / ``EOFError`` when damaged."""
    return RecordUnpickler(io.BytesIO(data)).load()


# -------------------------------------------------------------------------- argument checking
def _integer(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"must be an integer, got {type(value).__name__}"
        if not low <= int(value) <= high:
            return f"must be in [{low}, {high}], got {int(value)}"
        return None
    return check


def _number(low=-math.inf, high=math.inf, infinite=False, above=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"must be a number, got {type(value).__name__}"
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not infinite):
            return f"must be finite, got {value}"
        if value < low or value > high or (above and value == low):
            return f"must be {'>' if above else '≥'} {low}" + (f" and ≤ {high}" if high < math.inf else "") + f", got {value}"
        return None
    return check


def _boolean(value):
    return None if isinstance(value, bool) else f"must be True or False, got {type(value).__name__}"


def _choice(*options):
    def check(value):
        return None if isinstance(value, str) and value in options else f"must be one of {', '.join(options)}, got {shown(repr(value))}"
    return check


def _sequence(item, low, high):
    def check(value):
        if not isinstance(value, (list, tuple)):
            return f"must be a list, got {type(value).__name__}"
        if not low <= len(value) <= high:
            return f"must have {low} to {high} entries, got {len(value)}"
        for entry in value:
            problem = item(entry)
            if problem:
                return f"entries {problem}"
        return None
    return check


_RESOLUTION, _CHANNELS = _integer(1, 4096), _integer(1, 64)
_INTERFACE = {"img_resolution": _RESOLUTION, "img_channels": _CHANNELS, "label_dim": _integer(0, 100_000),
              "use_fp16": _boolean}
PRECOND_ARGUMENTS = {
    "EDMPrecond": {**_INTERFACE, "sigma_min": _number(0), "sigma_max": _number(0, infinite=True, above=True),
                   "sigma_data": _number(0, above=True), "model_type": _choice("SongUNet", "DhariwalUNet")},
    "VPPrecond": {**_INTERFACE, "beta_d": _number(0, 1e4, above=True), "beta_min": _number(0, 1e4), "M": _integer(1, 100_000),
                  "epsilon_t": _number(0, 1, above=True), "model_type": _choice("SongUNet", "DhariwalUNet")},
    "VEPrecond": {**_INTERFACE, "sigma_min": _number(0), "sigma_max": _number(0, infinite=True, above=True),
                  "model_type": _choice("SongUNet", "DhariwalUNet")},
    "iDDPMPrecond": {**_INTERFACE, "C_1": _number(0, 1, above=True), "C_2": _number(0, 1e3), "M": _integer(1, 100_000),
                     "model_type": _choice("SongUNet", "DhariwalUNet")},
}
PRECOND_DEFAULT_MODEL = {"EDMPrecond": "DhariwalUNet", "VPPrecond": "SongUNet", "VEPrecond": "SongUNet", "iDDPMPrecond": "DhariwalUNet"}
_UNET_COMMON = {"augment_dim": _integer(0, 1024), "model_channels": _integer(1, 4096),
                "channel_mult": _sequence(_integer(1, 64), 1, 10), "channel_mult_emb": _integer(1, 64),
                "num_blocks": _integer(1, 64), "attn_resolutions": _sequence(_integer(0, 4096), 0, 16),
                "dropout": _number(0, 1), "label_dropout": _number(0, 1)}
MODEL_ARGUMENTS = {
    "SongUNet": {**_UNET_COMMON, "embedding_type": _choice("positional", "fourier"), "channel_mult_noise": _integer(1, 64),
                 "encoder_type": _choice("standard", "skip", "residual"), "decoder_type": _choice("standard", "skip"),
                 "resample_filter": _sequence(_number(-1e6, 1e6), 1, 16)},
    "DhariwalUNet": dict(_UNET_COMMON),
}


def _plain(value):
    """Constructor arguments as plain Python values (numpy scalars → float/int, tuples → lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(entry) for entry in value]
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def checked_arguments(class_name: str, state: dict, where: str) -> tuple[dict, dict]:
    """(preconditioner kwargs, inner network kwargs) from a top-level record's ``_init_args`` /
    ``_init_kwargs``, each value checked; a problem is an :class:`OwnNetworkMismatch`."""
    args, kwargs = state.get("_init_args"), state.get("_init_kwargs")
    if args not in (None, ()) and args != []:
        raise OwnNetworkMismatch(f"{where}: {class_name} was built with positional arguments; pagbench reads keyword arguments only")
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise OwnNetworkMismatch(f"{where}: {class_name} records no constructor arguments (_init_kwargs)")
    kwargs = dict(kwargs)
    model_type = kwargs.get("model_type", PRECOND_DEFAULT_MODEL[class_name])
    schema = PRECOND_ARGUMENTS[class_name]
    problem = schema["model_type"](model_type)
    if problem:
        raise OwnNetworkMismatch(f"{where}: {class_name} argument model_type {problem}")
    model_schema = MODEL_ARGUMENTS[model_type]
    unknown = sorted(key for key in kwargs if key not in schema and key not in model_schema)
    if unknown:
        raise OwnNetworkMismatch(f"{where}: unknown constructor argument(s) for {class_name} with {model_type}: {', '.join(shown(key) for key in unknown[:6])}")
    for key in ("img_resolution", "img_channels"):
        if key not in kwargs:
            raise OwnNetworkMismatch(f"{where}: {class_name} records no {key}")
    for key, value in kwargs.items():
        problem = (schema.get(key) or model_schema[key])(value)
        if problem:
            raise OwnNetworkMismatch(f"{where}: {class_name} argument {key} {problem}")
    kwargs = {key: _plain(value) for key, value in kwargs.items()}
    levels = len(kwargs.get("channel_mult", [1, 2, 2, 2] if model_type == "SongUNet" else [1, 2, 3, 4]))
    if kwargs["img_resolution"] % (1 << (levels - 1)):
        raise OwnNetworkMismatch(f"{where}: img_resolution {kwargs['img_resolution']} is not divisible by 2^{levels - 1} "
                                 f"({levels} resolution levels)")
    if "resample_filter" in kwargs and sum(kwargs["resample_filter"]) == 0:
        raise OwnNetworkMismatch(f"{where}: resample_filter sums to 0")
    precond = {key: value for key, value in kwargs.items() if key in schema}
    model = {key: value for key, value in kwargs.items() if key not in schema}
    return precond, model


# -------------------------------------------------------------------------- matching and filling
_PLAIN_ATTRIBUTES = (bool, int, float, str)


def _same(ours, theirs) -> bool:
    if isinstance(ours, float) or isinstance(theirs, float):
        try:
            return float(ours) == float(theirs) or (math.isnan(float(ours)) and math.isnan(float(theirs)))
        except (TypeError, ValueError):
            return False
    return type(ours) is type(theirs) and ours == theirs


class _Matcher:
    """Walks a record tree beside pagbench's module tree, collecting problems and the tensors to copy."""

    def __init__(self):
        self.missing, self.unexpected, self.mismatched, self.copies = [], [], [], []

    def walk(self, record, module, path: str):
        import torch

        expected = getattr(module, "EDM_CLASS", None) or "torch.nn.ModuleDict"
        record_class = getattr(record, "class_name", None) if isinstance(record, (PersistentRecord, TorchModuleRecord)) else None
        if record_class != expected or (expected == "torch.nn.ModuleDict") != isinstance(record, TorchModuleRecord):
            found = shown(record_class) if record_class else type(record).__name__
            self.mismatched.append(f"{path or 'network'} is {found}, pagbench expects {expected}")
            return
        state = record.state
        for attribute, value in state.items():
            if attribute.startswith("_") or attribute == "training" or not isinstance(value, _PLAIN_ATTRIBUTES + (numbers.Real,)):
                continue
            if attribute in module.__dict__ and isinstance(module.__dict__[attribute], _PLAIN_ATTRIBUTES):
                if not _same(module.__dict__[attribute], value):
                    self.mismatched.append(f"{path + '.' if path else ''}{attribute} = {shown(repr(value))} (pagbench's: {module.__dict__[attribute]!r})")
        for kind in ("_parameters", "_buffers"):
            theirs = state.get(kind)
            if not isinstance(theirs, dict):
                self.mismatched.append(f"{path or 'network'} has no {kind.strip('_')} table")
                continue
            ours = getattr(module, kind)
            for name in ours:
                key = f"{path + '.' if path else ''}{name}"
                if name not in theirs:
                    self.missing.append(key)
                    continue
                mine, tensor = ours[name], theirs[name]
                if mine is None or tensor is None:
                    if (mine is None) != (tensor is None):
                        self.mismatched.append(f"{key} is {'absent' if tensor is None else 'present'} in the file, "
                                               f"{'present' if mine is not None else 'absent'} in pagbench's")
                    continue
                if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                    self.mismatched.append(f"{key} is not a floating-point tensor")
                elif tuple(tensor.shape) != tuple(mine.shape):
                    self.mismatched.append(f"{key} has shape {list(tensor.shape)}, pagbench's {list(mine.shape)}")
                elif tensor.untyped_storage().nbytes() < tensor.numel() * tensor.element_size():
                    self.mismatched.append(f"{key} is not stored in full (a view of {tensor.untyped_storage().nbytes()} bytes)")
                elif not bool(torch.isfinite(tensor).all()):
                    self.mismatched.append(f"{key} has non-finite values")
                else:
                    self.copies.append((key, tensor))
            self.unexpected += [f"{path + '.' if path else ''}{shown(name)}" for name in theirs if name not in ours]
        children = state.get("_modules")
        if not isinstance(children, dict):
            self.mismatched.append(f"{path or 'network'} has no submodule table")
            return
        for name, child in module._modules.items():
            key = f"{path + '.' if path else ''}{name}"
            if name not in children:
                self.missing.append(f"{key} (a submodule)")
            elif child is None or children[name] is None:
                if (child is None) != (children[name] is None):
                    self.mismatched.append(f"{key} is {'absent' if children[name] is None else 'present'} in the file")
            else:
                self.walk(children[name], child, key)
        self.unexpected += [f"{path + '.' if path else ''}{shown(name)} (a submodule)" for name in children if name not in module._modules]

    def problems(self) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected), ("mismatched", self.mismatched)):
            if items:
                shown = "; ".join(items[:4]) + (f"; … ({len(items)} in all)" if len(items) > 4 else "")
                parts.append(f"{label}: {shown}")
        return " | ".join(parts)


def _record_classes(record) -> set:
    """Every class name in a record tree (a file may make it cyclic: each record is visited once)."""
    names, visited, pending = set(), set(), [record]
    while pending:
        record = pending.pop()
        if isinstance(record, (PersistentRecord, TorchModuleRecord)) and id(record) not in visited:
            visited.add(id(record))
            names.add(record.class_name)
            children = record.state.get("_modules")
            pending += list(children.values()) if isinstance(children, dict) else []
    return names


def build_own_network(record, where: str, size: int):
    """pagbench's module for an ``'ema'`` record, filled from the record's tensors, in ``eval()``
    mode with frozen parameters; ``size`` is the file's length in bytes (a network bigger than the
    file could hold is refused before anything is allocated). Raises :class:`NotImplementedHere`
    for classes pagbench lacks and :class:`OwnNetworkMismatch` for arguments or tensors that do
    not fit."""
    import torch

    from .edm_networks import BLOCKS, UNETS
    from .edm_preconditioning import PRECONDITIONERS

    if not isinstance(record, PersistentRecord):
        raise NotImplementedHere(f"its 'ema' entry is a {type(record).__name__}, not an EDM network record")
    known = set(PRECONDITIONERS) | set(UNETS) | set(BLOCKS) | {"torch.nn.ModuleDict"}
    foreign = sorted(_record_classes(record) - known)
    if record.class_name not in PRECONDITIONERS or foreign:
        names = foreign or [record.class_name]
        raise NotImplementedHere(f"class {', '.join(shown(name) for name in names[:4])} {'is' if len(names) == 1 else 'are'} not one of pagbench's own EDM networks")
    precond, model = checked_arguments(record.class_name, record.state, where)
    try:
        with torch.device("meta"):
            network = PRECONDITIONERS[record.class_name](**precond, **model)
    except (ValueError, TypeError, ZeroDivisionError, RuntimeError) as error:
        raise OwnNetworkMismatch(f"{where}: {record.class_name} cannot be built from its recorded arguments: {error}") from None
    elements = sum(tensor.numel() for tensor in [*network.parameters(), *network.buffers()])
    if elements * 2 > size:  # every tensor's storage is in the file, at ≥ 2 bytes per element
        raise OwnNetworkMismatch(f"{where}: its arguments describe a network of {elements:,} parameters and buffers, "
                                 f"more than a {size:,}-byte file can hold")
    for name, module in network.named_modules():
        groups = getattr(module, "num_groups", None)
        if groups is not None and (groups < 1 or module.weight.shape[0] % groups):
            raise OwnNetworkMismatch(f"{where}: {name} normalises {module.weight.shape[0]} channels in {groups} groups")
    matcher = _Matcher()
    matcher.walk(record, network, "")
    problems = matcher.problems()
    if problems:
        raise OwnNetworkMismatch(f"{where}: the file's {record.class_name} does not match pagbench's implementation ({problems})")
    network = network.to_empty(device="cpu")
    tensors = dict(network.named_parameters(remove_duplicate=False))
    tensors.update(dict(network.named_buffers(remove_duplicate=False)))
    with torch.no_grad():
        for key, tensor in matcher.copies:
            tensors[key].copy_(tensor)
    network.eval().requires_grad_(False)
    return network


def own_network_contents(data: bytes, where: str):
    """(contents with ``'ema'`` replaced by pagbench's own module, provenance dict
    ``{"loaded_with", "class_name", "module_src_sha256"}``) for a published-architecture EDM pickle;
    executes nothing from the file. Raises :class:`NotImplementedHere` (the file needs its own code),
    :class:`OwnNetworkMismatch`, or ``pickle.UnpicklingError`` / ``EOFError`` for damaged files."""
    try:
        contents = read_records(data)
    except ForeignGlobal as error:
        raise NotImplementedHere(str(error).replace("the network pickle refers to", "it refers to")) from None
    record = contents.get("ema") if isinstance(contents, dict) else None
    if record is None:
        raise NotImplementedHere("it has no 'ema' network record")
    network = build_own_network(record, where, len(data))
    provenance = {"loaded_with": "pagbench's own implementation (no code from the file ran)",
                  "class_name": f"{record.class_name}/{network.model.EDM_CLASS}",
                  "module_src_sha256": record.module_src_sha256}
    return {**contents, "ema": network}, provenance


def record_summary(record):
    """A record tree as nested plain data (class names, plain attributes, constructor arguments and
    tensors), for comparing two files' records (the fixture README's check)."""
    if isinstance(record, (PersistentRecord, TorchModuleRecord)):
        return {"class": record.class_name, "state": {key: record_summary(value) for key, value in record.state.items()}}
    if isinstance(record, dict):
        return {key: record_summary(value) for key, value in record.items()}
    if isinstance(record, (list, tuple)):
        return [record_summary(value) for value in record]
    return record
