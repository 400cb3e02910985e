"""The Python entry points: evaluate registered names or in-memory modules, register models.

``pagbench.evaluate(model, ...)`` takes a registered model name (``"bayes"``, ``"timm:resnet18"``,
``"checkpoint:PATH"``), a ``torch.nn.Module``, or a list of them; several models share the
dataset, the providers and the geometry (scores and tangent bases are computed once).
``pagbench.register_model(...)`` registers a model for this process, exactly as a plugin's
``register_models`` hook would, so it can be named like any other.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from pagbench.extensions.records import ModelCard, ModelEntry, ModelFamily
from pagbench.errors import PagbenchError

#: Keyword arguments of :func:`evaluate` that are not :class:`~pagbench.evaluation.options.EvaluationOptions` fields.
_RUN_ARGUMENTS = ("cache", "progress", "per_image")
_MODULE_ARGUMENTS = ("name", "card", "mean", "std", "input_size", "output")
_registered = itertools.count()


def _is_module(value) -> bool:
    import sys

    torch = sys.modules.get("torch")  # a module object implies torch is already imported
    return torch is not None and isinstance(value, torch.nn.Module)


def _floats(value, what: str) -> list[float]:
    import math

    try:
        values = [float(v) for v in (value.flatten().tolist() if hasattr(value, "flatten") else value)]
    except (TypeError, ValueError):
        raise PagbenchError(f"pagbench.evaluate: {what} must be a sequence of numbers, got {value!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise PagbenchError(f"pagbench.evaluate: {what} must be finite numbers, got {value!r}")
    return values


def _input_size(value) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = [value, value] if isinstance(value, int) else list(value)
    if len(parts) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in parts):
        raise PagbenchError(f"pagbench.evaluate: input_size must be a positive int or (H, W), got {value!r}")
    return (parts[0], parts[1])


def _checked_card(card: ModelCard, where: str = "pagbench.evaluate") -> ModelCard:
    """``card`` with the checks the CLI applies to ``--model-option card.FIELD``: a strength is
    None or a finite number ≥ 0 (stored as a float), text fields are strings."""
    from pagbench.evaluation.checks import card_strength

    strength = card_strength(card.strength, f"{where}: card strength")
    for item in dataclasses.fields(ModelCard):
        value = getattr(card, item.name)
        if item.name in ("strength", "provenance", "requires_finetuning") or value is None:
            continue
        if item.name == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise PagbenchError(f"{where}: card seed must be a whole number, got {value!r}")
            continue
        if not isinstance(value, str):
            raise PagbenchError(f"{where}: card {item.name} must be text, got {value!r}")
    if not isinstance(card.provenance, dict):
        raise PagbenchError(f"{where}: card provenance must be a dict, got {type(card.provenance).__name__}")
    return dataclasses.replace(card, strength=strength) if strength != card.strength else card


def _card(card, architecture: str, provenance: dict) -> ModelCard:
    return _checked_card(_plain_card(card, architecture, provenance))


def _plain_card(card, architecture: str, provenance: dict) -> ModelCard:
    if card is None:
        return ModelCard(
            architecture=architecture, dataset="unspecified", regime="unspecified",
            source="a torch.nn.Module passed to pagbench.evaluate", licence="unspecified", provenance=provenance,
        )
    if isinstance(card, ModelCard):
        return dataclasses.replace(card, provenance={**provenance, **card.provenance})
    if isinstance(card, dict):
        fields = {f.name for f in dataclasses.fields(ModelCard)}
        unknown = sorted(set(card) - fields)
        if unknown:
            raise PagbenchError(f"pagbench.evaluate: card has unknown fields {', '.join(unknown)} (ModelCard fields: {', '.join(sorted(fields))})")
        values = {"architecture": architecture, "dataset": "unspecified", "regime": "unspecified",
                  "source": "a torch.nn.Module passed to pagbench.evaluate", "licence": "unspecified", **card}
        values["provenance"] = {**provenance, **dict(values.get("provenance") or {})}
        return ModelCard(**values)
    raise PagbenchError(f"pagbench.evaluate: card must be a pagbench.ModelCard or a dict, got {type(card).__name__}")


def wrap_module(module, *, name=None, card=None, mean=None, std=None, input_size=None, output=None):
    """A :class:`~pagbench.models.loading.LoadedModel` for an in-memory module.

    ``module`` maps images (B, C, H, W) in [0,1] to logits, unless ``mean``/``std`` (per
    channel) are given: then pagbench normalises inside the model, (x − mean) / std.
    ``input_size`` (H, W) resizes images inside the model (bilinear, antialiased when
    shrinking), so gradients stay w.r.t. the dataset's pixels. ``output`` is the index of the
    logits in a module that returns a tuple or list (e.g. 0 for the robustness library's
    ``AttackerModel``). Everything done to the input is recorded in ``card.provenance["input"]``.
    """
    import torch

    from pagbench.models.loading import LoadedModel
    from pagbench.models.wrappers import ImageClassifier, SelectOutput
    if not isinstance(module, torch.nn.Module):
        raise PagbenchError(f"pagbench.evaluate: model must be a registered model name or a torch.nn.Module, got {type(module).__name__}")
    architecture = type(module).__name__
    if (mean is None) != (std is None):
        raise PagbenchError("pagbench.evaluate: mean and std go together")
    size = _input_size(input_size)
    if output is not None and (not isinstance(output, int) or isinstance(output, bool)):
        raise PagbenchError(f"pagbench.evaluate: output must be the int index of the logits in the module's output, got {output!r}")
    recorded: dict[str, Any] = {"normalization": "none (the module takes [0,1] images)", "resize": "none", "clamp": "none added"}
    wrapped = module
    if output is not None:
        wrapped = SelectOutput(wrapped, output)
        recorded["output"] = f"element {output} of the module's tuple output"
    mean_values, std_values = [0.0], [1.0]  # the identity, when only a resize is asked for
    if mean is not None:
        mean_values, std_values = _floats(mean, "mean"), _floats(std, "std")
        if not all(v > 0 for v in std_values):
            raise PagbenchError(f"pagbench.evaluate: std must be positive, got {std_values}")
        recorded["normalization"] = f"(x - mean) / std inside the model, mean={mean_values}, std={std_values}"
    if size is not None:
        recorded["resize"] = f"to {size[0]}x{size[1]} inside the model (bilinear, antialiased when shrinking)"
    if mean is not None or size is not None:
        wrapped = ImageClassifier(wrapped, mean_values, std_values, input_size=size)
    model_name = name if name is not None else f"module:{architecture}"
    if not isinstance(model_name, str) or not model_name.strip():
        raise PagbenchError(f"pagbench.evaluate: name must be a non-empty string, got {model_name!r}")
    return LoadedModel(model_name, wrapped, _card(card, architecture, {"input": recorded}), "python")


def evaluate(model, **options):
    """Evaluate ``model`` and return its result document.

    ``model`` is a registered model name, a ``torch.nn.Module`` taking images (B, C, H, W) in
    [0,1], a list of these (a list of results is returned) or a dict ``{name: module or
    registered name}`` (a dict of results). Keyword arguments are the fields of
    :class:`pagbench.evaluation.options.EvaluationOptions` (``dataset``, ``num_images``, ``gradient``, …),
    ``cache``, ``progress`` (default False) and ``per_image``; for modules also ``name``, ``card``
    (a ModelCard or a dict of its fields), ``mean``/``std``, ``input_size`` and ``output`` (see
    :func:`wrap_module`; with several modules they apply to each). Several models share the
    dataset, providers and geometry. Bad input raises a one-line :class:`PagbenchError`.
    """
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import evaluate_many

    named = isinstance(model, dict)
    several = named or isinstance(model, (list, tuple))
    items = list(model.values()) if named else list(model) if several else [model]
    if not items:
        raise PagbenchError("pagbench.evaluate: no model given")
    run = {key: options.pop(key) for key in _RUN_ARGUMENTS if key in options}
    run.setdefault("progress", False)
    module_arguments = {key: options.pop(key) for key in _MODULE_ARGUMENTS if key in options}
    modules = [item for item in items if _is_module(item)]
    if module_arguments and not modules:
        raise PagbenchError(f"pagbench.evaluate: {', '.join(module_arguments)} apply to torch.nn.Module models; none was given")
    if "name" in module_arguments and (len(modules) > 1 or named):
        raise PagbenchError("pagbench.evaluate: name= names one module; for several, pass a dict {name: module}")
    from pagbench.evaluation.options import option_names

    fields = option_names()  # the declared options: EvaluationOptions fields and metric options
    unknown = sorted(set(options) - fields)
    if unknown:
        raise PagbenchError(f"pagbench.evaluate: unknown argument(s) {', '.join(unknown)}; options are {', '.join(sorted(fields | set(_RUN_ARGUMENTS) | set(_MODULE_ARGUMENTS)))}")
    if "model_options" in options and not isinstance(options["model_options"], dict):
        raise PagbenchError("pagbench.evaluate: model_options must be a dict")

    all_options, loaded = [], []
    keys = list(model) if named else [None] * len(items)
    used: dict[str, int] = {}  # default names given so far: a second module of one class is NAME-2
    for key, item in zip(keys, items):
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise PagbenchError(f"pagbench.evaluate: model names must be non-empty strings, got {key!r}")
        if isinstance(item, str):
            if key is not None and key != item:
                raise PagbenchError(f"pagbench.evaluate: {key!r}: a registered model keeps its own name ({item!r}); rename modules only")
            all_options.append(EvaluationOptions.create(model=item, **options))
            loaded.append(None)
        elif _is_module(item):
            arguments = dict(module_arguments)
            if key is not None:
                arguments["name"] = key
            elif "name" not in arguments:
                base = f"module:{type(item).__name__}"
                used[base] = used.get(base, 0) + 1
                arguments["name"] = base if used[base] == 1 else f"{base}-{used[base]}"
            wrapped = wrap_module(item, **arguments)
            if options.get("model_options"):
                raise PagbenchError("pagbench.evaluate: model_options apply to registered models; a module is used as it is")
            all_options.append(EvaluationOptions.create(model=wrapped.name, **options))
            loaded.append(wrapped)
        else:
            raise PagbenchError(f"pagbench.evaluate: model must be a registered model name or a torch.nn.Module, got {type(item).__name__}")
    try:
        results = list(evaluate_many(all_options, models=loaded, **run))
    except TypeError as error:
        if "EvaluationOptions" in str(error):
            raise PagbenchError(f"pagbench.evaluate: {error}") from None
        raise
    if named:
        return dict(zip(keys, results))
    return results if several else results[0]


def register_model(model, factory=None, *, card: ModelCard | None = None, description: str = "") -> str:
    """Register a model for this process, as a plugin's ``register_models`` hook would.

    ``register_model(ModelEntry(...))`` or ``register_model(ModelFamily(...))``;
    ``register_model("my-net", factory)`` with ``factory(name, dataset, device[, options])``
    returning a module (or :class:`~pagbench.models.loading.BuiltModel`); or
    ``register_model("my-net", module)`` for a ready ``torch.nn.Module``. The name can then be
    used like any other (``pagbench.evaluate("my-net")``, ``--arch my-net``). Returns the plugin
    name, for :func:`unregister_model`.
    """
    from pagbench.extensions.manager import get_plugin_manager

    if isinstance(model, (ModelEntry, ModelFamily)):
        if factory is not None or card is not None:
            raise PagbenchError("register_model: give either an entry or a name with a factory, not both")
        entry = model
    elif isinstance(model, str) and model:
        architecture = None
        if factory is None:
            raise PagbenchError(f"register_model({model!r}): give a factory or a torch.nn.Module")
        if _is_module(factory):
            module = factory

            def factory(name, dataset, device, _module=module):
                return _module  # evaluated as it is; the runner puts its mode and flags back afterwards

            def architecture(name, dataset, device, _module=module):
                import copy

                return copy.deepcopy(_module)  # checkpoint:FILE --arch NAME loads into a copy, never the object

        elif not callable(factory):
            raise PagbenchError(f"register_model({model!r}): factory must be callable or a torch.nn.Module, got {type(factory).__name__}")
        if card is not None:
            if not isinstance(card, ModelCard):
                raise PagbenchError(f"register_model({model!r}): card must be a pagbench.ModelCard, got {type(card).__name__}")
            card = _checked_card(card, f"register_model({model!r})")
        entry = ModelEntry(
            name=model,
            factory=factory,
            architecture=architecture,
            card=card or ModelCard(architecture="unspecified", dataset="unspecified", regime="unspecified",
                                   source="registered in-process with pagbench.register_model", description=description),
        )
    else:
        raise PagbenchError(f"register_model: expected a ModelEntry, a ModelFamily or a name, got {type(model).__name__}")

    from pagbench.extensions.hookspecs import hookimpl

    class _InProcessModel:
        @hookimpl
        def register_models(self, register):
            register(entry)

    plugin_name = f"python:{entry.name}#{next(_registered)}"
    get_plugin_manager().register(_InProcessModel(), name=plugin_name)
    return plugin_name


def unregister_model(plugin_name: str) -> None:
    """Undo :func:`register_model` (pass the name it returned)."""
    from pagbench.extensions.manager import get_plugin_manager

    manager = get_plugin_manager()
    if manager.get_plugin(plugin_name) is None:
        raise PagbenchError(f"unregister_model: no in-process model plugin {plugin_name!r}")
    manager.unregister(name=plugin_name)
