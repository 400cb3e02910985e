"""Building ``robustness:PATH`` models (imports torch; the robustness library only if installed).

What the model computes is what the library's ``AttackerModel(model, dataset)(x)[0]`` computes:
``x`` clamped to [0,1] (``InputNormalize``), normalised with the checkpoint's ``new_mean`` /
``new_std``, then the network. pagbench builds it as a
:class:`pagbench.models.wrappers.ImageClassifier` (normalisation at ``.normalize``, clamp on, network at
``.network``) around the library's own architecture class, or around pagbench's state-dict
compatible re-implementation when the library does not import.
"""

from __future__ import annotations

import argparse
import difflib
import math
from typing import Mapping

import torch

from pagbench.plugin import FitReport, InertObject, fit_checkpoint, read_checkpoint, unwrap
from pagbench.plugin import ModelCard
from pagbench.plugin import PagbenchError
from pagbench.plugin import BuiltModel, check_model_options, option_flag, with_normalization

from .layout import CLAMP_DROPPED, CLAMP_KEPT, is_robustness_layout, robustness_layout, split_robustness_layout

from . import PREFIX
from .architectures import DATASETS, build_network, canonical_arch, family_of, resnet_from_keys

MODEL_OPTIONS = ("arch", "dataset", "clamp", "implementation", "output", "trust_checkpoint", "checkpoint_key", "replace_head")
#: The default architecture: the library's robust CIFAR-10 and ImageNet releases are ResNet-50s.
DEFAULT_ARCH = "resnet50"
#: pagbench dataset → the library dataset whose architectures and normalisation fit it.
FROM_PAGBENCH = {"cifar10": "cifar", "imagenet": "imagenet", "imagenet64": "imagenet"}
#: Library dataset → the card's ``dataset`` (what the model was trained on).
TRAINED_ON = {"cifar": "cifar10", "cinic": "cinic10", "imagenet": "imagenet-1k", "restricted_imagenet": "restricted-imagenet", "places365": "places365"}
#: Training arguments worth recording on the card when the checkpoint stores them.
RECORDED_ARGS = ("arch", "dataset", "adv_train", "constraint", "eps", "attack_lr", "attack_steps", "epochs", "lr", "batch_size", "weight_decay", "exp_name")


# --------------------------------------------------------------------------------------- options
def _output_index(options: dict) -> int | None:
    value = options.get("output")
    if value is None:
        return None
    try:
        index = int(str(value).strip())
    except ValueError:
        index = -1
    if index < 0:
        raise PagbenchError(f"--model-option output: expected the index (0, 1, …) of the logits in the module's tuple output, got {value!r}")
    return index


def _library_dataset(value) -> str:
    name = str(value).strip().lower()
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise PagbenchError(f"--model-option dataset: unknown robustness-library dataset {value!r}; {hint}(known: {', '.join(DATASETS)})")
    return name


# -------------------------------------------------------------------------------------- metadata
def _plain(value) -> dict:
    """The plain (str / number / bool / None) entries of stored training arguments: an argparse
    Namespace, a dict, or an inert placeholder of e.g. a cox ``Parameters`` (its ``params``)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    elif isinstance(value, InertObject):
        state = value.state
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0] or state[1]
        if isinstance(state, Mapping) and isinstance(state.get("params"), Mapping):
            state = state["params"]  # cox.utils.Parameters keeps its arguments in .params
        elif not isinstance(state, Mapping) and value.args and isinstance(value.args[0], Mapping):
            state = value.args[0]
        value = state
    if not isinstance(value, Mapping):
        return {}
    return {str(key): item for key, item in value.items() if isinstance(item, (str, int, float, bool, type(None)))}


def _training_args(content) -> dict:
    if not isinstance(content, Mapping):
        return {}
    for key in ("args", "params", "hparams", "config"):
        found = _plain(content.get(key))
        if found:
            return found
    return {}


def _number(value):
    """A stored scalar (a number or a one-element tensor) when it is finite, else None: metadata
    such as ``epoch: inf`` or ``nat_prec1: nan`` is not recorded (it would break the result file)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def _regime(args: dict, where: str):
    """(regime, strength) from stored training arguments; ("unspecified", None) without them.

    A stored ``eps`` that is not a finite number ≥ 0 (``"8/0"``, ``1e999``, NaN, ``"abc"``) is a
    one-line :class:`PagbenchError` naming the file ``where``, before anything is evaluated (the
    same check as ``--model-option card.strength``); an absent ``eps`` leaves the strength unset."""
    from pagbench.plugin import card_strength

    if "adv_train" not in args:
        return "unspecified", None
    if not args["adv_train"]:
        return "standard", None
    raw = args.get("eps")
    what = f"robustness-library checkpoint {where}: stored args.eps"
    if raw is None:
        strength = None
    else:
        try:
            value = eval_free(raw)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            raise PagbenchError(f"{what} {raw!r} is not a number") from None
        strength = card_strength(value, what)
    return ("pgd" if str(args.get("constraint")) == "2" else f"adversarial ({args.get('constraint')})"), strength


def eval_free(value):
    """A stored ``eps`` such as ``0.5`` or ``"8/255"`` as a float, without ``eval``."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return float(numerator) / float(denominator)
    return float(text)


# ----------------------------------------------------------------------------------------- model
class _Logits(torch.nn.Module):
    """The logits of a module: element ``index`` of a tuple output (e.g. 0 for an
    ``AttackerModel``'s ``(logits, input)``), or the output itself when it is a tensor and no index
    was asked for."""

    def __init__(self, network, index: int | None):
        super().__init__()
        self.network, self.index = network, index

    def forward(self, images):
        output = self.network(images)
        if isinstance(output, (tuple, list)):
            if self.index is None:
                raise TypeError(
                    f"the module returns a {type(output).__name__} of {len(output)}; choose the logits with "
                    "--model-option output=INDEX (0 for the robustness library's AttackerModel)"
                )
            return output[self.index]
        if self.index is not None:
            raise TypeError(f"--model-option output={self.index} was given but the module returns a {type(output).__name__}, not a tuple")
        return output


def _is_attacker_model(module) -> bool:
    normalizer = getattr(module, "normalizer", None)
    return (
        type(module).__name__ == "AttackerModel"
        and isinstance(getattr(module, "model", None), torch.nn.Module)
        and all(isinstance(getattr(normalizer, name, None), torch.Tensor) for name in ("new_mean", "new_std"))
    )


def _floats(tensor) -> list[float]:
    return [float(v) for v in torch.as_tensor(tensor).flatten().tolist()]


def robustness_model(name: str, dataset, options: dict) -> BuiltModel:
    check_model_options(name, options, MODEL_OPTIONS)
    path = name[len(PREFIX) :]
    if not path:
        raise PagbenchError("robustness-library checkpoints are named robustness:PATH")
    clamp = option_flag({"clamp": options.get("clamp", True)}, "clamp")
    output = _output_index(options)
    implementation = options.get("implementation")
    if implementation is not None and implementation not in ("library", "pagbench"):
        raise PagbenchError(f"--model-option implementation: expected library or pagbench, got {implementation!r}")
    chosen_dataset = _library_dataset(options["dataset"]) if options.get("dataset") is not None else None
    if int(dataset.image_shape[0]) != 3:
        raise PagbenchError(f"robustness-library models take RGB images; dataset {dataset.name!r} has {dataset.image_shape[0]} channel(s)")

    checkpoint = read_checkpoint(path, trust=option_flag(options, "trust_checkpoint"), inert_objects=True)
    content = checkpoint.content
    args = _training_args(content)
    key = options.get("checkpoint_key")
    if key is None and isinstance(content, Mapping) and "model" in content:
        key = "model"  # the library's own preference (make_and_restore_model: 'model', else 'state_dict')
    weights, wrapper_keys = unwrap(checkpoint, key)
    resolved = str(checkpoint.path.resolve())
    provenance = {"weights_file": resolved, "sha256": checkpoint.sha256, "format": checkpoint.format, "route": "robustness:PATH"}
    if checkpoint.trusted_load:
        provenance["trusted_load"] = True
    if checkpoint.inert_objects:
        provenance["inert_objects"] = checkpoint.inert_objects  # refused metadata, read as placeholders
    if isinstance(content, Mapping):
        epoch = _number(content.get("epoch"))
        if epoch is not None and epoch >= 0 and float(epoch).is_integer():
            provenance["epoch"] = int(epoch)
        reported = {k: _number(content[k]) for k in ("nat_prec1", "adv_prec1") if _number(content.get(k)) is not None}
        if reported:
            provenance["library_reported"] = reported
    if args:
        provenance["training_args"] = {k: args[k] for k in RECORDED_ARGS if k in args}
    source = f"file {resolved} (sha256 {checkpoint.sha256[:16]})"
    regime, strength = _regime(args, path)

    if isinstance(weights, torch.nn.DataParallel):
        weights = weights.module
    if isinstance(weights, torch.nn.Module) and _is_attacker_model(weights) and clamp:
        return _whole_attacker_model(weights, output, wrapper_keys, provenance, source, regime, strength)
    if isinstance(weights, torch.nn.Module) and not _is_attacker_model(weights):
        return _whole_network(weights, output, chosen_dataset, args, dataset, clamp, wrapper_keys, provenance, source, regime, strength)
    if isinstance(weights, torch.nn.Module):  # an AttackerModel and clamp=false: rebuild it from its weights
        weights = weights.state_dict()
        provenance["loaded_as"] = "weights of a whole AttackerModel (trusted), rebuilt without its clamp"
    if output is not None:
        raise PagbenchError("--model-option output applies to whole pickled modules; this checkpoint holds weights, whose network returns logits")

    state = {str(k): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if is_robustness_layout(state):
        network_state = split_robustness_layout(state)[0]
    else:
        network_state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    library_dataset, dataset_from = _resolve_dataset(chosen_dataset, args, dataset, network_state, checkpoint.path)
    classes, mean, std, family = DATASETS[library_dataset]
    arch, arch_from = _resolve_arch(options.get("arch"), args, network_state, family)
    _check_image_size(family, arch, dataset)
    network, implementation_used = build_network(arch, family, dataset.num_classes, implementation)
    model = with_normalization(network, mean, std, clamp=clamp)
    try:
        report = fit_checkpoint(
            model,
            state,
            num_classes=dataset.num_classes,
            replace_head=option_flag(options, "replace_head"),
            source=f"checkpoint {checkpoint.path}",
            architecture=f"the robustness library's {family} {arch}",
            report=FitReport(wrapper_keys=wrapper_keys),
            clamp=clamp,
            layouts=[robustness_layout()],  # this route's own layout, whichever other plugins are loaded
        )
    except PagbenchError as error:
        looks = family_of(network_state)
        if looks is not None and looks != family:
            raise PagbenchError(f"{error}; the weights look like the library's {looks} architectures (--model-option dataset={looks})") from None
        raise
    report.clamp = CLAMP_KEPT if clamp else CLAMP_DROPPED
    if report.normalization == "architecture default":
        report.normalization = f"robustness library dataset {library_dataset!r} defaults (the checkpoint stores no normalizer)"
    provenance.update(
        architecture=arch,
        architecture_from=arch_from,
        library_dataset=library_dataset,
        library_dataset_from=dataset_from,
        implementation=implementation_used,
    )
    provenance.update(report.as_dict())
    provenance["input"] = {
        "clamp": report.clamp,
        "normalization": f"(x - mean) / std inside the model, mean={report.mean}, std={report.std}",
        "resize": "none (the dataset's images are fed at their own size)",
    }
    card = ModelCard(
        architecture=f"robustness library {family} {arch}",
        dataset=TRAINED_ON[library_dataset] if dataset_from in ("model option", "checkpoint metadata (args.dataset)") else "unspecified",
        regime=regime,
        strength=strength,
        source=source,
        licence="unspecified",
        description="MadryLab robustness-library checkpoint",
        requires_finetuning=bool(report.replaced_head),
        provenance=provenance,
    )
    return BuiltModel(model, card)


def _resolve_dataset(chosen, args: dict, dataset, network_state: dict, path):
    if chosen is not None:
        return chosen, "model option"
    stored = str(args.get("dataset", "")).strip().lower()
    if stored in DATASETS:
        return stored, "checkpoint metadata (args.dataset)"
    family = family_of(network_state)
    candidate = FROM_PAGBENCH.get(dataset.name)
    if candidate is not None and (family is None or DATASETS[candidate][3] == family):
        return candidate, f"pagbench dataset {dataset.name!r}"
    if family is not None:
        return family, f"the weights' structure ({'linear' if family == 'cifar' else 'fc'} head: {family} architectures)"
    raise PagbenchError(
        f"cannot tell which robustness-library dataset {path} was trained on; pass --model-option dataset="
        + "|".join(DATASETS)
    )


def _resolve_arch(chosen, args: dict, network_state: dict, family: str):
    if chosen is not None:
        return canonical_arch(str(chosen).strip(), family), "model option"
    stored = args.get("arch")
    if isinstance(stored, str) and stored.strip():
        return canonical_arch(stored.strip(), family), "checkpoint metadata (args.arch)"
    inferred = resnet_from_keys(network_state, family)
    if inferred is not None:
        return inferred, "the weights' structure (ResNet depth and width)"
    return canonical_arch(DEFAULT_ARCH, family), f"default ({DEFAULT_ARCH}, as the library's robust releases; pass --model-option arch=NAME)"


def _check_image_size(family: str, arch: str, dataset) -> None:
    size = tuple(int(v) for v in dataset.image_shape[1:])
    if family == "cifar" and size != (32, 32):
        raise PagbenchError(
            f"the robustness library's CIFAR architectures ({arch}) take 32x32 images; dataset {dataset.name!r} has "
            f"{size[0]}x{size[1]} (pagbench does not resize them for this route)"
        )


def _whole_attacker_model(module, output, wrapper_keys, provenance, source, regime, strength) -> BuiltModel:
    index = 0 if output is None else output
    provenance.update(
        loaded_as="whole AttackerModel (trusted unpickling): the library's own forward",
        checkpoint_keys=wrapper_keys,
        output=f"element {index} of the AttackerModel's (logits, input) output" + (" (detected)" if output is None else ""),
        input={
            "clamp": CLAMP_KEPT + " (the AttackerModel's own normalizer)",
            "normalization": f"(x - new_mean) / new_std by the AttackerModel, mean={_floats(module.normalizer.new_mean)}, std={_floats(module.normalizer.new_std)}",
            "resize": "none (the dataset's images are fed at their own size)",
        },
    )
    card = ModelCard(
        architecture=f"robustness library AttackerModel({type(module.model).__name__})",
        dataset="unspecified", regime=regime, strength=strength, source=source, licence="unspecified",
        description="MadryLab robustness-library AttackerModel", provenance=provenance,
    )
    return BuiltModel(_Logits(module, index), card)


def _whole_network(module, output, chosen, args, dataset, clamp, wrapper_keys, provenance, source, regime, strength) -> BuiltModel:
    """A whole pickled classifier (an AttackerModel's ``.model``): it takes normalised images, so
    the library dataset's normalisation (and the clamp) go in front of it, as in AttackerModel."""
    state = {k: v for k, v in module.state_dict().items()}
    library_dataset, dataset_from = _resolve_dataset(chosen, args, dataset, state, provenance["weights_file"])
    _, mean, std, _ = DATASETS[library_dataset]
    model = with_normalization(_Logits(module, output), mean, std, clamp=clamp)
    provenance.update(
        loaded_as="whole module (trusted unpickling), taken as the classifier network of an AttackerModel (it takes normalised images)",
        checkpoint_keys=wrapper_keys,
        library_dataset=library_dataset,
        library_dataset_from=dataset_from,
        input={
            "clamp": CLAMP_KEPT if clamp else CLAMP_DROPPED,
            "normalization": f"(x - mean) / std inside the model, robustness library dataset {library_dataset!r} defaults, mean={list(mean)}, std={list(std)}",
            "resize": "none (the dataset's images are fed at their own size)",
        },
    )
    if output is not None:
        provenance["output"] = f"element {output} of the module's tuple output"
    card = ModelCard(
        architecture=type(module).__name__, dataset="unspecified", regime=regime, strength=strength, source=source,
        licence="unspecified", description="MadryLab robustness-library network (whole module)", provenance=provenance,
    )
    return BuiltModel(model, card)
