"""Building ``timm:NAME`` models (imports timm and torch).

Class-count policy: a model is scored only on the labels it was trained for. When the weights'
classifier has another class count than the dataset, loading is refused with a message naming
both counts, unless ``--replace-head`` is given: then timm's ``reset_classifier`` puts a fresh,
untrained head of the dataset's size on it (seeded), and the card records
``requires_finetuning: true`` and the replaced head.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from pagbench.checkpoints import fit_checkpoint, read_checkpoint, unwrap
from pagbench.entries import ModelCard
from pagbench.errors import PagbenchError
from pagbench.models import BuiltModel, check_model_options, option_flag
from pagbench.wrappers import ImageClassifier

from . import PREFIX

#: Options of ``timm:NAME`` models, and of ``--arch timm:NAME`` architectures.
MODEL_OPTIONS = ("weights", "trust_checkpoint", "replace_head", "checkpoint_key", "pretrained", "input_size")
ARCHITECTURE_OPTIONS = ("input_size",)
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _offline() -> bool:
    return os.environ.get("PAGBENCH_OFFLINE", "") not in ("", "0", "false", "no")


def resolve(name: str):
    """``timm:resnet18.a1_in1k`` → ("resnet18.a1_in1k", its pretrained config as a dict)."""
    import timm
    from timm.models import get_pretrained_cfg

    model_name = name[len(PREFIX) :]
    if not model_name:
        raise PagbenchError("timm models are named timm:NAME, e.g. timm:resnet18")
    if not timm.models.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else " (see timm.list_models())"
        raise PagbenchError(f"unknown timm model {model_name!r}{hint}")
    try:
        config = get_pretrained_cfg(model_name)
    except RuntimeError as error:  # an unknown pretrained tag
        architecture = model_name.split(".")[0]
        tags = timm.list_pretrained(architecture + ".*")[:6]
        raise PagbenchError(f"timm model {model_name!r}: {error} Known: {', '.join(tags) or 'none'}") from None
    return model_name, (config.to_dict() if config is not None else {})


def _input_size(options: dict, config: dict):
    """(H, W) the images are resized to; None = feed the dataset's size unchanged."""
    value = options.get("input_size")
    if value is None:
        size = config.get("input_size")
        return tuple(size[1:]) if size else None
    text = str(value).strip().lower()
    if text in ("native", "none"):
        return None
    try:
        parts = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) <= 0:
        raise PagbenchError(f"--model-option input_size: expected N, HxW or native, got {value!r}")
    return (parts[0], parts[-1])


def _wrap(network, dataset, options: dict):
    """The timm network inside an :class:`ImageClassifier` built from its data config."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(network)
    channels = int(config["input_size"][0])
    image_channels = int(dataset.image_shape[0])
    if image_channels not in (1, channels):
        raise PagbenchError(f"the timm model takes {channels}-channel images; dataset {dataset.name!r} has {image_channels}")
    input_size = _input_size(options, config)
    interpolation = config.get("interpolation", "bilinear")
    interpolation = interpolation if interpolation in _INTERPOLATIONS else "bilinear"
    wrapper = ImageClassifier(network, config["mean"], config["std"], input_size, channels, interpolation)
    data = {
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "input_size": list(input_size) if input_size else "dataset's",
        "interpolation": interpolation,
        "resize": (
            f"{'x'.join(map(str, dataset.image_shape[1:]))} -> {'x'.join(map(str, input_size))} inside the model ({interpolation}, antialiased)"
            if input_size and tuple(input_size) != tuple(dataset.image_shape[1:])
            else "none"
        ),
    }
    if image_channels != channels:
        data["channels"] = f"grey repeated to {channels} channels inside the model"
    return wrapper, data


def _pretraining_dataset(tag: str | None) -> str:
    if not tag:
        return "unspecified"
    for suffix, dataset in (("in1k", "imagenet-1k"), ("in22k", "imagenet-22k"), ("in21k", "imagenet-21k"), ("in12k", "imagenet-12k")):
        if tag.endswith(suffix):
            return dataset
    return tag


def _classes_in(state: dict, config: dict) -> int | None:
    classifiers = config.get("classifier") or ()
    for classifier in (classifiers,) if isinstance(classifiers, str) else classifiers:
        weight = state.get(f"{classifier}.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim >= 1:
            return int(weight.shape[0])
    return None


def _check_classes(classes: int, dataset, replace_head: bool, source: str) -> None:
    if classes != dataset.num_classes and not replace_head:
        raise PagbenchError(
            f"{source} has a {classes}-class classifier but dataset {dataset.name!r} has {dataset.num_classes} classes: "
            f"pagbench does not score a model on labels it was not trained for; pass --replace-head to put an untrained "
            f"{dataset.num_classes}-class head on it (the result is then marked requires_finetuning)"
        )


@contextlib.contextmanager
def _hub_mode():
    """Under ``PAGBENCH_OFFLINE``, the Hugging Face hub answers from its cache only."""
    if not _offline():
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _seeded_head(network, num_classes: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network.reset_classifier(num_classes)


def timm_architecture(name: str, dataset, options: dict) -> BuiltModel:
    """An untrained timm network with the dataset's class count, wrapped (for ``--arch``)."""
    import timm

    check_model_options(name, options, ARCHITECTURE_OPTIONS)
    model_name, config = resolve(name)
    _input_size(options, config)
    network = timm.create_model(model_name, pretrained=False, num_classes=dataset.num_classes)
    wrapper, data = _wrap(network, dataset, options)
    card = ModelCard(
        architecture=f"timm {config.get('architecture', model_name)}",
        dataset="unspecified",
        regime="unspecified",
        source=config.get("origin_url") or "https://github.com/huggingface/pytorch-image-models",
        licence="unspecified",
        provenance={"data_config": data},
    )
    return BuiltModel(wrapper, card)


def _from_file(model_name: str, config: dict, dataset, options: dict, replace_head: bool):
    """The timm network with the weights of ``options['weights']``, read safely and passed to timm
    through its pretrained-config override (so timm's checkpoint filter for the model applies);
    returns (network, its class count, provenance, source)."""
    import timm

    checkpoint = read_checkpoint(options["weights"], trust=option_flag(options, "trust_checkpoint"))
    source = f"weights file {checkpoint.path}"
    content, wrapper_keys = unwrap(checkpoint, options.get("checkpoint_key"))
    state = content.state_dict() if isinstance(content, torch.nn.Module) else content
    clean = {}
    for key, value in state.items():  # DataParallel / torch.compile wrappers, in either order
        for prefix in ("_orig_mod.", "module.", "_orig_mod."):
            key = key[len(prefix) :] if key.startswith(prefix) else key
        clean[key] = value
    label_offset = int(config.get("label_offset") or 0)
    pretrained_classes = int(config.get("num_classes") or dataset.num_classes)
    classes = _classes_in(clean, config) or pretrained_classes
    overlay = {"state_dict": clean}  # outranks the hub and url sources of the config
    if label_offset and classes == pretrained_classes + label_offset:
        classes = pretrained_classes  # timm drops the background class itself
    else:
        overlay.update(num_classes=classes, label_offset=0)
    _check_classes(classes, dataset, replace_head, source)
    try:
        network = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=classes)
    except Exception as error:
        skeleton = timm.create_model(model_name, pretrained=False, num_classes=classes)
        fit_checkpoint(skeleton, clean, num_classes=classes, source=source, architecture=f"timm:{model_name}")  # raises a readable report
        raise PagbenchError(
            f"timm could not load {source} into {model_name} ({type(error).__name__}: {' '.join(str(error).split())[:160]}); "
            f"for checkpoints in other layouts use checkpoint:PATH --arch timm:{model_name}"
        ) from error
    network.pretrained_cfg.pop("state_dict", None)  # the config keeps no reference to the weights
    provenance = {
        "weights": "file",
        "weights_file": str(checkpoint.path.resolve()),
        "sha256": checkpoint.sha256,
        "format": checkpoint.format,
        "checkpoint_keys": wrapper_keys,
        "loaded_by": "timm pretrained_cfg_overlay(state_dict=...), strict",
    }
    return network, classes, provenance, f"file {checkpoint.path.resolve()} (sha256 {checkpoint.sha256[:16]})"


def _from_hub(model_name: str, config: dict, dataset, replace_head: bool):
    import timm

    classes = int(config.get("num_classes") or 0)
    if not config or not (config.get("hf_hub_id") or config.get("url")):
        raise PagbenchError(f"timm has no pretrained weights for {model_name!r}; pass --weights FILE or --model-option pretrained=false")
    hub = f"https://huggingface.co/{config['hf_hub_id']}" if config.get("hf_hub_id") else config["url"]
    _check_classes(classes, dataset, replace_head, f"timm:{model_name} ({hub})")
    if _offline() and not config.get("hf_hub_id"):
        from timm.models._hub import get_cache_dir

        cached = Path(get_cache_dir()) / os.path.basename(urlparse(config["url"]).path)
        if not cached.exists():
            raise PagbenchError(f"timm:{model_name} needs its weights from {hub} but PAGBENCH_OFFLINE is set; download them and pass --weights FILE")
    try:
        with _hub_mode():
            network = timm.create_model(model_name, pretrained=True)
    except Exception as error:
        raise PagbenchError(
            f"could not fetch the weights of timm:{model_name} from {hub} ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:120]}); offline, download the weights file and pass --weights FILE"
        ) from error
    return network, classes, {"weights": "hub", "hub": hub, "pretrained_tag": config.get("tag")}, hub


def timm_model(name: str, dataset, options: dict) -> BuiltModel:
    """``timm:NAME``: hub weights, ``--weights FILE``, or random weights (``pretrained=false``)."""
    import timm

    check_model_options(name, options, MODEL_OPTIONS)
    model_name, config = resolve(name)
    _input_size(options, config)  # option errors before any weights are read
    pretrained = option_flag({"pretrained": options.get("pretrained", True)}, "pretrained")
    replace_head = option_flag(options, "replace_head")
    weights = options.get("weights")
    if not weights:
        for key in ("trust_checkpoint", "checkpoint_key"):
            if options.get(key):
                raise PagbenchError(f"{'--trust-checkpoint' if key == 'trust_checkpoint' else '--model-option checkpoint_key'} applies to --weights FILE")
    if weights and not pretrained:
        raise PagbenchError("--weights and --model-option pretrained=false contradict each other")

    tag = config.get("tag")
    if not pretrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            network = timm.create_model(model_name, pretrained=False, num_classes=dataset.num_classes)
        classes, provenance, source = dataset.num_classes, {"weights": "random initialisation (seed 0)"}, "timm (untrained)"
        trained_on, regime = "none", "untrained"
    elif weights:
        network, classes, provenance, source = _from_file(model_name, config, dataset, options, replace_head)
        trained_on, regime = "unspecified", "unspecified"
    else:
        network, classes, provenance, source = _from_hub(model_name, config, dataset, replace_head)
        trained_on = _pretraining_dataset(tag)
        regime = "adversarial" if "adv" in (tag or "") or model_name.startswith(("adv_", "ens_adv_")) else "standard"

    requires_finetuning = False
    if classes != dataset.num_classes:
        head = config.get("classifier")
        _seeded_head(network, dataset.num_classes)
        provenance.update(replaced_head=head, checkpoint_classes=classes)
        requires_finetuning = True
    wrapper, data = _wrap(network, dataset, options)
    provenance["data_config"] = data
    card = ModelCard(
        architecture=f"timm {config.get('architecture', model_name.split('.')[0])}",
        dataset=trained_on,
        regime=regime,
        source=source,
        licence=str(config.get("license") or "unspecified") if provenance["weights"] == "hub" else "unspecified",
        description=f"timm {model_name}" + (f" (pretrained tag {tag})" if tag and provenance["weights"] == "hub" else ""),
        requires_finetuning=requires_finetuning,
        provenance=provenance,
    )
    return BuiltModel(wrapper, card)
