"""Building ``robustbench:NAME`` models (imports torch, and robustbench when a model is built).

What pagbench does, next to what RobustBench's ``robustbench.utils.load_model`` does:

* The network is RobustBench's own: ``model_zoo.model_dicts[dataset][threat_model][NAME]['model']()``.
* The weights file is the one RobustBench would read (``MODEL_DIR/DATASET/THREAT/NAME.pt``, or
  ``NAME.pt_m0.pt``, ``…_m1.pt`` for ensembles), or ``--weights FILE``. It is read with
  :func:`pagbench.plugin.read_checkpoint` (``torch.load(weights_only=True)``; code-running
  files only with ``--trust-checkpoint``), never with RobustBench's loader.
* Keys are handled as RobustBench handles them: a ``last`` entry (RobustBench's rule for
  checkpoints that keep the last and the best model), then a ``state_dict`` entry if there is
  one, then the prefixes ``module.`` and ``model.`` are removed — from the *start* of keys only
  (RobustBench removes them wherever they occur in a key) — and ``model.`` is put back in front
  when the architecture wants it (RobustBench does this for its ImageNet models, which sit behind
  a ``normalize`` layer).
* Loading is strict. The gaps RobustBench's ``_safe_load_state_dict`` lets through are tolerated
  in the same way (the architecture's own values stay) and recorded in the card's provenance:
  missing input-normalisation buffers (``mu``/``sigma``, ``normalize.mean``/``normalize.std``,
  ``mean``/``std``: e.g. Wong2020Fast's file lacks them, and its network's constructor holds the
  CIFAR-10 statistics it was trained with), and the unused extras RobustBench names
  (``model_preact_hl1.*``, ``*.scores``); also BatchNorm's ``num_batches_tracked`` (unused in
  eval mode). Unlike RobustBench, this does not depend on the model's name, and any other missing,
  unexpected or wrongly shaped key is an error (RobustBench then loads with ``strict=False``,
  which would hide it).
* RobustBench models take [0,1] images (its data loaders give ``ToTensor`` images, AutoAttack
  works in [0,1]) and normalise inside their forward: pagbench feeds them the dataset's images
  unchanged and records the normalisation buffers it found.

Installing robustbench 1.1.1 next to a current timm needs ``--no-deps`` (it pins timm==1.0.9);
two import problems of that release are worked around here, without changing any installed
package: its ``loaders`` module imports ``pkg_resources`` (gone from setuptools >= 81; only
``resource_filename`` is used, so a stand-in is offered while robustbench is imported), and
its ``eval`` module imports ``autoattack``, which PyPI's ``pyautoattack`` installs as
``pyautoattack`` (it is aliased while robustbench is imported).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path

import torch

from pagbench.plugin import one_line, read_checkpoint, sniff_format, strict_load_error
from pagbench.plugin import ModelCard
from pagbench.plugin import PagbenchError
from pagbench.plugin import BuiltModel, check_model_options, option_flag

from . import DATASETS
from . import modelinfo
from .spec import Spec, parse_name

MODEL_OPTIONS = ("weights", "trust_checkpoint", "model_dir", "model_info", "dataset", "threat_model")
INSTALL = "pip install 'pagbench[robustbench]' && pip install --no-deps robustbench==1.1.1"
#: Leaf names of input-normalisation buffers that RobustBench tolerates missing from a file.
NORMALIZATION_LEAVES = ("mu", "sigma", "mean", "std")


from pagbench.plugin import offline as _offline  # noqa: E402  (one definition of PAGBENCH_OFFLINE)


# ------------------------------------------------------------------------------ importing robustbench
def _resource_filename(package: str, resource: str) -> str:
    """``pkg_resources.resource_filename`` for a module or package of an installed distribution."""
    module = importlib.import_module(package)
    return str(Path(module.__file__).parent / resource)


def _importable(name: str) -> bool:
    """Whether ``import name`` would find a module: one already in ``sys.modules`` (e.g. a user's
    own stand-in, whose ``__spec__`` may be None and would make ``find_spec`` raise) or on the path."""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # in sys.modules with __spec__ None: a module put there by hand
        return sys.modules.get(name) is not None
    except ImportError:
        return False


@contextlib.contextmanager
def _import_workarounds():
    """Offer ``pkg_resources`` and ``autoattack`` while robustbench is imported, where they are
    missing; nothing stays in ``sys.modules`` afterwards (robustbench keeps its own references)."""
    added = {}
    if not _importable("pkg_resources"):
        shim = types.ModuleType("pkg_resources", "pagbench's stand-in: resource_filename only")
        shim.resource_filename = _resource_filename
        added["pkg_resources"] = shim
    if not _importable("autoattack") and _importable("pyautoattack"):
        package = importlib.import_module("pyautoattack")
        added["autoattack"] = package
        added["autoattack.state"] = importlib.import_module("pyautoattack.state")
    sys.modules.update(added)
    try:
        with warnings.catch_warnings():
            # robustbench imports timm through deprecated module paths (timm.models.registry, ...)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for name, module in added.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def import_robustbench():
    """``(robustbench.utils, model_dicts, version)``, or a one-line error saying how to install it."""
    if not _importable("robustbench"):
        raise PagbenchError(f"robustbench models need the robustbench package, which is not installed: {INSTALL}")
    try:
        with _import_workarounds():
            utils = importlib.import_module("robustbench.utils")
            zoo = importlib.import_module("robustbench.model_zoo")
    except ImportError as error:
        raise PagbenchError(f"the robustbench package could not be imported ({one_line(error)}); install its dependencies: {INSTALL}") from error
    try:
        from importlib.metadata import version

        found = version("robustbench")
    except Exception:
        found = "unknown"
    return utils, zoo.model_dicts, found


# --------------------------------------------------------------------------------------- looking up
def _zoo_entry(spec: Spec, model_dicts) -> dict:
    tables = {(d.value, t.value): models for d, by_threat in model_dicts.items() for t, models in by_threat.items()}
    models = tables.get((spec.dataset, spec.threat_model))
    if models is None:
        have = ", ".join(sorted(t for d, t in tables if d == spec.dataset))
        raise PagbenchError(f"RobustBench has no {spec.threat_model} models for {spec.dataset} (it has {have})")
    if spec.model in models:
        return models[spec.model]
    elsewhere = [f"robustbench:{d}/{t}/{spec.model}" for (d, t), table in tables.items() if spec.model in table]
    if elsewhere:
        raise PagbenchError(
            f"RobustBench has no {spec.dataset}/{spec.threat_model} model {spec.model!r} (the dataset came from {spec.dataset_source}); "
            f"it has {', '.join(elsewhere)}"
        )
    close = difflib.get_close_matches(spec.model, list(models), n=3, cutoff=0.6)
    if not close:  # a case slip, e.g. carmon2019unlabeled
        lowered = {name.lower(): name for name in models}
        close = [lowered[c] for c in difflib.get_close_matches(spec.model.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f"; did you mean {', '.join(f'robustbench:{spec.dataset}/{spec.threat_model}/{c}' for c in close)}?" if close else (
        f" ({len(models)} models there, e.g. {', '.join(list(models)[:3])}; see robustbench.model_zoo)"
    )
    raise PagbenchError(f"unknown RobustBench {spec.dataset}/{spec.threat_model} model {spec.model!r}{hint}")


def _timm_name(spec: Spec) -> str:
    """The timm name under which RobustBench registers some models (it tries it first)."""
    return f"{spec.model.lower().replace('-', '_')}_{spec.dataset.lower()}_{spec.threat_model.lower()}"


def _model_dir(options: dict) -> tuple[Path, str]:
    if options.get("model_dir"):
        return Path(str(options["model_dir"])).expanduser(), "--model-option model_dir"
    from pagbench.plugin import cache_dir

    return cache_dir() / "robustbench", "pagbench's cache (RobustBench's layout)"


# ------------------------------------------------------------------------------------ weights files
def _download(utils, gdrive_id: str, path: Path, spec: Spec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # robustbench prints its progress; stdout stays the CLI's
            utils.download_gdrive_new(gdrive_id, str(partial))
    except Exception as error:
        partial.unlink(missing_ok=True)
        raise PagbenchError(
            f"could not download the weights of robustbench:{spec.key} (Google Drive id {gdrive_id}) to {path}: "
            f"{type(error).__name__}: {one_line(error, 120)}; download RobustBench's file there or pass --weights FILE"
        ) from error
    if not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        raise PagbenchError(f"the download of robustbench:{spec.key} (Google Drive id {gdrive_id}) gave no file; put RobustBench's file at {path} or pass --weights FILE")
    try:
        sniff_format(partial)  # e.g. a quota or consent page saved instead of the weights
    except PagbenchError as error:
        partial.unlink(missing_ok=True)
        raise PagbenchError(f"the download of robustbench:{spec.key} (Google Drive id {gdrive_id}) is not a weights file ({error}); put RobustBench's file at {path} or pass --weights FILE") from error
    from pagbench.plugin import check_replaceable

    try:
        check_replaceable(path)  # only a regular file (or nothing) is replaced
    except PagbenchError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def _weights_file(path: Path, gdrive_id, utils, spec: Spec, where: str, members: int = 0) -> tuple[Path, str]:
    """RobustBench's file at ``path``, downloaded there when missing and allowed; ``members``:
    the file count of an ensemble (0 for a single file)."""
    if path.is_file():
        return path, f"model directory ({where})"
    if _offline():
        raise PagbenchError(
            f"robustbench:{spec.key} needs its weights file at {path} and PAGBENCH_OFFLINE is set: put RobustBench's file there"
            + (
                ", point --model-option model_dir=DIR at a RobustBench model directory (DIR/DATASET/THREAT/NAME.pt), or pass --weights FILE"
                if not members
                else f" (an ensemble: all {members} files {spec.model}.pt_m0.pt … _m{members - 1}.pt), or point --model-option model_dir=DIR at a RobustBench model directory holding them"
            )
        )
    _download(utils, gdrive_id, path, spec)
    return path, f"downloaded by robustbench (Google Drive id {gdrive_id}) into {where}"


def _state_of(checkpoint) -> tuple[dict, list[str]]:
    """The weights in a RobustBench file, following RobustBench's entries (``last``, ``state_dict``)."""
    content, trail = checkpoint.content, []
    if isinstance(content, torch.nn.Module):
        return content.state_dict(), ["whole module (trusted)"]
    if not isinstance(content, dict):
        raise PagbenchError(f"weights file {checkpoint.path} holds a {type(content).__name__}, not a state dict")
    for key in ("last", "state_dict"):
        if isinstance(content.get(key), dict):
            content = content[key]
            trail.append(key)
    tensors = {str(k): v for k, v in content.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        shown = ", ".join(map(str, list(content)[:6])) or "nothing"
        raise PagbenchError(f"weights file {checkpoint.path} holds no tensors{' under ' + '/'.join(trail) if trail else ''} (its entries: {shown})")
    return tensors, trail


def _is_ignorable_extra(key: str) -> bool:
    """File entries RobustBench's loader lets through for models whose networks have no use for them."""
    return key.startswith("model_preact_hl1.") or key.endswith(".scores")


def fit_robustbench_state(module: torch.nn.Module, state: dict, source: str, architecture: str, prefixes=("module.", "model.")) -> dict:
    """Load ``state`` into ``module`` as described in the module doc; returns the provenance.
    ``prefixes`` are removed from the start of keys, in this order (timm's loader, which RobustBench
    uses for the models it registers with timm, removes ``module.`` only)."""
    stripped = {prefix: 0 for prefix in prefixes}
    plain = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                stripped[prefix] += 1
        if key in plain:
            raise PagbenchError(f"{source}: two entries become {key!r} once the prefixes {', '.join(prefixes)} are removed")
        plain[key] = value
    expected = module.state_dict()
    prefixed = {f"model.{key}": value for key, value in plain.items()}
    added = len(expected.keys() & prefixed.keys()) > len(expected.keys() & plain.keys())
    state = prefixed if added else plain

    buffers = {name for name, _ in module.named_buffers()}
    missing = [key for key in expected if key not in state]
    kept_normalization = [key for key in missing if key in buffers and key.rsplit(".", 1)[-1] in NORMALIZATION_LEAVES]
    kept_counters = [key for key in missing if key.endswith("num_batches_tracked")]
    missing = [key for key in missing if key not in kept_normalization and key not in kept_counters]
    unexpected = [key for key in state if key not in expected]
    ignored = [key for key in unexpected if _is_ignorable_extra(key)]
    unexpected = [key for key in unexpected if key not in ignored]
    mismatched = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    if missing or unexpected or mismatched:
        raise PagbenchError(strict_load_error(source, architecture, state, expected, missing=missing, unexpected=unexpected,
                                              mismatched=mismatched, matched=len(expected) - len(missing) - len(mismatched),
                                              stored_as="file", hint="is it the right model's file?"))
    merged = {key: state.get(key, value) for key, value in expected.items()}
    module.load_state_dict(merged, strict=True)
    provenance = {
        "stripped_prefixes": [prefix for prefix, count in stripped.items() if count],
        "added_prefix": "model." if added else None,
        "strict": not (kept_normalization or ignored),
    }
    if kept_normalization:
        provenance["tolerated_missing"] = {
            key: expected[key].flatten().tolist() for key in kept_normalization
        }
        provenance["tolerated_missing_note"] = (
            "input-normalisation buffers absent from the file: the architecture's own values are kept, as RobustBench's "
            "_safe_load_state_dict does"
        )
    if ignored:
        provenance["ignored_unexpected"] = ignored
    if kept_counters:
        provenance["num_batches_tracked_missing"] = len(kept_counters)
    return provenance


# ------------------------------------------------------------------------------------------- input
def normalization_inside(module: torch.nn.Module) -> dict:
    """The input-normalisation buffers of a RobustBench network (name → values)."""
    found = {}
    for name, buffer in module.named_buffers():
        if name.rsplit(".", 1)[-1] in NORMALIZATION_LEAVES and buffer.numel() <= 4:
            found[name] = [float(v) for v in buffer.flatten().tolist()]
    return found


def _input_provenance(module, entry: dict, dataset) -> dict:
    buffers = normalization_inside(module)
    data = {
        "done_by_pagbench": "nothing: the dataset's [0,1] images go to RobustBench's network unchanged (no normalisation, resize, crop or clamp added)",
        "image_size": "x".join(map(str, dataset.image_shape[1:])) if getattr(dataset, "image_shape", None) else "the dataset's",
        "normalization_inside_model": buffers
        or "none found (no mu/sigma/mean/std buffers: the network was trained on [0,1] images)",
    }
    if entry.get("preprocessing"):
        data["robustbench_preprocessing"] = (
            f"{entry['preprocessing']} (RobustBench applies it to its dataset's images before the model; pagbench does not, "
            "the evaluation dataset's images are used as they are)"
        )
    return data


# ---------------------------------------------------------------------------------------- building
def _build_network(entry: dict, spec: Spec) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            return entry["model"]()
        except Exception as error:
            raise PagbenchError(f"RobustBench could not build the network of robustbench:{spec.key}: {type(error).__name__}: {one_line(error)}") from error


def _single(entry, spec, utils, options, model_dir, where):
    network = _build_network(entry, spec)
    if options.get("weights"):
        path, how = Path(str(options["weights"])).expanduser(), "--weights"
    else:
        path, how = _weights_file(model_dir / spec.dataset / spec.threat_model / f"{spec.model}.pt", entry["gdrive_id"], utils, spec, where)
    checkpoint = read_checkpoint(path, trust=option_flag(options, "trust_checkpoint"))
    state, trail = _state_of(checkpoint)
    fitted = fit_robustbench_state(network, state, f"weights file {checkpoint.path}", f"RobustBench's {spec.key} ({type(network).__name__})")
    files = [{"path": str(checkpoint.path.resolve()), "sha256": checkpoint.sha256, "format": checkpoint.format, "checkpoint_keys": trail}]
    if checkpoint.trusted_load:
        files[0]["trusted_load"] = True
    return network, how, files, fitted


def _ensemble(entry, spec, utils, options, model_dir, where):
    if options.get("weights"):
        first = model_dir / spec.dataset / spec.threat_model / f"{spec.model}.pt_m0.pt"
        raise PagbenchError(
            f"robustbench:{spec.key} is an ensemble of {len(entry['gdrive_id'])} files; --weights takes one file: put them in a model "
            f"directory as RobustBench names them ({first.name}, …) and pass --model-option model_dir=DIR"
        )
    network = _build_network(entry, spec)
    members = getattr(network, "models", None)
    if spec.model.startswith("Bai20") or not isinstance(members, (torch.nn.ModuleList, list)) or len(members) != len(entry["gdrive_id"]):
        raise PagbenchError(f"robustbench:{spec.key} combines its networks in a way pagbench does not load yet (RobustBench special-cases it)")
    files, fitted, hows = [], [], set()
    for index, gdrive_id in enumerate(entry["gdrive_id"]):
        target = model_dir / spec.dataset / spec.threat_model / f"{spec.model}.pt_m{index}.pt"
        path, how = _weights_file(target, gdrive_id, utils, spec, where, members=len(entry["gdrive_id"]))
        hows.add(how)
        checkpoint = read_checkpoint(path, trust=option_flag(options, "trust_checkpoint"))
        state, trail = _state_of(checkpoint)
        fitted.append(fit_robustbench_state(members[index], state, f"weights file {checkpoint.path}", f"member {index} of RobustBench's {spec.key}"))
        files.append({"path": str(checkpoint.path.resolve()), "sha256": checkpoint.sha256, "format": checkpoint.format, "checkpoint_keys": trail})
    return network, " + ".join(sorted(hows)), files, {"members": fitted}


def _timm_registered(entry, spec, options, timm_name):
    """Models RobustBench registers with timm (it loads them with timm.create_model)."""
    import timm

    classes = DATASETS[spec.dataset]
    if options.get("weights"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            network = timm.create_model(timm_name, pretrained=False, num_classes=classes)
        checkpoint = read_checkpoint(options["weights"], trust=option_flag(options, "trust_checkpoint"))
        state, trail = _state_of(checkpoint)
        fitted = fit_robustbench_state(network, state, f"weights file {checkpoint.path}", f"timm {timm_name}", prefixes=("module.",))
        files = [{"path": str(checkpoint.path.resolve()), "sha256": checkpoint.sha256, "format": checkpoint.format, "checkpoint_keys": trail}]
        return network, "--weights", files, fitted
    if _offline():
        raise PagbenchError(
            f"robustbench:{spec.key} is timm's {timm_name}, whose weights timm downloads, but PAGBENCH_OFFLINE is set: pass --weights FILE"
        )
    try:
        network = timm.create_model(timm_name, pretrained=True, num_classes=classes)
    except Exception as error:
        raise PagbenchError(f"could not fetch the weights of robustbench:{spec.key} through timm ({timm_name}): {one_line(error, 120)}; pass --weights FILE") from error
    return network, f"timm pretrained weights of {timm_name}", [], {"loaded_by": "timm.create_model(pretrained=True)"}


def robustbench_model(name: str, dataset, options: dict) -> BuiltModel:
    """``robustbench:[DATASET/][THREAT/]NAME``; see the module doc."""
    check_model_options(name, options, MODEL_OPTIONS)
    spec = parse_name(name, options, getattr(dataset, "name", None))
    classes = DATASETS[spec.dataset]
    if classes != dataset.num_classes:
        raise PagbenchError(
            f"robustbench:{spec.key} has a {classes}-class classifier ({spec.dataset}, from {spec.dataset_source}) but dataset "
            f"{dataset.name!r} has {dataset.num_classes} classes: pagbench does not score a model on labels it was not trained for"
        )
    utils, model_dicts, version = import_robustbench()
    entry = _zoo_entry(spec, model_dicts)
    model_dir, where = _model_dir(options)
    info, found = modelinfo.find(spec, options, model_dir)  # before any weights: a bad file fails fast
    timm_name = _timm_name(spec)
    import timm

    gdrive_id = entry.get("gdrive_id")
    if timm.is_model(timm_name):
        network, how, files, fitted = _timm_registered(entry, spec, options, timm_name)
    elif isinstance(gdrive_id, (list, tuple)):
        network, how, files, fitted = _ensemble(entry, spec, utils, options, model_dir, where)
    elif not gdrive_id:
        raise PagbenchError(
            f"robustbench:{spec.key} has no RobustBench weights file (RobustBench builds it with torchvision's pretrained weights, "
            "downloading them): evaluate torchvision's model instead, e.g. torchvision:resnet50"
        )
    else:
        network, how, files, fitted = _single(entry, spec, utils, options, model_dir, where)

    recorded = {"model": spec.model, "dataset": spec.dataset, "threat_model": spec.threat_model, "dataset_from": spec.dataset_source}
    recorded.update(info or {})
    recorded.update(found)
    provenance = {
        "robustbench": recorded,
        "robustbench_version": version,
        "network": f"{type(network).__module__}.{type(network).__qualname__}",
        "weights": how,
        "files": files,
        "fit": fitted,
        "loaded_by": "pagbench: RobustBench's key handling, safe torch.load(weights_only=True), strict apart from the tolerated gaps listed",
        "input": _input_provenance(network, entry, dataset),
    }
    if "model_dir" in options or how.startswith(("model directory", "downloaded")):
        provenance["model_dir"] = str(model_dir.resolve())
    eps = (info or {}).get("eps")
    card = ModelCard(
        architecture=(info or {}).get("architecture") or type(network).__name__,
        dataset=spec.dataset,
        regime=spec.regime,
        strength=eps if spec.regime == "adversarial" else None,
        source=(info or {}).get("link") or f"RobustBench model zoo ({spec.key})",
        licence="unspecified (see the paper's code release)",
        description=f"RobustBench {spec.key}" + (f": {info['paper']}" if info and info.get("paper") else "") + (f" ({info['venue']})" if info and info.get("venue") not in (None, "N/A") else ""),
        provenance=provenance,
    )
    return BuiltModel(network.eval(), card)
