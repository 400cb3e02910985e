"""Validation of the learned estimators on the embedded dataset, against its exact geometry.

Uses the models in the store (fit them first):

    pagbench fit-score --dataset synthetic                     # denoiser, ~5-8 min on 1 CPU thread
    pagbench fit-manifold --dataset synthetic --latent-dim 45  # VAE, ~3 min
    python benchmarks/learned_geometry.py [--num-images 200]

Reports, on the first N test images: the mean cosine between the `denoiser` score and the exact
score (unconditional, conditional, posterior) at σ; and the mean cos² of the principal angles
between the exact tangent space (K = 45) and the `autoencoder` / `denoiser` estimates (chance:
k/D). Targets: cosine ≥ 0.9 (unconditional and conditional), cos² ≥ 0.9.
"""

from __future__ import annotations

import argparse
import time

import torch


def principal_cos2(first, second):
    overlap = first.double() @ second.double().transpose(1, 2)
    return (overlap**2).sum((1, 2)) / min(first.shape[1], second.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--manifold-images", type=int, default=50, help="images for the (slower) denoiser manifold")
    parser.add_argument("--sigmas", default="0.05,0.1")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pagbench_plugins.metrics.score_cosine import cosine
    from pagbench.extensions.registry import datasets, manifold_providers, score_providers

    dataset = datasets().get("synthetic").factory(None)
    distribution = dataset.distribution
    batch = dataset.split("test").batch(list(range(args.num_images)))
    scores = score_providers().get("denoiser").factory(dataset, {})
    print(f"denoiser {scores.record['identifier']} ({scores.record['recipe']['steps']} steps, "
          f"{scores.record['train_seconds']:.0f} s); {args.num_images} test images")
    for sigma in [float(s) for s in args.sigmas.split(",")]:
        row = []
        for kind in ("unconditional", "conditional", "posterior"):
            learned = scores.scores(batch.images, batch.labels, sigma, kind)
            exact = distribution.scores(batch.images, batch.labels, sigma, kind)
            values = cosine(learned, exact)
            row.append(f"{kind} {values.mean():.4f} ± {values.std() / len(values) ** 0.5:.4f}")
        print(f"  score cosine at σ = {sigma:g}: " + ", ".join(row))

    exact = distribution.tangent_basis(args.num_images)
    k, dim = distribution.manifold_dim, dataset.dim
    print(f"tangent spaces (exact K = {k} of D = {dim}; chance cos² = {k / dim:.4f})")
    autoencoder = manifold_providers().get("autoencoder").factory(dataset, {"latent_dim": str(k)})
    start = time.perf_counter()
    basis = autoencoder.tangent_basis(batch.images, batch.labels)
    values = principal_cos2(basis, exact)
    print(f"  autoencoder {autoencoder.record['identifier']} (test RMSE {autoencoder.record['test_rmse']:.4f}): "
          f"mean cos² {values.mean():.4f} (min {values.min():.4f}) on {args.num_images} images, {time.perf_counter() - start:.1f} s")
    count = args.manifold_images
    for sigma in (0.05, 0.1):
        provider = manifold_providers().get("denoiser").factory(dataset, {"k": str(k), "manifold_sigma": str(sigma)})
        start = time.perf_counter()
        basis = provider.tangent_basis(batch.images[:count], batch.labels[:count])
        values = principal_cos2(basis, exact[:count])
        print(f"  denoiser Jacobian at σ = {sigma:g}, k = {k}: mean cos² {values.mean():.4f} (min {values.min():.4f}) "
              f"on {count} images, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
