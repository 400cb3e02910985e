"""Datasets: images (N, C, H, W) float32 in [0,1] with integer labels, split by name.

A dataset plugin returns a :class:`Dataset`; evaluation reads batches through
:meth:`ImageSplit.batch`. Small datasets hold a split in memory (:class:`TensorSplit`); large
ones may implement :class:`ImageSplit` lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    """One batch: images (B, C, H, W) float32 in [0,1], labels (B,) int64, indices (B,) into the
    split, and for distractor datasets ``signal_mask`` (B, 1, H, W) bool, True on the signal."""

    images: "torch.Tensor"
    labels: "torch.Tensor"
    indices: "torch.Tensor"
    signal_mask: "torch.Tensor | None" = None


class ImageSplit:
    """One split of a dataset, read by index.

    ``in_memory`` (class attribute, default False): True for a split whose ``images`` (N, C, H, W;
    float in [0,1], or uint8 read as value / 255) and ``labels`` (N,) are tensors in memory and
    whose ``batch(indices)`` is exactly those rows, so a trainer may hold them on the device.
    Read from the class itself, not inherited: a subclass that may change ``batch`` says it again."""

    in_memory = False

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, indices: Sequence[int]) -> Batch:
        raise NotImplementedError


class TensorSplit(ImageSplit):
    """A split held in memory: images (N, C, H, W) float32 in [0,1], labels (N,) int64."""

    in_memory = True

    def __init__(self, images: "torch.Tensor", labels: "torch.Tensor", signal_mask: "torch.Tensor | None" = None):
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images (N,C,H,W) and labels (N,) expected, got {tuple(images.shape)} and {tuple(labels.shape)}")
        self.images, self.labels, self.signal_mask = images, labels, signal_mask

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: Sequence[int]) -> Batch:
        import torch

        index = torch.as_tensor(indices, dtype=torch.long)
        mask = None if self.signal_mask is None else self.signal_mask[index]
        return Batch(self.images[index], self.labels[index], index, mask)


@dataclass
class Dataset:
    """A dataset as pagbench sees it.

    ``robustness_epsilons`` is the grid of perturbation norms (in [0,1] pixel units, l2 over the
    whole image) for ``manifold_robustness``; ``headline_epsilon`` the one reported as a number.
    ``noise_levels`` is the grid of noise standard deviations (pixel units) for
    ``signal_distractor_ratio``. ``config`` holds whatever determines the content (seed, sizes):
    it keys the caches.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    splits: dict[str, ImageSplit | object]
    class_names: tuple[str, ...] = ()
    config: dict = field(default_factory=dict)
    robustness_epsilons: tuple[float, ...] = ()
    headline_epsilon: float | None = None
    noise_levels: tuple[float, ...] = ()
    has_signal_mask: bool = False

    def split(self, name: str) -> ImageSplit:
        """The split called ``name``; values may be zero-argument callables, loaded on first use."""
        from pagbench.errors import PagbenchError

        if name not in self.splits:
            raise PagbenchError(f"dataset {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}")
        value = self.splits[name]
        if callable(value) and not isinstance(value, ImageSplit):
            value = value()
            self.splits[name] = value
        return value

    @property
    def fingerprint(self) -> str:
        """Stable id of the dataset's content configuration, for cache keys."""
        from pagbench.files.fingerprint import fingerprint

        return fingerprint({"name": self.name, "config": self.config}, 16)

    @property
    def dim(self) -> int:
        channels, height, width = self.image_shape
        return channels * height * width
