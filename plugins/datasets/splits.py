"""Memory-light splits: images kept as uint8 and converted to float32 in [0,1] per batch."""

from __future__ import annotations

from typing import Sequence

import torch

from pagbench.plugin import Batch, ImageSplit


class Uint8Split(ImageSplit):
    """images (N, C, H, W) uint8, labels (N,) int64; ``signal_top`` (N,) bool, when given, says
    the signal is in the top half (True) or the bottom half (False) of each image."""

    in_memory = True  # batch() is the rows, as float / 255

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, signal_top: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape != (images.shape[0],):
            raise ValueError(f"uint8 images (N,C,H,W) and labels (N,) expected, got {images.dtype} {tuple(images.shape)}, {tuple(labels.shape)}")
        self.images, self.labels, self.signal_top = images, labels.long(), signal_top

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].float() / 255.0
        mask = None
        if self.signal_top is not None:
            height = images.shape[2]
            rows = torch.arange(height) < height // 2  # (H,) True in the top half
            top = self.signal_top[index].view(-1, 1, 1, 1)
            mask = torch.where(top, rows.view(1, 1, -1, 1), ~rows.view(1, 1, -1, 1)).expand(-1, 1, -1, images.shape[3]).contiguous()
        return Batch(images, self.labels[index], index, mask)
