"""Tangent bases from learned models.

* :func:`decoder_tangent_basis`: the column space of a decoder's Jacobian at given latents, by
  forward-mode AD — ``torch.func.jvp`` (one JVP per latent dimension) vectorised with ``vmap``
  over the latent directions — then batched QR. :func:`naive_decoder_jacobian` and
  :func:`naive_per_image_decoder_jacobian` are the one-backward-pass-per-output-pixel baselines
  of ``benchmarks/decoder_jacobian.py``.
* :func:`denoiser_tangent_basis`: the top-k eigenvectors of the symmetrised denoiser Jacobian
  (J + Jᵀ)/2 at small σ, by randomised subspace iteration with JVPs and VJPs (``torch.func``),
  then Rayleigh–Ritz. At small σ a denoiser projects onto the data manifold, so its Jacobian has
  eigenvalues near 1 along the tangent space and near 0 across it.
"""

from __future__ import annotations

import torch
from torch.func import jvp, vjp, vmap

from pagbench.plugin import orthonormalize


def decoder_jacobian(decode, latents: torch.Tensor, tangent_chunk: int | None = None) -> torch.Tensor:
    """∂decode/∂z at each latent: (B, D, k), by forward mode — one JVP per latent direction e_j,
    all images at once (``decode`` treats images independently: no batch statistics), the k
    directions vectorised with ``vmap`` in chunks of ``tangent_chunk`` (this is ``jacfwd``
    without re-running the primal per image). The default chunk keeps B·chunk ≈ 64 images' worth
    of activations per pass, which measured fastest on CPU (16 directions at B = 4, 8 at B = 8)."""
    batch, k = latents.shape
    tangent_chunk = tangent_chunk or max(1, 64 // batch)
    directions = torch.eye(k, dtype=latents.dtype, device=latents.device).unsqueeze(1).expand(k, batch, k)
    columns = vmap(lambda tangent: jvp(decode, (latents,), (tangent,))[1], chunk_size=tangent_chunk)(directions)
    return columns.reshape(k, batch, -1).permute(1, 2, 0)


def decoder_tangent_basis(decode, latents: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """Orthonormal rows spanning the decoder Jacobian's columns: (B, k, D), ``chunk`` images at a
    time (on CPU, 8 images per pass cost 25% more per image than 1–4, measured at latent 128)."""
    parts = [orthonormalize(decoder_jacobian(decode, latents[s : s + chunk]).transpose(1, 2)) for s in range(0, latents.shape[0], chunk)]
    return torch.cat(parts)


def naive_decoder_jacobian(decode, latents: torch.Tensor) -> torch.Tensor:
    """The same Jacobian (B, D, k) with one backward pass per output pixel, each pass serving
    every image of the batch at once (a batched form of the slow baseline)."""
    latents = latents.detach().requires_grad_(True)
    output = decode(latents).reshape(latents.shape[0], -1)
    rows = []
    for pixel in range(output.shape[1]):
        (gradient,) = torch.autograd.grad(output[:, pixel].sum(), latents, retain_graph=True)
        rows.append(gradient)
    return torch.stack(rows, dim=1)


def naive_per_image_decoder_jacobian(decode, latents: torch.Tensor) -> torch.Tensor:
    """The reference-code style baseline: per image, one backward pass per output pixel."""
    return torch.cat([naive_decoder_jacobian(decode, latents[i : i + 1]) for i in range(latents.shape[0])])


def image_seed(image: torch.Tensor, seed: int = 0) -> int:
    """A 63-bit seed from an image's float32 pixels and ``seed``: the same image draws the same
    random numbers whatever batch it is in (results do not depend on the batch size)."""
    import hashlib

    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    digest = hashlib.sha256(seed.to_bytes(8, "little", signed=True) + data).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def denoiser_tangent_basis(denoise, images: torch.Tensor, k: int, iterations: int = 4, oversampling: int = 10,
                           seed: int = 0, chunk: int = 16) -> torch.Tensor:
    """Top-k eigenvectors of (J + Jᵀ)/2, J = ∂denoise/∂x at ``images`` (B, C, H, W): (B, k, D).

    The random start of the subspace iteration is drawn per image from :func:`image_seed`, so an
    image's basis does not depend on the batch it is evaluated in."""
    parts = []
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk]
        batch, dim = x.shape[0], x[0].numel()
        width = min(k + oversampling, dim)
        _, pullback = vjp(denoise, x)

        def apply(vectors):  # (B, m, D) → (J + Jᵀ)/2 applied to each row
            tangents = vectors.transpose(0, 1).reshape(width, *x.shape)
            forward = vmap(lambda t: jvp(denoise, (x,), (t,))[1])(tangents)
            backward = vmap(lambda t: pullback(t)[0])(tangents)
            return ((forward + backward) / 2).reshape(width, batch, dim).transpose(0, 1)

        start_vectors = torch.stack([torch.randn(width, dim, generator=torch.Generator().manual_seed(image_seed(image, seed)))
                                     for image in x])
        vectors = orthonormalize(start_vectors.to(x))
        for _ in range(iterations):
            vectors = orthonormalize(apply(vectors))
        projected = vectors @ apply(vectors).transpose(1, 2)  # (B, m, m)
        _, eigenvectors = torch.linalg.eigh((projected + projected.transpose(1, 2)) / 2)
        top = eigenvectors[..., -k:].flip(-1)  # (B, m, k), largest first
        parts.append(orthonormalize(top.transpose(1, 2) @ vectors))
    return torch.cat(parts)
