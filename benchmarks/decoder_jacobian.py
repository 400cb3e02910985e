"""Tangent bases from a decoder: forward-mode AD (jacfwd + vmap, one JVP per latent dimension)
against the naive Jacobian (one backward pass per output pixel), on the same decoder
(3×32×32 output, latent 128) and the same batch, timed in one run. Target: ≥ 20× on CPU.

The decoder upsamples with ``Upsample2x`` (broadcast + copy), which is fast forwards but whose
backward pass is slower than that of ``nn.Upsample``'s kernel; so each naive baseline is also
timed on the same decoder with ``nn.Upsample`` (the same function and weights) and the speed-up
is reported against the faster of the two.

    python benchmarks/decoder_jacobian.py [--batch 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
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

    from pagbench.evaluation.manifold import orthonormalize
    from pagbench_plugins.learned.geometry import decoder_tangent_basis, naive_decoder_jacobian, naive_per_image_decoder_jacobian
    from pagbench_plugins.learned.networks import Autoencoder, Upsample2x

    torch.manual_seed(0)
    decoder = Autoencoder((3, 32, 32), latent_dim=args.latent, width=args.width).eval().requires_grad_(False)
    kernel = copy.deepcopy(decoder)  # the same decoder with nn.Upsample's kernel, for the baselines
    for index, layer in enumerate(kernel.decoder):
        if isinstance(layer, Upsample2x):
            kernel.decoder[index] = torch.nn.Upsample(scale_factor=2, mode="nearest")
    latents = torch.randn(args.batch, args.latent)
    assert torch.equal(decoder.decode(latents), kernel.decode(latents))

    def forward_mode():
        return decoder_tangent_basis(decoder.decode, latents)  # its default chunking

    def naive(network, per_image):
        jacobian = naive_per_image_decoder_jacobian if per_image else naive_decoder_jacobian
        return lambda: orthonormalize(jacobian(network.decode, latents).transpose(1, 2))

    runs = {"forward": forward_mode, "per_image": naive(decoder, True), "per_image_kernel": naive(kernel, True),
            "batched": naive(decoder, False), "batched_kernel": naive(kernel, False)}
    forward_mode()  # first call pays one-off functorch set-up
    times = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so all see the same machine load
        for name, function in runs.items():
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
          f"median of {args.repeats}; all give the same span (mean cos^2 of principal angles > 0.9999)")
    print(f"forward mode (jvp+vmap, {args.latent} JVPs per image): {median['forward']:.3f} s")
    for name, what in (("per_image", f"naive, per image ({args.batch}x{pixels} backward passes on one image)"),
                       ("batched", f"naive, batched ({pixels} backward passes on the whole batch)")):
        best = min(median[name], median[name + "_kernel"])
        print(f"{what}: {median[name]:.3f} s with Upsample2x, {median[name + '_kernel']:.3f} s with nn.Upsample"
              f"   speed-up vs the faster: {best / median['forward']:.1f}x")


if __name__ == "__main__":
    main()
