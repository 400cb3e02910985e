"""score-jacobian on the published-size EDM SongUNet: network passes per image against the floor
of k passes, and the subspace's mean cos² against a converged subspace (issue 17).

The network is pagbench's own SongUNet in the published CIFAR-10 DDPM++/VP configuration
(55,733,891 parameters, 3×32×32) with **random weights** (seed 0): NVIDIA's trained weights
cannot be downloaded here. A random network's Jacobian spectrum is not a trained denoiser's (it
has no gap at k), so the same measurement is also made on the embedded ``synthetic`` data's exact
score, whose Jacobian has the gap a good denoiser has at small σ (eigenvalue ≈ 1 on the 45-dim
tangent space, ≈ 0 across it), against its exact tangent space.

Passes are counted as Jacobian products per image (one JVP or one VJP each). The provider's
randomised subspace iteration of width m = k + oversampling applies (J + Jᵀ)/2 — m JVPs and m
VJPs — (iterations + 1) times (the last for Rayleigh–Ritz); the floor is k JVPs (one forward-mode
pass per tangent direction). One run of N iterations gives the Rayleigh–Ritz basis after every
q ≤ N iterations (the product S·V_q that Rayleigh–Ritz needs is the next iteration's), from the
provider's own per-image start vectors; the basis after N iterations is the reference. Also
measured: a JVP-only randomised Nyström approximation, which assumes J is symmetric (exactly so for
an exact score: J = I + σ²∇² log p), m JVPs with no power step or 2m with one.

    python benchmarks/score_jacobian_edm.py [--images 1] [--k 32] [--converged 8] [--iterations 4] [--oversampling 10,0]
                                            [--threads 1] [--skip-published] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def published_network():
    from pagbench_plugins.diffusion.edm_preconditioning import VPPrecond

    torch.manual_seed(0)
    return VPPrecond(img_resolution=32, img_channels=3, label_dim=0, use_fp16=False, model_type="SongUNet",
                     embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1,
                     resample_filter=[1, 1], model_channels=128, channel_mult=[2, 2, 2], augment_dim=9,
                     dropout=0.13).eval().requires_grad_(False)


def timed(function, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def subspace_iterates(denoise, image, k, oversampling, iterations):
    """Rayleigh–Ritz bases (k, D) after q = 1 … iterations steps of the provider's subspace
    iteration on (J + Jᵀ)/2 at ``image`` (C, H, W), from its start vectors; and seconds per apply."""
    from torch.func import jvp, vjp, vmap

    from pagbench.evaluation.manifold import orthonormalize
    from pagbench_plugins.learned.geometry import image_seed

    x = image[None]
    dim = image.numel()
    width = min(k + oversampling, dim)
    _, pullback = vjp(denoise, x)

    def apply(vectors):  # (m, D) → (J + Jᵀ)/2 applied to each row
        tangents = vectors.reshape(width, *x.shape)
        forward = vmap(lambda t: jvp(denoise, (x,), (t,))[1])(tangents)
        backward = vmap(lambda t: pullback(t)[0])(tangents)
        return ((forward + backward) / 2).reshape(width, dim)

    generator = torch.Generator().manual_seed(image_seed(image, 0))
    vectors = orthonormalize(torch.randn(width, dim, generator=generator).to(x)[None])[0]
    bases, seconds = [], []
    for step in range(iterations + 1):
        start = time.perf_counter()
        product = apply(vectors)
        seconds.append(time.perf_counter() - start)
        if step:  # Rayleigh–Ritz in span(vectors), whose S·vectors is ``product``
            projected = vectors @ product.T
            _, eigenvectors = torch.linalg.eigh((projected + projected.T) / 2)
            bases.append(orthonormalize((eigenvectors[:, -k:].flip(-1).T @ vectors)[None])[0])
        vectors = orthonormalize(product[None])[0]
    return bases, statistics.median(seconds)


def nystrom(denoise, image, k, oversampling, power_steps, seed=1):
    """Top-k eigenvectors of J from JVPs only, assuming J symmetric: Y = J Ω (Ω orthonormalised,
    m = k + oversampling columns), optionally ``power_steps`` more products, then the Nyström
    approximation J ≈ Y (Ωᵀ Y)⁺ Yᵀ. Returns (k, D)."""
    from torch.func import jvp, vmap

    from pagbench.evaluation.manifold import orthonormalize

    x = image[None]
    dim = image.numel()
    width = min(k + oversampling, dim)

    def products(rows):
        return vmap(lambda t: jvp(denoise, (x,), (t,))[1])(rows.reshape(width, *x.shape)).reshape(width, dim)

    omega = orthonormalize(torch.randn(width, dim, generator=torch.Generator().manual_seed(seed)).to(x)[None])[0]
    images = products(omega)
    for _ in range(power_steps):
        omega = orthonormalize(images[None])[0]
        images = products(omega)
    core = omega.double() @ images.double().T
    core = (core + core.T) / 2
    values, vectors = torch.linalg.eigh(core)
    keep = values.abs() > values.abs().max() * 1e-10
    basis_factor = vectors[:, keep] / values[keep].abs().sqrt()
    factor = basis_factor.T @ images.double()  # J ≈ factorᵀ diag(sign) factor, factor (m', D)
    q, r = torch.linalg.qr(factor.T)  # J ≈ q (r diag(sign) rᵀ) qᵀ
    small = r @ torch.diag(values[keep].sign()) @ r.T
    _, eigenvectors = torch.linalg.eigh((small + small.T) / 2)
    return (q @ eigenvectors[:, -k:].flip(-1)).T


def cos2(reference, estimate):
    """Mean cos² of the principal angles between the row spaces (k, D) (1 = the same subspace)."""
    overlap = reference.double() @ estimate.double().T
    return float((overlap ** 2).sum() / estimate.shape[0])


def published(args, report):
    from torch.func import jvp, vjp, vmap

    from pagbench.extensions.registry import datasets

    network = published_network()
    sigma = 0.1  # the provider's default σ in [0,1] units (σ₋₁ = 0.2)

    def denoise(z):  # x + σ²·s in [0,1] units = (D(2x−1; 2σ) + 1)/2
        return (network(2 * z - 1, torch.full([z.shape[0]], 2 * sigma), None) + 1) / 2

    synthetic = datasets().get("synthetic").factory(None)
    small = synthetic.split("test").images[: args.images].float()
    images = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    x = images[:1]
    batch = images[:1].expand(8, -1, -1, -1).contiguous()
    score_1, _ = timed(lambda: denoise(x))
    score_8, _ = timed(lambda: denoise(batch))
    tangents = torch.randn(8, *x.shape)
    jvp_8, _ = timed(lambda: vmap(lambda t: jvp(denoise, (x,), (t,))[1])(tangents))
    _, pullback = vjp(denoise, x)
    vjp_8, _ = timed(lambda: vmap(lambda t: pullback(t)[0])(tangents))
    passes = {"score pass, 1 image (s)": score_1, "score pass per image, batch 8 (s)": score_8 / 8,
              "JVP per product, 8 vmapped (s)": jvp_8 / 8, "VJP per product, 8 vmapped (s)": vjp_8 / 8}
    report["published"] = {"parameters": sum(p.numel() for p in network.parameters()), "passes": passes, "runs": []}
    print("published-size SongUNet (random weights):", json.dumps(passes))
    k = args.k
    reference = {}
    for position, oversampling in enumerate(args.oversampling):
        iterations = args.converged if position == 0 else args.iterations
        scores, seconds, last = {}, [], []
        for index in range(args.images):
            bases, apply_seconds = subspace_iterates(denoise, images[index], k, oversampling, iterations)
            if position == 0:  # the reference: the provider's default width, run to ``converged`` iterations
                reference[index] = bases[-1]
                last.append(cos2(bases[-1], bases[-2]))
            for q, basis in enumerate(bases if position else bases[:-1], start=1):
                scores.setdefault(q, []).append(cos2(reference[index], basis))
            seconds.append(apply_seconds)
        apply_seconds = statistics.median(seconds)
        for q in sorted(scores):
            products = 2 * (k + oversampling) * (q + 1)
            run = {"k": k, "oversampling": oversampling, "iterations": q, "products": products, "floor": k,
                   "ratio": products / k, "seconds_per_image": apply_seconds * (q + 1),
                   "seconds_ratio_to_floor": apply_seconds * (q + 1) / (k * passes["JVP per product, 8 vmapped (s)"]),
                   "cos2_vs_converged": statistics.mean(scores[q])}
            report["published"]["runs"].append(run)
            print(json.dumps(run), flush=True)
        if position == 0:
            summary = {"reference": f"oversampling {oversampling}, {iterations} iterations",
                       "cos2_between_its_last_two_iterates": statistics.mean(last), "seconds_per_apply": apply_seconds}
            report["published"]["reference"] = summary
            print(json.dumps(summary), flush=True)
    for oversampling in (args.oversampling[0], 0):
        for power in (0, 1):
            start = time.perf_counter()
            estimates = [nystrom(denoise, images[index], k, oversampling, power) for index in range(args.images)]
            run = {"method": "jvp-only Nystrom", "k": k, "oversampling": oversampling, "power_steps": power,
                   "products": (k + oversampling) * (power + 1), "ratio": (k + oversampling) * (power + 1) / k,
                   "seconds_per_image": (time.perf_counter() - start) / args.images,
                   "cos2_vs_converged": statistics.mean(cos2(reference[index], estimate) for index, estimate in enumerate(estimates))}
            report["published"]["runs"].append(run)
            print(json.dumps(run), flush=True)


def exact_score(args, report):
    """The same measurement with the synthetic data's exact score against its exact tangent space."""
    from pagbench.extensions.registry import datasets, manifold_providers

    synthetic = datasets().get("synthetic").factory(None)
    split = synthetic.split("test")
    images, labels = split.images[: args.synthetic_images], split.labels[: args.synthetic_images]
    exact = manifold_providers().get("analytic").factory(synthetic, {}).tangent_basis(images, labels)
    k = exact.shape[1]
    provider = manifold_providers().get("score-jacobian").factory(synthetic, {"k": str(k)})
    sigma2 = provider.sigma ** 2
    rows = []
    for oversampling in (10, 0):
        scores = {}
        for index in range(len(images)):
            y = labels[index : index + 1]

            def denoise(z, y=y):
                return z + sigma2 * provider._score(z, y)

            image = images[index].double()
            with torch.enable_grad():
                bases, _ = subspace_iterates(denoise, image, k, oversampling, 4)
                for q, basis in enumerate(bases, start=1):
                    scores.setdefault(q, []).append(cos2(exact[index], basis))
                for power in (0, 1):
                    scores.setdefault(f"nystrom{power}", []).append(cos2(exact[index], nystrom(denoise, image, k, oversampling, power)))
        for q in range(1, 5):
            rows.append({"k": k, "oversampling": oversampling, "iterations": q, "products": 2 * (k + oversampling) * (q + 1),
                         "ratio": 2 * (k + oversampling) * (q + 1) / k, "cos2_vs_exact": statistics.mean(scores[q]),
                         "min_cos2": min(scores[q])})
        for power in (0, 1):
            values = scores[f"nystrom{power}"]
            rows.append({"method": "jvp-only Nystrom", "k": k, "oversampling": oversampling, "power_steps": power,
                         "products": (k + oversampling) * (power + 1), "ratio": (k + oversampling) * (power + 1) / k,
                         "cos2_vs_exact": statistics.mean(values), "min_cos2": min(values)})
    for row in rows:
        print(json.dumps(row))
    report["synthetic_exact_score"] = {"images": len(images), "sigma": provider.sigma, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1, help="images for the published-size network")
    parser.add_argument("--synthetic-images", type=int, default=8)
    parser.add_argument("--k", type=int, default=32, help="the provider's default k")
    parser.add_argument("--converged", type=int, default=8, help="iterations of the reference subspace (default width)")
    parser.add_argument("--iterations", type=int, default=4, help="iterations for the other oversampling values")
    parser.add_argument("--oversampling", default="10,0", help="comma-separated; the first is the provider's default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-published", action="store_true")
    parser.add_argument("--output")
    args = parser.parse_args()
    args.oversampling = [int(value) for value in args.oversampling.split(",")]
    torch.set_num_threads(args.threads)
    report = {"threads": args.threads}
    exact_score(args, report)
    if not args.skip_published:
        published(args, report)
    if args.output:
        with open(args.output, "w") as stream:
            json.dump(report, stream, indent=1)


if __name__ == "__main__":
    main()
