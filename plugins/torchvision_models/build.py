"""Building ``torchvision:NAME[.WEIGHTS]`` models (imports torchvision and torch).

Names: ``torchvision:resnet50`` (its ``DEFAULT`` weights), ``torchvision:resnet50.IMAGENET1K_V2``
(that member of ``torchvision.models.get_model_weights("resnet50")``). Unknown names and tags are
one-line errors listing the closest ones.

Weights:

* weights enum (the default): the file ``<torch hub dir>/checkpoints/<basename of the enum's
  url>`` (``torch.hub.get_dir()``, i.e. ``$TORCH_HOME/hub``), downloaded there when missing and
  online (torch's hash-prefix check), never under ``PAGBENCH_OFFLINE=1`` (the error names the
  file). It is read with :func:`pagbench.plugin.read_checkpoint` (``weights_only=True``) and
  handed to torchvision's own builder (``get_model(NAME, weights=ENUM)``), so the builder's
  weight-dependent settings (e.g. inception's ``transform_input``) and key fixes apply.
* ``--weights FILE``: read safely, loaded strictly into ``get_model(NAME, weights=None)`` with
  :func:`pagbench.plugin.fit_checkpoint` (wrapper keys, ``module.`` / ``model.`` /
  ``_orig_mod.`` prefixes, normalisation buffers stored in the file; ``--model-option
  mean=…,std=…`` overrides). ``checkpoint:PATH --arch torchvision:NAME`` is the same load.
* ``--model-option pretrained=false``: random weights (seed 0).

Any other model option is a keyword argument of torchvision's builder (``dropout=0.2``,
``image_size=64``, ``aux_logits=false``), parsed by :func:`pagbench.models.wrappers.option_value`.

Class counts: weights with another class count than the dataset are refused, naming both, unless
``--replace-head``: a fresh seeded head (the last ``Linear`` / 1x1 ``Conv2d`` producing the
weights' classes) of the dataset's size; the card says ``requires_finetuning``.

Input (inside the model, :class:`pagbench.models.wrappers.ImageClassifier`): normalised with the
weights' ``transforms()`` mean/std (ImageNet's by default; for ``--weights`` the tag's, else the
``DEFAULT`` enum's transforms, else ImageNet's); grey repeated to RGB. Spatially:
``input_size=N|HxW`` resizes exactly, ``input_size=native`` feeds the dataset's size;
``transform=eval`` does what the weights' ``transforms()`` do — resize the shorter side to
``resize_size`` (256) with their interpolation (bilinear, antialiased), centre crop ``crop_size``
(224); with ``input_size=N`` the crop is N and the resize ``floor(N * resize_size / crop_size)``.
Otherwise, weights-enum weights are resized to their crop size; the user's own weights (``--weights``,
``--arch``, random) are fed at the dataset's size when the network accepts it, else resized to
the crop size (e.g. torchvision's ViTs take only their ``image_size``). Everything is recorded in
``provenance.data_config``.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from pagbench.plugin import FitReport, fit_checkpoint, one_line, read_checkpoint, unwrap
from pagbench.plugin import ModelCard
from pagbench.plugin import PagbenchError
from pagbench.plugin import BuiltModel, describe_options, option_flag
from pagbench.plugin import ImageClassifier, accepts_size, input_size_option as _input_size, model_option_value as option_value

from . import PREFIX

MODEL_OPTIONS = ("weights", "trust_checkpoint", "replace_head", "checkpoint_key", "pretrained", "input_size", "transform", "mean", "std")
ARCHITECTURE_OPTIONS = ("input_size", "transform")
_RESERVED = {
    "num_classes": "the class count follows the weights (use --replace-head for the dataset's)",
    "weights": "name the weights enum in the model name, e.g. torchvision:resnet50.IMAGENET1K_V2",
    "progress": "pagbench downloads without a progress bar",
}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop_size": 224, "resize_size": 256,
            "interpolation": "bilinear", "antialias": True}
_TRANSFORMS = {"none": None, "eval": "eval", "torchvision-eval": "eval"}


from pagbench.plugin import offline as _offline  # noqa: E402  (one definition of PAGBENCH_OFFLINE)


def resolve(name: str):
    """``torchvision:resnet50.IMAGENET1K_V2`` → ("resnet50", its weights enum class or None, the
    member named by the tag or None)."""
    import torchvision
    from torchvision.models import get_model_weights, list_models

    model_name, _, tag = name[len(PREFIX) :].partition(".")
    if not model_name:
        raise PagbenchError("torchvision models are named torchvision:NAME[.WEIGHTS], e.g. torchvision:resnet50")
    known = list_models(module=torchvision.models)
    if model_name not in known:
        close = difflib.get_close_matches(model_name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else " (see torchvision.models.list_models())"
        raise PagbenchError(f"unknown torchvision classification model {model_name!r}{hint}")
    try:
        enum_class = get_model_weights(model_name)
    except (ValueError, KeyError):
        enum_class = None
    member = None
    if tag:
        tags = list(enum_class.__members__) if enum_class is not None else []
        if tag not in tags:
            close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(f'{PREFIX}{model_name}.{c}' for c in close)}?" if close else ""
            raise PagbenchError(f"torchvision {model_name} has no weights {tag!r} (it has {', '.join(tags) or 'none'}){hint}")
        member = enum_class[tag]
    return model_name, enum_class, member


def data_config(weights) -> dict:
    """Mean, std, crop and resize size, interpolation and antialias of ``weights.transforms()``
    (ImageNet's defaults when there are no weights or their transforms say nothing)."""
    config = dict(IMAGENET, source="ImageNet defaults (no weights enum)")
    if weights is None:
        return config
    transform = weights.transforms()
    for key in ("mean", "std"):
        if getattr(transform, key, None) is not None:
            config[key] = [float(v) for v in getattr(transform, key)]
    for key in ("crop_size", "resize_size"):
        value = getattr(transform, key, None)
        if value:
            config[key] = int(value[0]) if isinstance(value, (list, tuple)) else int(value)
    interpolation = getattr(transform, "interpolation", None)
    if interpolation is not None:
        config["interpolation"] = getattr(interpolation, "value", str(interpolation))
    if getattr(transform, "antialias", None) is not None:
        config["antialias"] = bool(transform.antialias)
    config["source"] = f"{type(weights).__name__}.{weights.name}.transforms()"
    return config


def creation_kwargs(name: str, options: dict, own) -> dict:
    kwargs = {}
    for key, value in options.items():
        if key in own:
            continue
        if key in _RESERVED:
            raise PagbenchError(f"--model-option {key}: not passed to torchvision ({_RESERVED[key]})")
        if key in MODEL_OPTIONS or key in ("arch", "allow_resample"):
            raise PagbenchError(f"model {name!r} does not take {describe_options([key])} (it takes {describe_options(own)} and torchvision builder arguments)")
        kwargs[key] = option_value(value)
    return kwargs


def _shown(kwargs: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def build(model_name: str, kwargs: dict, **fixed):
    """``torchvision.models.get_model(model_name, **fixed, **kwargs)`` with one-line errors for
    arguments the builder rejects."""
    from torchvision.models import get_model

    try:
        return get_model(model_name, **fixed, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        if not kwargs:
            raise
        raise PagbenchError(f"torchvision could not build {model_name} with arguments {_shown(kwargs)}: {one_line(error)}") from error


def _seeded_build(model_name: str, kwargs: dict, num_classes: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build(model_name, kwargs, weights=None, num_classes=num_classes)


def _transform(options: dict):
    value = str(options.get("transform") or "none").strip().lower()
    if value not in _TRANSFORMS:
        raise PagbenchError(f"--model-option transform: expected eval or none, got {options.get('transform')!r}")
    if _TRANSFORMS[value] and _input_size(options) == "native":
        raise PagbenchError("--model-option transform=eval crops to the weights' crop size; it contradicts input_size=native")
    return _TRANSFORMS[value]


def _floats(options: dict, key: str):
    value = options.get(key)
    if value is None:
        return None
    try:
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(p) for p in str(value).split(",") if p.strip()]
    except ValueError:
        raise PagbenchError(f"--model-option {key}: expected comma-separated numbers, got {value!r}") from None
    return values


def _wrap(network, dataset, options: dict, config: dict, weights: str, kwargs: dict):
    """``network`` in an :class:`ImageClassifier` per the input rule of the module doc, and the
    spatial part of the record (``weights``: "enum", "own" or "arch")."""
    image_channels = int(dataset.image_shape[0])
    if image_channels not in (1, 3):
        raise PagbenchError(f"torchvision models take 3-channel images; dataset {dataset.name!r} has {image_channels}")
    dataset_size = tuple(int(v) for v in dataset.image_shape[1:])
    image_size = kwargs.get("image_size")
    network_size = (int(image_size), int(image_size)) if isinstance(image_size, int) else (config["crop_size"],) * 2
    requested, transform = _input_size(options), _transform(options)
    spatial, record = {}, {}
    if transform:
        crop = requested or network_size
        if crop[0] != crop[1]:
            raise PagbenchError("--model-option transform=eval needs a square input_size")
        resize = config["resize_size"] if not requested else math.floor(crop[0] * config["resize_size"] / config["crop_size"])
        spatial = {"crop_size": crop, "resize_size": resize}
        rule = f"evaluation transform of {config['source']}: shorter side to {resize}, centre crop {crop[0]}x{crop[1]}"
        record.update(transform="eval", resize_size=resize)
    elif requested == "native":
        rule = "input_size=native: the dataset's size"
    elif requested is not None:
        spatial, rule = {"input_size": requested}, f"input_size option: resized to {requested[0]}x{requested[1]}"
    elif weights == "enum":
        spatial, rule = {"input_size": network_size}, f"weights enum: resized to its crop size {network_size[0]}x{network_size[1]}"
    elif accepts_size(network, (3, *dataset_size)):
        rule = "own weights: the network accepts the dataset's size, fed unchanged"
    else:
        spatial = {"input_size": network_size}
        rule = f"own weights: the network does not accept {dataset_size[0]}x{dataset_size[1]}, resized to {network_size[0]}x{network_size[1]}"
    wrapper = ImageClassifier(network, config["mean"], config["std"], in_channels=3, interpolation=config["interpolation"],
                              antialias=config["antialias"], **spatial)
    record.update(rule=rule, transforms_of=config["source"], interpolation=config["interpolation"], antialias=config["antialias"])
    return wrapper, record


def _record(wrapper, dataset, record: dict, with_normalization: bool = True) -> dict:
    """The card's ``data_config``: what the wrapper does to the dataset's images, in order."""
    steps = wrapper.preprocessing(dataset.image_shape)
    data = dict(steps["normalization"])
    size = wrapper.crop_size or wrapper.input_size
    data.update(record, input_size=list(size) if size else "dataset's", resize=steps["resize"], crop=steps["crop"],
                network_input=steps["network_input"])
    if "channels" in steps:
        data["channels"] = f"{steps['channels']} inside the model"
    data["preprocessing"] = (
        ([steps["channels"]] if "channels" in steps else [])
        + ([f"resize {steps['resize']}"] if steps["resize"] != "none" else [])
        + ([f"crop {steps['crop']}"] if steps["crop"] != "none" else [])
        + ([f"normalise (x - mean) / std with mean {data['mean']}, std {data['std']}"] if with_normalization else [])
    )
    return data


def _check_classes(classes: int, dataset, replace_head: bool, source: str) -> None:
    if classes != dataset.num_classes and not replace_head:
        raise PagbenchError(
            f"{source} has a {classes}-class classifier but dataset {dataset.name!r} has {dataset.num_classes} classes: "
            f"pagbench does not score a model on labels it was not trained for; pass --replace-head to put an untrained "
            f"{dataset.num_classes}-class head on it (the result is then marked requires_finetuning)"
        )


def replace_head(network, classes: int, num_classes: int) -> str:
    """Swap the last ``Linear`` (or 1x1 ``Conv2d``) producing ``classes`` outputs for a fresh,
    seeded one producing ``num_classes``; returns its qualified name."""
    found = None
    for name, module in network.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == classes:
            found = (name, module)
        elif isinstance(module, torch.nn.Conv2d) and module.out_channels == classes and module.kernel_size == (1, 1):
            found = (name, module)
    if found is None:
        raise PagbenchError(f"--replace-head: no layer with {classes} outputs found to replace")
    name, old = found
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if isinstance(old, torch.nn.Linear):
            new = torch.nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        else:
            new = torch.nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)
    parent_name, _, attribute = name.rpartition(".")
    setattr(network.get_submodule(parent_name) if parent_name else network, attribute, new)
    return name


def cache_file(weights) -> Path:
    """Where torch's hub keeps the file of a weights enum member (``load_state_dict_from_url``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


@contextlib.contextmanager
def _serving(url: str, state: dict):
    """torchvision's builders fetch weights through ``_api.load_state_dict_from_url`` (which would
    unpickle with ``weights_only=False``): hand them the safely read state dict instead."""
    from torchvision.models import _api

    original = _api.load_state_dict_from_url

    def serve(requested, *args, **kwargs):
        if requested != url:
            raise PagbenchError(f"torchvision asked for {requested}, pagbench read {url}")
        return dict(state)

    _api.load_state_dict_from_url = serve
    try:
        yield
    finally:
        _api.load_state_dict_from_url = original


def _from_enum(model_name: str, weights, dataset, kwargs: dict, replace: bool):
    enum_name = f"{type(weights).__name__}.{weights.name}"
    classes = len(weights.meta.get("categories") or ()) or None
    if classes is not None:
        _check_classes(classes, dataset, replace, f"torchvision {model_name} weights {enum_name}")
    cached = cache_file(weights)
    if not cached.exists():
        if _offline():
            raise PagbenchError(
                f"torchvision:{model_name}.{weights.name} needs {weights.url}, which is not in torch's hub cache ({cached}) and "
                "PAGBENCH_OFFLINE is set: put the file there, or pass --weights FILE"
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(cached.name)
        try:
            torch.hub.download_url_to_file(weights.url, str(cached), match.group(1) if match else None, progress=False)
        except Exception as error:
            raise PagbenchError(f"could not download {weights.url} ({one_line(error, 120)}); offline, pass --weights FILE") from error
    checkpoint = read_checkpoint(cached)
    state, _ = unwrap(checkpoint)
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    try:
        with _serving(weights.url, state):
            network = build(model_name, kwargs, weights=weights)
    except PagbenchError:
        raise
    except Exception as error:
        raise PagbenchError(f"torchvision could not load {cached} into {model_name} ({type(error).__name__}: {one_line(error)})") from error
    provenance = {
        "weights": "torchvision weights enum",
        "weights_enum": enum_name,
        "url": weights.url,
        "weights_file": str(cached),
        "sha256": checkpoint.sha256,
        "loaded_by": f"torchvision get_model({model_name!r}, weights={enum_name}), strict load_state_dict of the file read with weights_only=True",
    }
    for key in ("recipe", "_metrics"):
        if key in weights.meta:
            provenance[key.lstrip("_")] = weights.meta[key]
    return network, classes or dataset.num_classes, provenance, f"{weights.url} (sha256 {checkpoint.sha256[:16]})"


def torchvision_architecture(name: str, dataset, options: dict) -> BuiltModel:
    """An untrained torchvision network with the dataset's class count, wrapped (for ``--arch``)."""
    model_name, enum_class, member = resolve(name)
    kwargs = creation_kwargs(name, options, ARCHITECTURE_OPTIONS)
    config = data_config(member or (enum_class.DEFAULT if enum_class is not None else None))
    network = _seeded_build(model_name, kwargs, dataset.num_classes)
    wrapper, record = _wrap(network, dataset, options, config, "arch", kwargs)
    provenance = {"data_config": _record(wrapper, dataset, record, with_normalization=False)}
    if kwargs:
        provenance["create_kwargs"] = dict(kwargs)
    card = ModelCard(architecture=f"torchvision {model_name}", dataset="unspecified", regime="unspecified",
                     source="https://github.com/pytorch/vision", licence="unspecified", provenance=provenance)
    return BuiltModel(wrapper, card)


def torchvision_model(name: str, dataset, options: dict) -> BuiltModel:
    """``torchvision:NAME[.WEIGHTS]``: a weights enum, ``--weights FILE`` or random weights."""
    model_name, enum_class, member = resolve(name)
    kwargs = creation_kwargs(name, options, MODEL_OPTIONS)
    _input_size(options), _transform(options)
    pretrained = option_flag({"pretrained": options.get("pretrained", True)}, "pretrained")
    replace = option_flag(options, "replace_head")
    weights_file = options.get("weights")
    mean, std = _floats(options, "mean"), _floats(options, "std")
    if (mean is None) != (std is None):
        raise PagbenchError("--model-option mean and std go together")
    if not weights_file:
        for key in ("trust_checkpoint", "checkpoint_key", "mean"):
            if options.get(key):
                raise PagbenchError(f"{describe_options([key])} applies to --weights FILE")
    if weights_file and not pretrained:
        raise PagbenchError("--weights and --model-option pretrained=false contradict each other")
    if not pretrained and member is not None:
        raise PagbenchError(f"{name} names weights; --model-option pretrained=false contradicts it")
    config = data_config(member or (enum_class.DEFAULT if enum_class is not None else None))

    requires_finetuning = False
    if weights_file:
        checkpoint = read_checkpoint(weights_file, trust=option_flag(options, "trust_checkpoint"))
        content, wrapper_keys = unwrap(checkpoint, options.get("checkpoint_key"))
        state = content.state_dict() if isinstance(content, torch.nn.Module) else content
        network = _seeded_build(model_name, kwargs, dataset.num_classes)
        wrapper, record = _wrap(network, dataset, options, config, "own", kwargs)
        report = fit_checkpoint(
            wrapper, state, num_classes=dataset.num_classes, replace_head=replace,
            normalization=(mean, std) if mean is not None else None, source=f"weights file {checkpoint.path}",
            architecture=f"torchvision:{model_name}", report=FitReport(wrapper_keys=wrapper_keys),
        )
        provenance = {"weights": "file", "weights_file": str(checkpoint.path.resolve()), "sha256": checkpoint.sha256,
                      "format": checkpoint.format, "loaded_by": "pagbench fit_checkpoint (strict)"}
        provenance.update(report.as_dict())
        if report.normalization == "architecture default":
            provenance["normalization"] = f"{config['source']}"
        requires_finetuning = bool(report.replaced_head)
        source = f"file {checkpoint.path.resolve()} (sha256 {checkpoint.sha256[:16]})"
        trained_on, regime = "unspecified", "unspecified"
    elif not pretrained:
        network = _seeded_build(model_name, kwargs, dataset.num_classes)
        wrapper, record = _wrap(network, dataset, options, config, "own", kwargs)
        provenance, source = {"weights": "random initialisation (seed 0)"}, "torchvision (untrained)"
        trained_on, regime = "none", "untrained"
    else:
        if enum_class is None:
            raise PagbenchError(f"torchvision has no weights for {model_name!r}; pass --weights FILE or --model-option pretrained=false")
        weights = member or enum_class.DEFAULT
        network, classes, provenance, source = _from_enum(model_name, weights, dataset, kwargs, replace)
        if classes != dataset.num_classes:
            provenance.update(replaced_head=replace_head(network, classes, dataset.num_classes), checkpoint_classes=classes)
            requires_finetuning = True
        wrapper, record = _wrap(network, dataset, options, config, "enum", kwargs)
        trained_on = "imagenet-1k" if len(weights.meta.get("categories") or ()) == 1000 else "unspecified"
        regime = "standard"
    if kwargs:
        provenance["create_kwargs"] = dict(kwargs)
    provenance["data_config"] = _record(wrapper, dataset, record)
    card = ModelCard(
        architecture=f"torchvision {model_name}",
        dataset=trained_on,
        regime=regime,
        source=source,
        licence="BSD-3-Clause (torchvision; weights: see the enum's recipe)" if provenance["weights"] != "file" and pretrained else "unspecified",
        description=f"torchvision {model_name}" + (f" ({provenance['weights_enum']})" if "weights_enum" in provenance else ""),
        requires_finetuning=requires_finetuning,
        provenance=provenance,
    )
    return BuiltModel(wrapper, card)
