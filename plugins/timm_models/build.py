"""Building ``timm:NAME`` models (imports timm and torch).

Class-count policy: a model is scored only on the labels it was trained for. When the weights'
classifier has another class count than the dataset, loading is refused with a message naming
both counts, unless ``--replace-head`` is given: then timm's ``reset_classifier`` puts a fresh,
untrained head of the dataset's size on it (seeded), and the card records
``requires_finetuning: true`` and the replaced head.

Creation arguments: every model option that is not one of pagbench's own (:data:`MODEL_OPTIONS`)
is a keyword argument of ``timm.create_model`` (``--model-option img_size=32``, ``in_chans=1``,
``drop_path_rate=0.1``, ``global_pool=avg``); values are parsed by
:func:`pagbench.models.wrappers.option_value` (bool / None / int / float / ``32x48`` tuple / string). A
keyword the model's constructor rejects is a one-line error. They are recorded in the card
(``provenance.create_kwargs``).

Nothing changed silently: timm's checkpoint filters may resample or adapt tensors to fit the
network that was asked for (a ViT's ``pos_embed`` for another image size, ``patch_embed`` for
another patch size, the stem for another ``in_chans``). That is a different network from the
user's, so after loading ``--weights FILE`` every tensor of the file (after prefix stripping) is
compared with the network's: any tensor whose shape or values differ (other than a head
deliberately replaced) refuses the model, naming the tensors and both shapes, unless
``--model-option allow_resample=true`` is given, which the card then records with the list. For
hub weights built with creation arguments, the network's tensor shapes are compared with those of
the pretrained configuration, with the same rule. When ``img_size`` is not given and the file
holds a ViT-style ``pos_embed`` with a square patch grid, the network is built at the size the
weights were trained at (grid × patch size), so nothing needs resampling.

Input size (what the images are resized to, inside the model, see
:class:`pagbench.models.wrappers.ImageClassifier`):

* ``--model-option input_size=N|HxW``: resized exactly to that size; ``input_size=native``: the
  dataset's size, unchanged.
* ``--model-option transform=timm-eval``: timm's evaluation transform, differentiably: resize to
  ``floor(S / crop_pct)`` (shorter side; ``crop_mode=squash``: both sides) with the model's
  interpolation (antialiased), then the centre S crop, S being ``input_size`` if given, else the
  network's input size (its ``img_size``, else its data config's).
* Otherwise, hub weights: resized to their pretrained configuration's input size (their own
  data config). ``--weights FILE``, ``pretrained=false`` and ``--arch`` (the user's own weights):
  the dataset's images are fed at their own size when the network accepts that size (a blank
  image runs through it), else resized to the network's input size (e.g. a fixed-size ViT).

The card's ``provenance.data_config`` records the rule applied and the exact preprocessing
(channel repeat, resize from → to with interpolation and antialias, crop, mean and std).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from pagbench.plugin import fit_checkpoint, listing, read_checkpoint, unwrap
from pagbench.plugin import ModelCard
from pagbench.plugin import PagbenchError
from pagbench.plugin import BuiltModel, describe_options, option_flag
from pagbench.plugin import ImageClassifier, accepts_size, input_size_option as _input_size, model_option_value as option_value

from . import PREFIX

#: pagbench's own options of ``timm:NAME`` models, and of ``--arch timm:NAME`` architectures;
#: any other option is a ``timm.create_model`` keyword argument.
MODEL_OPTIONS = (
    "weights", "trust_checkpoint", "replace_head", "checkpoint_key", "pretrained", "input_size", "transform", "allow_resample",
)
ARCHITECTURE_OPTIONS = ("input_size", "transform")
#: ``create_model`` arguments pagbench sets itself.
_RESERVED = {
    "num_classes": "the class count follows the weights (use --replace-head for the dataset's)",
    "pretrained": "use --model-option pretrained=false",
    "pretrained_cfg": "pagbench passes the weights' configuration itself",
    "pretrained_cfg_overlay": "pagbench passes the weights' configuration itself",
    "checkpoint_path": "use --weights FILE",
    "features_only": "pagbench needs a classifier's logits",
}
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_TRANSFORMS = {"none": None, "timm-eval": "timm-eval", "eval": "timm-eval"}


from pagbench.plugin import offline as _offline  # noqa: E402  (one definition of PAGBENCH_OFFLINE)


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


def creation_kwargs(name: str, options: dict, own) -> dict:
    """The options that are not pagbench's own, parsed, as ``timm.create_model`` arguments."""
    kwargs = {}
    for key, value in options.items():
        if key in own:
            continue
        if key in _RESERVED:
            raise PagbenchError(f"--model-option {key}: not passed to timm ({_RESERVED[key]})")
        if key in ("weights", "trust_checkpoint", "replace_head", "checkpoint_key", "pretrained", "allow_resample", "arch"):
            raise PagbenchError(f"model {name!r} does not take {describe_options([key])} here (it takes {describe_options(own)} and timm.create_model arguments)")
        kwargs[key] = option_value(value)
    return kwargs


def _shown(kwargs: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def create(model_name: str, kwargs: dict, **fixed):
    """``timm.create_model(model_name, **fixed, **kwargs)``; a keyword the constructor rejects, or
    a value it cannot use (``act_layer=nonexistent``, ``layers=2``: timm's KeyError, TypeError, …),
    is a one-line error naming the creation arguments. With ``pretrained=True`` an error is blamed on
    the arguments only when the network cannot be built from them without weights either (a failed
    download or a bad file is re-raised as it is, for the caller to report)."""
    import timm

    try:
        return timm.create_model(model_name, **fixed, **kwargs)
    except Exception as error:
        if not kwargs:
            raise
        if fixed.get("pretrained") and not (isinstance(error, TypeError) and "argument" in str(error)):
            bare = {key: value for key, value in fixed.items() if key not in ("pretrained", "pretrained_cfg_overlay")}
            try:
                with torch.device("meta"):
                    timm.create_model(model_name, pretrained=False, **bare, **kwargs)
            except Exception:
                pass  # the arguments alone fail: say so below
            else:
                raise
        message = " ".join(str(error).split())[:160] or type(error).__name__
        raise PagbenchError(f"timm could not build {model_name} with creation arguments {_shown(kwargs)}: "
                            f"{type(error).__name__}: {message}") from error


def _skeleton(model_name: str, kwargs: dict, num_classes: int):
    """The network's structure without weights (on the meta device when timm allows it)."""
    try:
        with torch.device("meta"):
            return create(model_name, kwargs, pretrained=False, num_classes=num_classes)
    except PagbenchError:
        raise
    except Exception:
        return create(model_name, kwargs, pretrained=False, num_classes=num_classes)


def _transform(options: dict):
    value = str(options.get("transform") or "none").strip().lower()
    if value not in _TRANSFORMS:
        raise PagbenchError(f"--model-option transform: expected timm-eval or none, got {options.get('transform')!r}")
    transform = _TRANSFORMS[value]
    if transform and _input_size(options) == "native":
        raise PagbenchError("--model-option transform=timm-eval crops to the network's input size; it contradicts input_size=native")
    return transform


def _network_size(network, config: dict):
    """(H, W) the network was built for: its patch embedding's ``img_size`` when it has one (timm's
    data config keeps the pretrained size even when ``img_size`` was passed), else the config's."""
    size = getattr(getattr(network, "patch_embed", None), "img_size", None)
    if size is not None:
        try:
            height, width = (int(v) for v in (size if isinstance(size, (tuple, list)) else (size, size)))
            return (height, width)
        except (TypeError, ValueError):
            pass
    return tuple(int(v) for v in config["input_size"][1:])


def _wrap(network, dataset, options: dict, weights: str, kwargs: dict | None = None):
    """The timm network inside an :class:`ImageClassifier` built from its data config and the
    input-size rule of the module doc; ``weights`` is "hub", "own" or "arch" (own weights loaded
    later by ``checkpoint:``, which records the normalisation it ends up using)."""
    from timm.data import resolve_model_data_config

    kwargs = kwargs or {}
    config = resolve_model_data_config(network)
    channels = int(kwargs.get("in_chans") or config["input_size"][0])
    image_channels = int(dataset.image_shape[0])
    if image_channels not in (1, channels):
        raise PagbenchError(f"the timm model takes {channels}-channel images; dataset {dataset.name!r} has {image_channels}")
    dataset_size = tuple(int(v) for v in dataset.image_shape[1:])
    network_size = _network_size(network, config)
    requested, transform = _input_size(options), _transform(options)
    interpolation = config.get("interpolation", "bilinear")
    data = {"mean": [float(v) for v in config["mean"]], "std": [float(v) for v in config["std"]]}
    if interpolation not in _INTERPOLATIONS:
        if transform:
            raise PagbenchError(f"timm's evaluation transform of this model uses {interpolation!r} interpolation, which pagbench cannot do differentiably")
        data["interpolation_note"] = f"the data config's {interpolation!r} is not differentiable here; bilinear used"
        interpolation = "bilinear"
    spatial = {}
    if transform:
        crop = requested or network_size
        crop_pct = float(config.get("crop_pct") or 0.875)
        crop_mode = config.get("crop_mode") or "center"
        scale = tuple(math.floor(side / crop_pct) for side in crop)
        if crop_mode == "squash":
            spatial = {"crop_size": crop, "resize_size": scale}
        elif crop_mode == "center" and scale[0] == scale[1]:
            spatial = {"crop_size": crop, "resize_size": scale[0]}
        else:
            raise PagbenchError(f"timm's evaluation transform with crop_mode={crop_mode!r} and a {crop[0]}x{crop[1]} crop is not supported; use input_size instead")
        rule = f"timm evaluation transform (crop_pct {crop_pct}, crop_mode {crop_mode}): resize to {scale[0]}x{scale[1]}, centre crop {crop[0]}x{crop[1]}"
        data.update(transform="timm-eval", crop_pct=crop_pct, crop_mode=crop_mode)
    elif requested == "native":
        rule = "input_size=native: the dataset's size"
    elif requested is not None:
        spatial, rule = {"input_size": requested}, f"input_size option: resized to {requested[0]}x{requested[1]}"
    elif weights == "hub":
        spatial, rule = {"input_size": network_size}, "hub weights: their pretrained configuration's input size"
    elif accepts_size(network, (channels, *dataset_size)):
        rule = "own weights: the network accepts the dataset's size, fed unchanged"
    else:
        spatial = {"input_size": network_size}
        rule = f"own weights: the network does not accept {dataset_size[0]}x{dataset_size[1]}, resized to its input size"
    wrapper = ImageClassifier(network, config["mean"], config["std"], in_channels=channels, interpolation=interpolation, antialias=True, **spatial)
    steps = wrapper.preprocessing(dataset.image_shape)
    shown_size = spatial.get("crop_size") or spatial.get("input_size")
    data.update(
        input_size=list(shown_size) if shown_size else "dataset's",
        network_size=list(network_size),
        interpolation=interpolation,
        antialias=interpolation in ("bilinear", "bicubic"),
        rule=rule,
        resize=steps["resize"],
        crop=steps["crop"],
        network_input=steps["network_input"],
    )
    if "channels" in steps:
        data["channels"] = f"{steps['channels']} inside the model"
    data["preprocessing"] = (
        ([steps["channels"]] if "channels" in steps else [])
        + ([f"resize {steps['resize']}"] if steps["resize"] != "none" else [])
        + ([f"crop {steps['crop']}"] if steps["crop"] != "none" else [])
        + ([f"normalise (x - mean) / std with mean {data['mean']}, std {data['std']}"] if weights != "arch" else [])
    )
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


def _seeded_create(model_name: str, kwargs: dict, num_classes: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create(model_name, kwargs, pretrained=False, num_classes=num_classes)


def timm_architecture(name: str, dataset, options: dict) -> BuiltModel:
    """An untrained timm network with the dataset's class count, wrapped (for ``--arch``)."""
    model_name, config = resolve(name)
    kwargs = creation_kwargs(name, options, ARCHITECTURE_OPTIONS)
    _input_size(options), _transform(options)
    network = create(model_name, kwargs, pretrained=False, num_classes=dataset.num_classes)
    wrapper, data = _wrap(network, dataset, options, "arch", kwargs)
    provenance = {"data_config": data}
    if kwargs:
        provenance["create_kwargs"] = dict(kwargs)
    card = ModelCard(
        architecture=f"timm {config.get('architecture', model_name)}",
        dataset="unspecified",
        regime="unspecified",
        source=config.get("origin_url") or "https://github.com/huggingface/pytorch-image-models",
        licence="unspecified",
        provenance=provenance,
    )
    return BuiltModel(wrapper, card)


def _shape(tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def infer_img_size(model_name: str, state: dict, kwargs: dict, num_classes: int):
    """The image size a ViT-style checkpoint was trained at: its ``pos_embed`` (1, N, D) holds the
    network's prefix tokens and a square grid of patches whose size is the kernel of
    ``patch_embed.proj.weight``; returns ((H, W), how) or None when it cannot be told (no such
    tensors, a non-square grid, a network without ``img_size``) or equals the default."""
    pos, proj = state.get("pos_embed"), state.get("patch_embed.proj.weight")
    if not isinstance(pos, torch.Tensor) or not isinstance(proj, torch.Tensor) or pos.ndim != 3 or proj.ndim != 4:
        return None
    try:
        skeleton = _skeleton(model_name, kwargs, num_classes)
    except Exception:
        return None
    embed = getattr(skeleton, "patch_embed", None)
    default = getattr(embed, "img_size", None)
    if default is None or getattr(skeleton, "pos_embed", None) is None:
        return None
    prefix = 0 if getattr(skeleton, "no_embed_class", False) else int(getattr(skeleton, "num_prefix_tokens", 1))
    patches = int(pos.shape[1]) - prefix
    grid = math.isqrt(max(patches, 0))
    if patches <= 0 or grid * grid != patches:
        return None
    size = (grid * int(proj.shape[-2]), grid * int(proj.shape[-1]))
    if tuple(default) == size:
        return None
    how = f"inferred from the weights file: pos_embed {_shape(pos)} = {prefix} prefix token(s) + {grid}x{grid} patches of {proj.shape[-2]}x{proj.shape[-1]}"
    return size, how


def compare_tensors(file_state: dict, network_state: dict, skip=()):
    """How the network's tensors differ from the file's same-named ones: (changed, reshaped,
    left_at_init, unused). ``changed`` lists "key (file AxB, model CxD)" or "key (values changed,
    AxB)"; ``reshaped`` same values in another shape; ``left_at_init`` network tensors the file
    does not hold when every file tensor was used (so no filter renamed them); ``unused`` file
    tensors the network has no tensor of that name for (renamed or dropped by timm's filter)."""
    changed, reshaped = [], []
    for key, model_tensor in network_state.items():
        file_tensor = file_state.get(key)
        if key in skip or not isinstance(file_tensor, torch.Tensor):
            continue
        if tuple(file_tensor.shape) != tuple(model_tensor.shape):
            if file_tensor.numel() == model_tensor.numel() and torch.equal(file_tensor.reshape(model_tensor.shape).to(model_tensor.dtype), model_tensor):
                reshaped.append(f"{key} (file {_shape(file_tensor)}, model {_shape(model_tensor)})")
            else:
                changed.append(f"{key} (file {_shape(file_tensor)}, model {_shape(model_tensor)})")
        elif not torch.equal(file_tensor.to(model_tensor.dtype), model_tensor):
            changed.append(f"{key} (values changed, {_shape(model_tensor)})")
    unused = [key for key in file_state if key not in network_state]
    missing = [key for key in network_state if key not in file_state and key not in skip and not key.endswith("num_batches_tracked")]
    left_at_init = missing if not unused else []
    return changed, reshaped, left_at_init, unused


def _check_fits(model_name: str, kwargs: dict, state: dict, classes: int, source: str) -> None:
    """A one-line error naming the mismatching keys when fewer than half of the network's tensors
    are found (by name) in ``state``: the file holds another architecture (e.g. a ResNet's weights
    given to a ViT), which is reported as such, not as a classifier of some class count."""
    network = _skeleton(model_name, kwargs, classes).state_dict()
    wanted = [key for key in network if not key.endswith("num_batches_tracked")]
    given = [key for key in state if not key.endswith("num_batches_tracked")]
    found = [key for key in wanted if key in state]
    if wanted and len(found) * 2 < len(wanted):
        missing = [key for key in wanted if key not in state]
        unexpected = [key for key in given if key not in network]
        raise PagbenchError(
            f"{source} does not fit timm:{model_name}: only {len(found)} of its {len(wanted)} tensors are in the file; "
            f"missing {listing(missing)}; not in the network {listing(unexpected)} (is it another architecture?)"
        )


def _from_file(model_name: str, config: dict, dataset, options: dict, kwargs: dict, replace_head: bool):
    """The timm network with the weights of ``options['weights']``, read safely and passed to timm
    through its pretrained-config override (so timm's checkpoint filter for the model applies),
    then checked tensor by tensor against the file (see the module doc); returns (network, its
    class count, provenance, source)."""
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
    found_classes = _classes_in(clean, config)
    if found_classes is None:  # no classifier of this architecture in the file: is it this architecture at all?
        _check_fits(model_name, kwargs, clean, pretrained_classes, source)
    classes = found_classes or pretrained_classes
    overlay = {"state_dict": dict(clean)}  # outranks the hub and url sources of the config
    head_keys: list[str] = []
    if label_offset and classes == pretrained_classes + label_offset:
        classes = pretrained_classes  # timm drops the background class itself
        heads = config.get("classifier") or ()
        head_keys = [f"{head}.{part}" for head in ((heads,) if isinstance(heads, str) else heads) for part in ("weight", "bias")]
    else:
        overlay.update(num_classes=classes, label_offset=0)
    _check_classes(classes, dataset, replace_head, source)
    kwargs = dict(kwargs)
    size_note = None
    if "img_size" not in kwargs:
        inferred = infer_img_size(model_name, clean, kwargs, classes)
        if inferred is not None:
            kwargs["img_size"], size_note = inferred
    try:
        network = create(model_name, kwargs, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=classes)
    except PagbenchError:
        raise
    except Exception as error:
        skeleton = create(model_name, kwargs, pretrained=False, num_classes=classes)
        fit_checkpoint(skeleton, clean, num_classes=classes, source=source, architecture=f"timm:{model_name}")  # raises a readable report
        raise PagbenchError(
            f"timm could not load {source} into {model_name} ({type(error).__name__}: {' '.join(str(error).split())[:160]}); "
            f"for checkpoints in other layouts use checkpoint:PATH --arch timm:{model_name}"
        ) from error
    network.pretrained_cfg.pop("state_dict", None)  # the config keeps no reference to the weights
    del overlay
    changed, reshaped, left_at_init, unused = compare_tensors(clean, network.state_dict(), skip=head_keys)
    allow = option_flag(options, "allow_resample")
    built_with = f"{model_name}" + (f" built with {_shown(kwargs)}" if kwargs else "")
    if left_at_init:
        raise PagbenchError(
            f"{source}: timm left {len(left_at_init)} tensors of {built_with} at their random initialisation "
            f"({listing(left_at_init)}); the file does not hold them"
        )
    if changed and not allow:
        hint = ""
        if "img_size" in kwargs and any(item.startswith("pos_embed ") for item in changed):
            guess = infer_img_size(model_name, clean, {k: v for k, v in kwargs.items() if k != "img_size"}, classes)
            hint = f" (the file's pos_embed fits img_size={guess[0][0]}x{guess[0][1]})" if guess else ""
        raise PagbenchError(
            f"{source}: timm transformed {len(changed)} of its tensors to fit {built_with}: {listing(changed, 3)}; that is "
            f"a different network from the file's: build it at the weights' own configuration{hint}, or pass "
            "--model-option allow_resample=true to accept timm's transformation (recorded in the model card)"
        )
    provenance = {
        "weights": "file",
        "weights_file": str(checkpoint.path.resolve()),
        "sha256": checkpoint.sha256,
        "format": checkpoint.format,
        "checkpoint_keys": wrapper_keys,
    }
    compared = len(clean) - len(unused) - len(head_keys)
    if changed:
        provenance["loaded_by"] = (
            f"timm pretrained_cfg_overlay(state_dict=...) with its checkpoint filter; {len(changed)} tensors differ from the "
            "file's: transformed by timm (allowed by allow_resample=true), a different network from the file's"
        )
        provenance["transformed_by_timm"] = changed
        provenance["allow_resample"] = True
    else:
        provenance["loaded_by"] = (
            f"timm pretrained_cfg_overlay(state_dict=...), strict: all {compared} compared tensors equal the file's"
        )
        if allow:
            provenance["allow_resample"] = "given; nothing was transformed"
    if reshaped:
        provenance["reshaped_by_timm"] = reshaped  # same values in another layout: the same function
    if unused:
        provenance["renamed_or_dropped_by_timm_filter"] = listing(unused, 8)
    if head_keys:
        provenance["label_offset"] = f"the file's {label_offset} background class(es) dropped from {', '.join(head_keys)} by timm"
    if kwargs:
        provenance["create_kwargs"] = dict(kwargs)
    if size_note:
        provenance["img_size"] = f"{kwargs['img_size'][0]}x{kwargs['img_size'][1]} ({size_note})"
    return network, classes, provenance, f"file {checkpoint.path.resolve()} (sha256 {checkpoint.sha256[:16]})", kwargs


def _from_hub(model_name: str, config: dict, dataset, kwargs: dict, replace_head: bool, allow: bool):
    classes = int(config.get("num_classes") or 0)
    if not config or not (config.get("hf_hub_id") or config.get("url")):
        raise PagbenchError(f"timm has no pretrained weights for {model_name!r}; pass --weights FILE or --model-option pretrained=false")
    hub = f"https://huggingface.co/{config['hf_hub_id']}" if config.get("hf_hub_id") else config["url"]
    _check_classes(classes, dataset, replace_head, f"timm:{model_name} ({hub})")
    changed = []
    if kwargs:  # would timm resample the pretrained tensors to fit the network asked for?
        pretrained_shapes = {k: tuple(v.shape) for k, v in _skeleton(model_name, {}, classes).state_dict().items()}
        wanted = _skeleton(model_name, kwargs, classes).state_dict()
        changed = [
            f"{key} (pretrained {'x'.join(map(str, pretrained_shapes[key]))}, model {_shape(value)})"
            for key, value in wanted.items()
            if key in pretrained_shapes and pretrained_shapes[key] != tuple(value.shape)
        ]
        if changed and not allow:
            raise PagbenchError(
                f"timm:{model_name} built with {_shown(kwargs)} would have timm transform {len(changed)} pretrained tensors: "
                f"{listing(changed, 3)}; that is a different network from the pretrained one: pass "
                "--model-option allow_resample=true to accept it (recorded in the model card)"
            )
    if _offline() and not config.get("hf_hub_id"):
        from timm.models._hub import get_cache_dir

        cached = Path(get_cache_dir()) / os.path.basename(urlparse(config["url"]).path)
        if not cached.exists():
            raise PagbenchError(f"timm:{model_name} needs its weights from {hub} but PAGBENCH_OFFLINE is set; download them and pass --weights FILE")
    try:
        with _hub_mode():
            network = create(model_name, kwargs, pretrained=True)
    except PagbenchError:
        raise
    except Exception as error:
        raise PagbenchError(
            f"could not fetch the weights of timm:{model_name} from {hub} ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:120]}); offline, download the weights file and pass --weights FILE"
        ) from error
    provenance = {"weights": "hub", "hub": hub, "pretrained_tag": config.get("tag")}
    if changed:
        provenance.update(transformed_by_timm=changed, allow_resample=True)
    if kwargs:
        provenance["create_kwargs"] = dict(kwargs)
    return network, classes, provenance, hub


def timm_model(name: str, dataset, options: dict) -> BuiltModel:
    """``timm:NAME``: hub weights, ``--weights FILE``, or random weights (``pretrained=false``)."""
    model_name, config = resolve(name)
    kwargs = creation_kwargs(name, options, MODEL_OPTIONS)
    _input_size(options), _transform(options)  # option errors before any weights are read
    pretrained = option_flag({"pretrained": options.get("pretrained", True)}, "pretrained")
    replace_head = option_flag(options, "replace_head")
    allow = option_flag(options, "allow_resample")
    weights = options.get("weights")
    if not weights:
        for key in ("trust_checkpoint", "checkpoint_key"):
            if options.get(key):
                raise PagbenchError(f"{'--trust-checkpoint' if key == 'trust_checkpoint' else '--model-option checkpoint_key'} applies to --weights FILE")
    if weights and not pretrained:
        raise PagbenchError("--weights and --model-option pretrained=false contradict each other")

    tag = config.get("tag")
    if not pretrained:
        network = _seeded_create(model_name, kwargs, dataset.num_classes)
        classes, provenance, source = dataset.num_classes, {"weights": "random initialisation (seed 0)"}, "timm (untrained)"
        if kwargs:
            provenance["create_kwargs"] = dict(kwargs)
        trained_on, regime = "none", "untrained"
    elif weights:
        network, classes, provenance, source, kwargs = _from_file(model_name, config, dataset, options, kwargs, replace_head)
        trained_on, regime = "unspecified", "unspecified"
    else:
        network, classes, provenance, source = _from_hub(model_name, config, dataset, kwargs, replace_head, allow)
        trained_on = _pretraining_dataset(tag)
        regime = "adversarial" if "adv" in (tag or "") or model_name.startswith(("adv_", "ens_adv_")) else "standard"

    requires_finetuning = False
    if classes != dataset.num_classes:
        head = config.get("classifier")
        _seeded_head(network, dataset.num_classes)
        provenance.update(replaced_head=head, checkpoint_classes=classes)
        requires_finetuning = True
    wrapper, data = _wrap(network, dataset, options, "hub" if provenance["weights"] == "hub" else "own", kwargs)
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
