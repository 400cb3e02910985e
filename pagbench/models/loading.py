"""Loading models from the registry, and the wrappers every model provider can use.

Conventions: a model takes images (B, C, H, W) float32 in [0,1] and returns logits
(B, num_classes); normalisation lives inside it (:class:`Normalize`), so gradients are w.r.t.
[0,1] pixels. Models are put in eval mode with frozen parameters before evaluation, so BatchNorm
statistics never change and no gradient reaches the parameters.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pagbench.extensions.records import ModelCard, ModelEntry, ModelFamily
from pagbench.errors import PagbenchError

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedModel:
    name: str
    module: "torch.nn.Module"
    card: ModelCard
    plugin: str
    #: :func:`pagbench.evaluation.sanity.training_layers` of the module as its factory returned it, before
    #: pagbench's ``eval()`` (None: not taken; the runner then takes it from ``module``)
    handed_over: dict | None = None
    #: :class:`ModuleState` of the module as it was handed over, restored after the evaluation
    #: (None: not taken yet; the runner takes it before its ``eval()``)
    original: "ModuleState | None" = None


class ModuleState:
    """What evaluating changes in a module, captured before and put back after, so the caller's
    own object is left as it was: every submodule's train/eval mode, every parameter's
    ``requires_grad`` and, when all its tensors were on one device, that device.

    Restoring rather than evaluating a copy: a copy of a large model costs its memory again, while
    this costs a flag per submodule and parameter. (A change of ``--dtype`` is lossy, so the runner
    converts a copy instead; see ``pagbench.evaluation.runner``.)
    """

    def __init__(self, module):
        self.module = module
        self.training = [(submodule, submodule.training) for submodule in module.modules()]
        self.requires_grad = [(parameter, parameter.requires_grad) for parameter in module.parameters()]
        devices = {tensor.device for tensor in (*module.parameters(), *module.buffers())}
        self.device = devices.pop() if len(devices) == 1 else None

    def restore(self) -> None:
        """Put the captured modes, ``requires_grad`` flags and device back."""
        if self.device is not None and any(t.device != self.device for t in (*self.module.parameters(), *self.module.buffers())):
            self.module.to(self.device)
        for submodule, training in self.training:
            submodule.training = training
        for parameter, requires_grad in self.requires_grad:
            parameter.requires_grad_(requires_grad)


def restore_models(models) -> None:
    """:meth:`ModuleState.restore` for every :class:`LoadedModel` in ``models`` that captured one."""
    for loaded in models:
        if loaded is not None and loaded.original is not None:
            loaded.original.restore()


def normalize_module(mean, std, clamp: bool = False):
    """A module mapping [0,1] images to (x − mean) / std per channel; see
    :func:`pagbench.models.wrappers.normalize_module` (imported lazily: it imports torch)."""
    from pagbench.models.wrappers import normalize_module as build

    return build(mean, std, clamp)


def with_normalization(model, mean, std, clamp: bool = False):
    """``model`` behind a per-channel normalisation, (x − mean) / std: a model taking [0,1] images.

    Returns a :class:`pagbench.models.wrappers.ImageClassifier` (no resizing, no channel change): the
    network is ``.network`` and the normalisation buffers are ``.normalize.mean`` /
    ``.normalize.std``, so a checkpoint of ``model`` loads into it with ``checkpoint:PATH --arch``
    (and a checkpoint holding the normalisation too replaces the defaults). ``clamp=True`` clamps
    the images to [0,1] before normalising (see :func:`normalize_module`).
    """
    from pagbench.models.wrappers import ImageClassifier

    wrapper = ImageClassifier(model, mean, std)
    wrapper.normalize.clamp = bool(clamp)
    return wrapper


def resolve_device(device: str) -> "torch.device":
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PagbenchError(f"device {device!r} requested but CUDA is not available")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise PagbenchError(f"invalid device {device!r}: {error}") from error


def prepare_for_evaluation(module, device) -> "torch.nn.Module":
    """Eval mode, parameters frozen, on ``device``."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise PagbenchError(f"model factory returned {type(module).__name__}, not a torch.nn.Module")
    module = module.to(device).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


@dataclass
class BuiltModel:
    """What a model factory may return instead of a bare module: the module and a card saying
    exactly what was built (where the weights came from, whether the head was replaced)."""

    module: "torch.nn.Module"
    card: ModelCard | None = None


#: How each model option is spelt on the command line (others: ``--model-option KEY=VALUE``).
OPTION_FLAGS = {
    "weights": "--weights",
    "arch": "--arch",
    "trust_checkpoint": "--trust-checkpoint",
    "replace_head": "--replace-head",
}
_CARD_OPTION = "card."


def describe_options(keys) -> str:
    """``["weights", "input_size"]`` → ``"--weights, --model-option input_size"``."""
    return ", ".join(OPTION_FLAGS.get(key, f"--model-option {key}") for key in keys)


def check_model_options(name: str, options: dict, accepted) -> None:
    """Raise a one-line error if ``options`` has a key a model factory does not understand."""
    unknown = [key for key in options if key not in accepted]
    if unknown:
        takes = describe_options(accepted) if accepted else "no model options"
        raise PagbenchError(f"model {name!r} does not take {describe_options(unknown)} (it takes {takes})")


def option_flag(options: dict, key: str) -> bool:
    """A boolean model option: True, or one of the strings 1/true/yes/on (any case)."""
    value = options.get(key, False)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("", "0", "false", "no", "off"):
            return False
        raise PagbenchError(f"{describe_options([key])}: expected true or false, got {value!r}")
    return bool(value)


def _takes_options(function) -> bool:
    try:
        return "options" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def call_model_factory(function, name: str, dataset, device, options: dict | None):
    """Call ``function(name, dataset, device[, options])``, pluggy-style: ``options`` is passed
    only to factories that name it, and a factory that does not refuses any option given."""
    options = dict(options or {})
    if _takes_options(function):
        return function(name, dataset, device, options=options)
    if options:
        raise PagbenchError(f"model {name!r} takes no model options (got {describe_options(options)})")
    return function(name, dataset, device)


def _lazy_builder(module: str, builder: str):
    """A model factory ``(name, dataset, device, options)`` that imports ``module`` on its first
    call and calls its function ``builder`` with ``name``, ``dataset`` and those of ``device`` /
    ``options`` it names (a builder naming no ``options`` refuses any option given)."""

    def build(name, dataset, device, options):
        import importlib

        function = getattr(importlib.import_module(module), builder)
        parameters = inspect.signature(function).parameters
        extra = {"device": device} if "device" in parameters else {}
        if "options" in parameters:
            extra["options"] = options
        elif options:
            raise PagbenchError(f"model {name!r} takes no model options (got {describe_options(options)})")
        return function(name, dataset, **extra)

    build.__qualname__ = build.__name__ = f"lazy {module}.{builder}"
    return build


def lazy_family(prefix: str, module: str, builder: str, *, card, description: str = "", examples: tuple[str, ...] = (),
                architecture=None, card_fields: dict | None = None) -> ModelFamily:
    """A :class:`ModelFamily` for every name starting with ``prefix`` whose factory imports
    ``module`` (a dotted module name, e.g. ``__name__ + ".build"``) only when a model is first
    built, so importing the plugin stays light (no torch, no model library). ``builder`` names the
    function of ``module`` that builds the model: it is called as ``builder(name, dataset[,
    device][, options])``, with ``device`` and ``options`` only when it names them. ``architecture``
    (untrained networks for ``checkpoint:PATH --arch``) is another function name of ``module``,
    called the same way, or a callable used as it is (None: none). ``card(name)`` describes a model;
    ``card_fields``: see :class:`ModelFamily`."""
    if isinstance(architecture, str):
        architecture = _lazy_builder(module, architecture)
    return ModelFamily(prefix=prefix, factory=_lazy_builder(module, builder), card=card, description=description,
                       examples=tuple(examples), architecture=architecture,
                       card_fields={key: tuple(names) for key, names in (card_fields or {}).items()})


def _card_overrides(options: dict) -> dict:
    """Pop ``card.FIELD=VALUE`` options (e.g. ``card.regime=pgd``): they describe the model and
    are applied to its card by pagbench, never passed to the factory."""
    fields = {f.name: f for f in dataclasses.fields(ModelCard)}
    overrides = {}
    for key in [key for key in options if key.startswith(_CARD_OPTION)]:
        field_name, value = key[len(_CARD_OPTION) :], options.pop(key)
        if field_name not in fields or field_name in ("provenance", "requires_finetuning"):
            allowed = ", ".join(f"card.{n}" for n in fields if n not in ("provenance", "requires_finetuning"))
            raise PagbenchError(f"--model-option {key}: not a model card field (choose from {allowed})")
        if field_name == "strength":
            from pagbench.evaluation.checks import card_strength

            value = card_strength(value, f"--model-option {key}")
        overrides[field_name] = value
    return overrides


def load_model(name: str, dataset, device: str = "cpu", options: dict | None = None) -> LoadedModel:
    """Build the registered model ``name`` for ``dataset``, ready for evaluation.

    ``options`` are the model options (``weights``, ``arch``, ``trust_checkpoint``,
    ``replace_head``, anything from ``--model-option``); ``card.FIELD`` options override the
    model card.
    """
    import torch

    from pagbench.extensions.registry import models

    options = dict(options or {})
    card_overrides = _card_overrides(options)
    registry = models()
    entry = registry.get(name)
    if not isinstance(entry, (ModelEntry, ModelFamily)):
        raise PagbenchError(f"model entry for {name!r} has unexpected type {type(entry).__name__}")
    built = call_model_factory(entry.factory, name, dataset, resolve_device(device), options)
    module, card = (built.module, built.card) if isinstance(built, BuiltModel) else (built, None)
    if card is None:
        card = entry.card if isinstance(entry, ModelEntry) else entry.card(name)
    if card_overrides:
        card = dataclasses.replace(card, **card_overrides)
    from pagbench.evaluation.sanity import training_layers

    handed_over = training_layers(module)  # what the module would do as built, before eval()
    original = ModuleState(module) if isinstance(module, torch.nn.Module) else None  # e.g. a registered user object
    return LoadedModel(name, prepare_for_evaluation(module, resolve_device(device)), card, registry.owner(name), handed_over,
                       original)


def build_architecture(name: str, dataset, options: dict | None = None):
    """The network of registered model ``name`` with untrained weights, on the CPU, for loading
    a checkpoint into: the entry's ``architecture`` builder, else its factory. Returns
    ``(module, card)``, the card being the one of ``name`` itself."""
    import torch

    from pagbench.extensions.registry import models

    entry = models().get(name)
    build = entry.architecture or entry.factory
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a replaced head, if any, starts from the same weights every time
        built = call_model_factory(build, name, dataset, torch.device("cpu"), options)
    module, card = (built.module, built.card) if isinstance(built, BuiltModel) else (built, None)
    if not isinstance(module, torch.nn.Module):
        raise PagbenchError(f"architecture {name!r} built a {type(module).__name__}, not a torch.nn.Module")
    if card is None:
        card = entry.card if isinstance(entry, ModelEntry) else entry.card(name)
    return module, card


def check_output_shape(model, dataset, device, split: str | None = None) -> None:
    """Run one image of ``split`` (default: the dataset's first split), then two, through the
    model; raise a clear error if the output is not a (batch, num_classes) logits tensor (two
    images catch an output that ignores the batch before any compute)."""
    import torch

    split_name = split if split is not None else next(iter(dataset.splits))
    chosen = dataset.split(split_name)
    for count in (1, 2) if len(chosen) > 1 else (1,):
        sample = chosen.batch(list(range(count))).images.to(device)
        with torch.no_grad():
            try:
                output = model(sample)
            except Exception as error:
                raise PagbenchError(
                    f"model failed on a {tuple(sample.shape)} image of dataset {dataset.name!r}: {type(error).__name__}: {error}"
                ) from error
        if not isinstance(output, torch.Tensor):
            hint = (
                " (for a module returning (logits, ...), pass output=0 to pagbench.evaluate or --model-option output=0)"
                if isinstance(output, (tuple, list))
                else ""
            )
            raise PagbenchError(f"model returned a {type(output).__name__}, expected a logits tensor{hint}")
        if tuple(output.shape) != (count, dataset.num_classes):
            ignores = f" for a batch of 2 images (after {first} for one)" if count == 2 else ""
            raise PagbenchError(
                f"model output has shape {tuple(output.shape)}{ignores} but dataset {dataset.name!r} needs "
                f"(batch, {dataset.num_classes}) logits"
            )
        first = tuple(output.shape)
