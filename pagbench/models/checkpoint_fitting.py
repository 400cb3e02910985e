"""Fitting a checkpoint's weights to an architecture strictly (imports torch); reading the file
safely is :mod:`pagbench.models.checkpoint_reading`.

Fitting (:func:`fit_checkpoint`), in named steps:

* Layouts that plugins declare (:class:`CheckpointLayout`, through the
  ``register_checkpoint_layouts`` hook) are recognised first: a layout picks the network's weights
  out of a larger state dict, may bring the input normalisation it stored, and may say that its
  models clamp their input to [0,1] (the clamp is then kept, on the architecture's normalisation
  layer, and the card's ``input_clamp`` says so; ``clamp=False`` drops it, and says that instead).
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

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from pagbench.errors import PagbenchError

#: Prefixes that wrappers add to every key (DataParallel / DDP, a ``model`` attribute, torch.compile).
PREFIXES = ("module.", "model.", "_orig_mod.")
#: (mean key, std key) pairs under which checkpoints store their input normalisation.
NORMALIZATION_KEYS = (
    ("normalize.mean", "normalize.std"),
    ("normalization.mean", "normalization.std"),
    ("mean", "std"),
    ("mu", "sigma"),
)


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
    clamp: str | None = None  # what happens to pixels outside [0,1] (set for layouts whose models clamp, or by clamp=)

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



@dataclass(frozen=True)
class CheckpointLayout:
    """A checkpoint layout a plugin declares (``register_checkpoint_layouts``), e.g. a training
    library's wrapper model whose state dict holds the network next to other modules.

    ``recognise(state)`` → bool: whether a dict of tensors is in this layout. ``split(state)`` →
    (the network's weights, (mean, std) the file stores for its input normalisation, or None).
    ``description`` is the card's ``layout``; ``normalization_source`` its ``normalization`` when
    the file stores one. ``clamps_input``: the layout's models clamp their input to [0,1] before
    normalising; fitting then keeps that clamp unless ``clamp=False``, and the card's
    ``input_clamp`` says ``clamp_kept`` / ``clamp_dropped`` / ``clamp_unavailable`` (the
    architecture has no normalisation layer that can clamp). ``normalization_keys``: (mean key,
    std key) pairs under which files store their normalisation next to the network's keys, tried
    before :data:`NORMALIZATION_KEYS` whenever the layout is among those fitting considers.
    """

    name: str
    recognise: Callable[[Mapping], bool]
    split: Callable[[Mapping], tuple]
    description: str
    normalization_source: str = "checkpoint"
    clamps_input: bool = False
    clamp_kept: str = "clamped to [0,1] before normalisation"
    clamp_dropped: str = "none"
    clamp_unavailable: str = "none: the architecture's normalisation layer cannot clamp its input to [0,1]"
    normalization_keys: tuple[tuple[str, str], ...] = ()


def checkpoint_layouts() -> list[CheckpointLayout]:
    """The layouts the loaded plugins declare, in registration order (lazy: the plugin manager
    is consulted when a checkpoint is fitted)."""
    from pagbench.extensions.manager import get_plugin_manager

    layouts: list[CheckpointLayout] = []
    get_plugin_manager().hook.register_checkpoint_layouts(register=layouts.append)
    return layouts


# ----------------------------------------------------------------------------------------- helpers
def listing(keys, limit: int = 4) -> str:
    """The first ``limit`` of ``keys`` joined by commas, and how many more there are."""
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else ("es" if word.endswith("ch") else "s"))


def _shape(tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def strict_load_error(source: str, architecture: str, state: Mapping, expected: Mapping, *, missing, unexpected, mismatched,
                      matched: int, stored_as: str = "checkpoint", hint: str = "is the architecture right?",
                      stripped=()) -> str:
    """The one-line report of a strict load that failed: how many keys of ``expected`` (the
    network's state dict) are ``missing`` from ``state`` (the file's), which of ``state`` are
    ``unexpected``, which are ``mismatched`` in shape (shown as ``stored_as`` shape vs model shape),
    and, when fewer than half of the network's keys fit (``matched``), ``hint``. ``stripped``: the
    prefixes removed from the file's keys before comparing."""
    parts = []
    if missing:
        parts.append(f"{_plural(len(missing), 'missing key')}: {listing(missing)}")
    if unexpected:
        parts.append(f"{_plural(len(unexpected), 'unexpected key')}: {listing(unexpected)}")
    if mismatched:
        shown = [f"{key} ({stored_as} {_shape(state[key])}, model {_shape(expected[key])})" for key in mismatched]
        parts.append(f"{_plural(len(mismatched), 'shape mismatch')}: {listing(shown, 3)}")
    total = len(expected)
    hint = f"; only {matched} of {total} keys fit: {hint}" if matched < total / 2 else ""
    stripped = f" (after stripping {', '.join(stripped)})" if stripped else ""
    return f"{source} does not fit {architecture}{stripped}: " + "; ".join(parts) + hint


# ----------------------------------------------------------------------------------------- fitting
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


def _recognise_layout(module, state: dict, layouts, report: FitReport):
    """Step 1: a declared layout (or the legacy Sequential) → (the network's state, the layout or
    None, (mean, std, where) the file stores or None)."""
    from pagbench.models.wrappers import ImageClassifier

    for layout in layouts:
        if layout.recognise(state):
            state, stored = layout.split(state)
            report.layout = layout.description
            return state, layout, (None if stored is None else (*stored, layout.normalization_source))
    if isinstance(module, ImageClassifier):
        legacy = _from_legacy_sequential(state)
        if legacy is not state:
            report.layout = "Sequential(Normalize, network) of older with_normalization: 0.* -> normalize.*, 1.* -> network.*"
            return legacy, None, None
    return state, None, None


def _choose_target(module, state: dict, report: FitReport):
    """Step 2: the module (the whole wrapper or its ``network``) and the prefix stripping under
    which most keys match → (target, its state)."""
    from pagbench.models.wrappers import ImageClassifier

    targets = [("", module)]
    if isinstance(module, ImageClassifier):
        targets.append(("network", module.network))
    best = None
    for target_name, target in targets:
        expected_keys = set(target.state_dict())
        for candidate, removed in _strip_candidates(state):
            score = (len(expected_keys & candidate.keys()), -len(removed), -len(target_name))
            if best is None or score > best[0]:
                best = (score, target, candidate, removed)
    _, target, state, report.stripped_prefixes = best
    return target, dict(state)


def _pop_stored_normalization(state: dict, expected: Mapping, found, layouts):
    """Step 3: normalisation buffers the file stores outside the network's keys (the layouts'
    ``normalization_keys``, then :data:`NORMALIZATION_KEYS`) are taken out of ``state``; the first
    pair found is the normalisation unless a layout already gave one."""
    pairs = [pair for layout in layouts for pair in layout.normalization_keys] + list(NORMALIZATION_KEYS)
    for mean_key, std_key in pairs:
        if mean_key in state and std_key in state and mean_key not in expected and std_key not in expected:
            mean, std = state.pop(mean_key), state.pop(std_key)
            if found is None:
                found = (mean, std, f"checkpoint ({mean_key}/{std_key})")
    return found


def _replaceable_head(state: dict, expected: Mapping, mismatched, missing, unexpected, num_classes: int):
    """The keys of a classifier head that differ from the architecture's only in class count, and
    that count, when they are the only misfit; else ([], None)."""
    head = [
        key
        for key in mismatched
        if state[key].ndim == expected[key].ndim >= 1
        and expected[key].shape[0] == num_classes
        and state[key].shape[1:] == expected[key].shape[1:]
    ]
    head_classes = {int(state[key].shape[0]) for key in head}
    if head and head == mismatched and len(head_classes) == 1 and not missing and not unexpected:
        return head, head_classes.pop()
    return [], None


def _load_strictly(target, state: dict, normalizer_keys: set, *, num_classes: int, replace_head: bool, source: str,
                   architecture: str, report: FitReport) -> None:
    """Step 4: every key of ``target`` must be in ``state`` with its shape (BatchNorm counters and
    normalisation buffers may be missing; a classifier head of another class count is replaced
    only with ``replace_head``), and no other key; then the weights are loaded."""
    expected = target.state_dict()
    missing = [key for key in expected if key not in state]
    report.tolerated_missing = [key for key in missing if key.endswith("num_batches_tracked") or key in normalizer_keys]
    missing = [key for key in missing if key not in report.tolerated_missing]
    unexpected = [key for key in state if key not in expected]
    mismatched = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    head, classes = _replaceable_head(state, expected, mismatched, missing, unexpected, num_classes)
    if head:
        if not replace_head:
            raise PagbenchError(
                f"{source} has a {classes}-class classifier ({listing(head)}) but the dataset has {num_classes} classes: "
                f"pagbench does not score a model on labels it was not trained for; pass --replace-head to put an untrained "
                f"{num_classes}-class head on it (the result is then marked requires_finetuning)"
            )
        for key in head:
            state.pop(key)
        report.replaced_head, report.checkpoint_classes, mismatched = head, classes, []
    if missing or unexpected or mismatched:
        matched = len(expected) - len(missing) - len(report.tolerated_missing) - len(mismatched)
        raise PagbenchError(strict_load_error(source, architecture, state, expected, missing=missing, unexpected=unexpected,
                                              mismatched=mismatched, matched=matched, stripped=report.stripped_prefixes))
    merged = {key: state.get(key, value) for key, value in expected.items()}
    target.load_state_dict(merged, strict=True)


def _set_normalization(module, state: dict, found, normalizer_keys: set, *, source: str, architecture: str,
                       report: FitReport) -> dict:
    """Step 5: the normalisation found (user's, layout's or file's) goes into the architecture's
    single normalisation layer; returns the module's normalisation layers by name."""
    from pagbench.models.wrappers import normalizers

    all_normalizers = normalizers(module)
    for name, normalizer in all_normalizers.items():
        for buffer in ("mean", "std"):
            values = getattr(normalizer, buffer)
            if not bool(torch.isfinite(values).all()):
                raise PagbenchError(f"{source}: its normalisation {buffer} ({name + '.' if name else ''}{buffer}) holds non-finite values {values.flatten().tolist()}")
    if found is not None:
        mean, std, where = found
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
    return all_normalizers


def _set_clamp(all_normalizers: dict, layout, clamp: bool | None, *, architecture: str, report: FitReport) -> None:
    """Step 6: the input clamp to [0,1] — on for layouts whose models clamp unless ``clamp`` is
    False, as ``clamp`` says otherwise — and what the card says about it."""
    clamping = layout is not None and layout.clamps_input
    if not clamping and clamp is None:
        return
    wanted = clamping if clamp is None else bool(clamp)
    can_clamp = len(all_normalizers) == 1 and hasattr(next(iter(all_normalizers.values())), "clamp")
    if can_clamp:
        next(iter(all_normalizers.values())).clamp = wanted
    if wanted and not can_clamp:
        report.clamp = layout.clamp_unavailable if clamping else "none"
        if clamp:
            raise PagbenchError(f"{architecture} has no pagbench normalisation layer that could clamp its input to [0,1]")
    elif wanted:
        report.clamp = layout.clamp_kept if clamping else "clamped to [0,1] before normalisation"
    else:
        report.clamp = layout.clamp_dropped if clamping else "none"


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
    layouts: list[CheckpointLayout] | None = None,
) -> FitReport:
    """Load ``state`` (a dict of tensors) into ``module`` strictly; see the module doc.

    ``module`` is an untrained architecture, e.g. a :class:`pagbench.models.wrappers.ImageClassifier`
    (the weights then load into ``module.network``, or into the whole wrapper if the keys say so).
    ``normalization`` = (mean, std) given by the user overrides any normalisation in ``state``.
    ``num_classes`` is the dataset's class count. ``clamp``: None clamps inputs to [0,1] for
    layouts whose models clamp (:attr:`CheckpointLayout.clamps_input`) only, True / False force it
    on / off (on normalisation layers made by :func:`pagbench.models.loading.normalize_module`).
    ``layouts``: the layouts to recognise (default: those the plugins declare). Raises a one-line
    :class:`PagbenchError`.
    """
    from pagbench.models.wrappers import normalizers

    report = report or FitReport()
    state = {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not state:
        raise PagbenchError(f"{source} holds no tensors")
    layouts = checkpoint_layouts() if layouts is None else list(layouts)
    state, layout, found = _recognise_layout(module, state, layouts, report)
    target, state = _choose_target(module, state, report)
    found = _pop_stored_normalization(state, target.state_dict(), found, layouts)
    normalizer_keys = {f"{name}.{buffer}" if name else buffer for name in normalizers(target) for buffer in ("mean", "std")}
    _load_strictly(target, state, normalizer_keys, num_classes=num_classes, replace_head=replace_head, source=source,
                   architecture=architecture, report=report)
    if normalization is not None:
        found = (normalization[0], normalization[1], "model options mean/std")
    all_normalizers = _set_normalization(module, state, found, normalizer_keys, source=source, architecture=architecture, report=report)
    _set_clamp(all_normalizers, layout, clamp, architecture=architecture, report=report)
    return report
