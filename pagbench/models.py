"""Loading models from the registry, and the wrappers every model provider can use.

Conventions: a model takes images (B, C, H, W) float32 in [0,1] and returns logits
(B, num_classes); normalisation lives inside it (:class:`Normalize`), so gradients are w.r.t.
[0,1] pixels. Models are put in eval mode with frozen parameters before evaluation, so BatchNorm
statistics never change and no gradient reaches the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .entries import ModelCard, ModelEntry, ModelFamily
from .errors import PagbenchError

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedModel:
    name: str
    module: "torch.nn.Module"
    card: ModelCard
    plugin: str


def normalize_module(mean, std):
    """A module mapping [0,1] images to (x − mean) / std per channel (buffers, not parameters)."""
    import torch

    class Normalize(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, images):
            return (images - self.mean) / self.std

    return Normalize()


def with_normalization(model, mean, std):
    """``Sequential(Normalize(mean, std), model)``: a model taking [0,1] images."""
    import torch

    return torch.nn.Sequential(normalize_module(mean, std), model)


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


def load_model(name: str, dataset, device: str = "cpu") -> LoadedModel:
    """Build the registered model ``name`` for ``dataset``, ready for evaluation."""
    from .registry import models

    registry = models()
    entry = registry.get(name)
    module = entry.factory(name, dataset, resolve_device(device))
    card = entry.card if isinstance(entry, ModelEntry) else entry.card(name)
    if not isinstance(entry, (ModelEntry, ModelFamily)):
        raise PagbenchError(f"model entry for {name!r} has unexpected type {type(entry).__name__}")
    return LoadedModel(name, prepare_for_evaluation(module, resolve_device(device)), card, registry.owner(name))


def check_output_shape(model, dataset, device) -> None:
    """Run one image through the model; raise a clear error if logits are not (1, num_classes)."""
    import torch

    split_name = next(iter(dataset.splits))
    sample = dataset.split(split_name).batch([0]).images.to(device)
    with torch.no_grad():
        try:
            output = model(sample)
        except Exception as error:
            raise PagbenchError(
                f"model failed on a {tuple(sample.shape)} image of dataset {dataset.name!r}: {type(error).__name__}: {error}"
            ) from error
    if not isinstance(output, torch.Tensor):
        raise PagbenchError(f"model returned {type(output).__name__}, expected a logits tensor")
    if tuple(output.shape) != (1, dataset.num_classes):
        raise PagbenchError(
            f"model output has shape {tuple(output.shape)} but dataset {dataset.name!r} needs "
            f"(batch, {dataset.num_classes}) logits"
        )
