"""Adapting a foreign network to pagbench's conventions (imports torch: import it lazily).

:class:`ImageClassifier` takes the dataset's images (B, C, H, W) in [0,1] and does, inside the
model, everything a data pipeline would otherwise do outside it: grey → RGB by repetition,
resizing (and, optionally, the centre crop of an evaluation transform), per-channel
normalisation. All of it is differentiable, so input gradients are w.r.t. the dataset's own
[0,1] pixels, with the dataset's image shape. :meth:`ImageClassifier.preprocessing` says exactly
what is done to an image of a given shape, for the model card.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


def normalize_module(mean, std, clamp: bool = False):
    """A module mapping [0,1] images to (x − mean) / std per channel (buffers, not parameters).

    ``clamp=True`` first clamps the images to [0,1], as the robustness library's
    ``InputNormalize`` does: outputs then ignore how far a pixel lies outside [0,1], and the
    input gradient is zero at pixels at or beyond 0 and 1 (torch's clamp passes no gradient
    there). The flag is the attribute ``clamp``, not state, so it changes no checkpoint keys.
    """
    class Normalize(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
            self.clamp = bool(clamp)

        def forward(self, images):
            if self.clamp:
                images = torch.clamp(images, 0, 1)
            return (images - self.mean) / self.std

        def extra_repr(self) -> str:
            return "clamp to [0,1] first" if self.clamp else ""

    return Normalize()


#: Interpolation modes :func:`torch.nn.functional.interpolate` can antialias (when downsampling).
_ANTIALIASED = ("bilinear", "bicubic")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "nearest-exact")


def _pair(value):
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else values


def resized_shape(height: int, width: int, size) -> tuple[int, int]:
    """The output (H, W) of ``torchvision.transforms.Resize(size)`` on an image of (height, width):
    an int resizes the shorter side to ``size`` keeping the aspect ratio (the longer side is
    ``int(size * long / short)``, as torchvision computes it); a pair is the exact size."""
    if isinstance(size, int):
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size, int(size * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    return _pair(size)


def crop_box(height: int, width: int, crop) -> tuple[int, int]:
    """(top, left) of ``torchvision.transforms.CenterCrop(crop)``: ``int(round((H - h) / 2))``."""
    crop_height, crop_width = crop
    return int(round((height - crop_height) / 2.0)), int(round((width - crop_width) / 2.0))


class SelectOutput(nn.Module):
    """Element ``index`` of the output of a network that returns a tuple or list, e.g. the
    logits of the robustness library's ``AttackerModel`` (which returns ``(logits, input)``)."""

    def __init__(self, network: nn.Module, index: int):
        super().__init__()
        self.network, self.index = network, int(index)

    def forward(self, images):
        output = self.network(images)
        if not isinstance(output, (tuple, list)):
            raise TypeError(f"output={self.index} was given but the network returned a {type(output).__name__}, not a tuple")
        return output[self.index]


class ImageClassifier(nn.Module):
    """[0,1] images (B, C, H, W) → logits of ``network``.

    ``network`` expects ``in_channels`` channels normalised as (x − mean) / std. Spatially, one of:

    * ``input_size`` (H, W): images of another size are resized to exactly that size;
    * ``crop_size`` (H, W), optionally after ``resize_size``: an evaluation transform, as
      ``Compose([Resize(resize_size), CenterCrop(crop_size)])`` of torchvision (and timm) would
      do it on tensors: an int ``resize_size`` resizes the shorter side keeping the aspect ratio,
      a pair resizes exactly; then the centre ``crop_size`` is cut out (same rounding as
      torchvision's ``CenterCrop``; a crop larger than the image is refused, not padded);
    * neither: images are fed at their own size.

    Resizing uses ``interpolation`` with ``align_corners=False`` and, for bilinear / bicubic,
    ``antialias`` (it only acts when shrinking); an image already of the target size is not
    touched (as torchvision's ``Resize``). One-channel images are repeated to ``in_channels``.
    Checkpoints of the network load into ``.network``; its normalisation buffers are
    ``.normalize.mean`` / ``.normalize.std``.
    """

    def __init__(
        self,
        network: nn.Module,
        mean,
        std,
        input_size=None,
        in_channels: int | None = None,
        interpolation: str = "bilinear",
        *,
        crop_size=None,
        resize_size=None,
        antialias: bool = True,
    ):
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        if input_size is not None and (crop_size is not None or resize_size is not None):
            raise ValueError("give input_size (a plain resize) or crop_size / resize_size (an evaluation transform), not both")
        if resize_size is not None and crop_size is None:
            raise ValueError("resize_size needs crop_size (for a plain resize give input_size)")
        self.normalize = normalize_module(mean, std)
        self.network = network
        self.input_size = _pair(input_size) if input_size else None
        self.crop_size = _pair(crop_size)
        self.resize_size = resize_size if isinstance(resize_size, int) or resize_size is None else _pair(resize_size)
        self.in_channels = in_channels
        self.interpolation = interpolation
        self.antialias = bool(antialias)

    def _resize(self, images, size):
        if tuple(images.shape[-2:]) == tuple(size):
            return images
        extra = {"antialias": self.antialias, "align_corners": False} if self.interpolation in _ANTIALIASED else {}
        return functional.interpolate(images, size=tuple(size), mode=self.interpolation, **extra)

    def forward(self, images):
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            if images.shape[1] != 1:
                raise ValueError(f"network takes {self.in_channels}-channel images, got {images.shape[1]} channels")
            images = images.expand(-1, self.in_channels, -1, -1)
        if self.input_size is not None:
            images = self._resize(images, self.input_size)
        elif self.crop_size is not None:
            if self.resize_size is not None:
                images = self._resize(images, resized_shape(images.shape[-2], images.shape[-1], self.resize_size))
            height, width = images.shape[-2:]
            crop_height, crop_width = self.crop_size
            if crop_height > height or crop_width > width:
                raise ValueError(f"centre crop {crop_height}x{crop_width} is larger than the {height}x{width} image")
            top, left = crop_box(height, width, self.crop_size)
            images = images[..., top : top + crop_height, left : left + crop_width]
        return self.network(self.normalize(images))

    def preprocessing(self, image_shape) -> dict:
        """What :meth:`forward` does to a [0,1] image of ``image_shape`` (C, H, W), in order,
        for the model card: ``channels``, ``resize``, ``crop``, ``normalization``, ``network_input``."""
        channels, height, width = (int(v) for v in image_shape)
        steps: dict = {}
        if self.in_channels is not None and channels != self.in_channels:
            steps["channels"] = f"grey repeated to {self.in_channels} channels"
        how = f"{self.interpolation}, align_corners=False" + (
            f", antialias={self.antialias}" if self.interpolation in _ANTIALIASED else ""
        )
        size = (height, width)
        target = None
        if self.input_size is not None:
            target = self.input_size
        elif self.crop_size is not None and self.resize_size is not None:
            target = resized_shape(height, width, self.resize_size)
        if target is not None and tuple(target) != size:
            rule = "" if self.input_size is not None or not isinstance(self.resize_size, int) else f", shorter side to {self.resize_size}"
            steps["resize"] = f"{height}x{width} -> {target[0]}x{target[1]} ({how}{rule})"
            size = tuple(target)
        else:
            steps["resize"] = "none"
        if self.crop_size is not None:
            top, left = crop_box(size[0], size[1], self.crop_size)
            steps["crop"] = (
                f"centre {self.crop_size[0]}x{self.crop_size[1]} of {size[0]}x{size[1]} (top {top}, left {left})"
                if tuple(self.crop_size) != size else "none (image already the crop size)"
            )
            size = tuple(self.crop_size)
        else:
            steps["crop"] = "none"
        steps["normalization"] = {
            "mean": [round(float(v), 6) for v in self.normalize.mean.flatten()],
            "std": [round(float(v), 6) for v in self.normalize.std.flatten()],
        }
        steps["network_input"] = f"{self.in_channels or channels}x{size[0]}x{size[1]}"
        return steps

    def extra_repr(self) -> str:
        spatial = (
            f"input_size={self.input_size}" if self.crop_size is None
            else f"resize_size={self.resize_size}, crop_size={self.crop_size}"
        )
        return f"{spatial}, in_channels={self.in_channels}, interpolation={self.interpolation!r}, antialias={self.antialias}"


def normalizers(module: nn.Module) -> dict[str, nn.Module]:
    """Submodules whose whole state is a ``mean`` and a ``std`` buffer (e.g.
    :func:`pagbench.models.loading.normalize_module`), by qualified name."""
    found = {}
    for name, child in module.named_modules():
        buffers = {key for key, _ in child.named_buffers(recurse=False)}
        if buffers == {"mean", "std"} and not any(True for _ in child.parameters(recurse=False)):
            found[name] = child
    return found


def accepts_size(network: nn.Module, image_shape, in_channels: int | None = None) -> bool:
    """Whether ``network`` runs on one (normalised) image of ``image_shape`` (C, H, W) as it is:
    a blank image through it in eval mode, without gradients, its train/eval state restored.
    Fixed-size networks (e.g. a ViT with a fixed position embedding) refuse other sizes."""
    channels, height, width = (int(v) for v in image_shape)
    parameter = next(iter(network.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(torch.zeros(1, in_channels or channels, height, width, device=device))
        return True
    except Exception:  # any refusal of the size: an assertion, a shape error, ...
        return False
    finally:
        network.train(training)


def input_size_option(options: dict):
    """The ``--model-option input_size`` of a model family: (H, W) for ``N`` or ``HxW``,
    ``"native"`` (feed the dataset's size) for ``native``/``none``, None when not given; anything
    else is a one-line :class:`~pagbench.errors.PagbenchError`."""
    from pagbench.errors import PagbenchError

    value = options.get("input_size")
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("native", "none"):
        return "native"
    try:
        parts = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) <= 0:
        raise PagbenchError(f"--model-option input_size: expected N, HxW or native, got {value!r}")
    return (parts[0], parts[-1])


def option_value(value):
    """A ``--model-option`` value for a library's constructor: ``true``/``false`` → bool,
    ``none`` → None, ``32`` → int, ``0.1`` → float, ``32x48`` or ``32,48`` → a tuple of ints
    (or floats), anything else the string itself; non-strings are returned unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    for separator in (",", "x"):
        parts = [part.strip() for part in lowered.split(separator)]
        if len(parts) > 1 and all(parts):
            for kind in (int, float):
                try:
                    return tuple(kind(part) for part in parts)
                except ValueError:
                    pass
    return text
