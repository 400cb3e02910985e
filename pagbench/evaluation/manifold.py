"""Manifold providers: an orthonormal basis of the data manifold's tangent space at each image."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class ManifoldProvider:
    """Base class. ``tangent_basis`` returns (B, k, D) with orthonormal rows (D = C·H·W)."""

    name: str = "manifold"
    #: Whether tangent bases may be cached on disk (cheap closed forms need not be).
    disk_cache: bool = True

    @property
    def fingerprint(self) -> str:
        return self.name

    def tangent_basis(self, images: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError


def orthonormalize(vectors: "torch.Tensor") -> "torch.Tensor":
    """Orthonormal rows spanning the rows of ``vectors`` (B, k, D), by batched reduced QR."""
    import torch

    q, _ = torch.linalg.qr(vectors.transpose(1, 2), mode="reduced")
    return q.transpose(1, 2)
