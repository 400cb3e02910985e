"""Tangent bases from a decoder: forward-mode AD (jacfwd + vmap, one JVP per latent dimension)
against the naive Jacobian (one backward pass per output pixel), on the same decoder
(3×32×32 output, latent 128) and the same batch, timed in one run. Target: ≥ 20× on CPU.

    python benchmarks/decoder_jacobian.py [--batch 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--latent", type=int, default=128)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pagbench.manifold import orthonormalize
    from pagbench_plugins.learned.geometry import decoder_tangent_basis, naive_decoder_jacobian, naive_per_image_decoder_jacobian
    from pagbench_plugins.learned.networks import Autoencoder

    torch.manual_seed(0)
    decoder = Autoencoder((3, 32, 32), latent_dim=args.latent, width=args.width).eval().requires_grad_(False)
    latents = torch.randn(args.batch, args.latent)

    def forward_mode():
        return decoder_tangent_basis(decoder.decode, latents, chunk=args.batch)

    def naive_per_image():
        return orthonormalize(naive_per_image_decoder_jacobian(decoder.decode, latents).transpose(1, 2))

    def naive_batched():
        return orthonormalize(naive_decoder_jacobian(decoder.decode, latents).transpose(1, 2))

    forward_mode()  # first call pays one-off functorch set-up
    times = {"forward": [], "per_image": [], "batched": []}
    for _ in range(args.repeats):  # interleaved, so all see the same machine load
        for name, function in (("forward", forward_mode), ("per_image", naive_per_image), ("batched", naive_batched)):
            start = time.perf_counter()
            result = function()
            times[name].append(time.perf_counter() - start)
            if name == "forward":
                fast = result
            else:
                agreement = ((fast.double() @ result.double().transpose(1, 2)) ** 2).sum((1, 2)).min().item() / args.latent
                assert agreement > 1 - 1e-4, agreement
    median = {name: statistics.median(values) for name, values in times.items()}
    pixels = 3 * 32 * 32
    print(f"decoder 3x32x32 from latent {args.latent}, width {args.width}, batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.repeats}; all three give the same span (mean cos^2 of principal angles > 0.9999)")
    print(f"forward mode (jvp+vmap, {args.latent} JVPs per image):              {median['forward']:.3f} s")
    print(f"naive, per image ({args.batch}x{pixels} backward passes on one image):  {median['per_image']:.3f} s"
          f"   speed-up {median['per_image'] / median['forward']:.1f}x")
    print(f"naive, batched ({pixels} backward passes on the whole batch):        {median['batched']:.3f} s"
          f"   speed-up {median['batched'] / median['forward']:.1f}x")


if __name__ == "__main__":
    main()
