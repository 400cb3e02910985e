"""Adapting a foreign network to pagbench's conventions (imports torch: import it lazily).

:class:`ImageClassifier` takes the dataset's images (B, C, H, W) in [0,1] and does, inside the
model, everything a data pipeline would otherwise do outside it: grey → RGB by repetition,
resizing to the network's input size, per-channel normalisation. All three are differentiable,
so input gradients are w.r.t. the dataset's own [0,1] pixels, with the dataset's image shape.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from .models import normalize_module

#: Interpolation modes :func:`torch.nn.functional.interpolate` antialiases when downsampling.
_ANTIALIASED = ("bilinear", "bicubic")


class ImageClassifier(nn.Module):
    """[0,1] images (B, C, H, W) → logits of ``network``.

    ``network`` expects ``in_channels`` channels normalised as (x − mean) / std and, when
    ``input_size`` (H, W) is given, that spatial size; images of another size are resized with
    ``interpolation`` (antialiased when shrinking). One-channel images are repeated to
    ``in_channels``. Checkpoints of the network load into ``.network``; its normalisation
    buffers are ``.normalize.mean`` / ``.normalize.std``.
    """

    def __init__(self, network: nn.Module, mean, std, input_size=None, in_channels: int | None = None, interpolation: str = "bilinear"):
        super().__init__()
        self.normalize = normalize_module(mean, std)
        self.network = network
        self.input_size = tuple(int(v) for v in input_size) if input_size else None
        self.in_channels = in_channels
        self.interpolation = interpolation

    def forward(self, images):
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            if images.shape[1] != 1:
                raise ValueError(f"network takes {self.in_channels}-channel images, got {images.shape[1]} channels")
            images = images.expand(-1, self.in_channels, -1, -1)
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            extra = {"antialias": True, "align_corners": False} if self.interpolation in _ANTIALIASED else {}
            images = functional.interpolate(images, size=self.input_size, mode=self.interpolation, **extra)
        return self.network(self.normalize(images))

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, in_channels={self.in_channels}, interpolation={self.interpolation!r}"


def normalizers(module: nn.Module) -> dict[str, nn.Module]:
    """Submodules whose whole state is a ``mean`` and a ``std`` buffer (e.g.
    :func:`pagbench.models.normalize_module`), by qualified name."""
    found = {}
    for name, child in module.named_modules():
        buffers = {key for key, _ in child.named_buffers(recurse=False)}
        if buffers == {"mean", "std"} and not any(True for _ in child.parameters(recurse=False)):
            found[name] = child
    return found
