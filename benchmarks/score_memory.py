"""Peak memory of scoring one batch of ImageNet-64 images (3×64×64) with a network score
provider, measured as the rise of the process's peak resident set size (CPU) or of
torch.cuda.max_memory_allocated (GPU) over the state with the model and the batch loaded.

By default it uses pagbench's fitted-denoiser architecture (width 32, untrained weights: memory
does not depend on the weights) through :class:`pagbench.evaluation.scores.NetworkScoreProvider`, which
evaluates without autograd in chunks of ``chunk_size`` images.

    python benchmarks/score_memory.py [--batch 64] [--chunk 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import sys

import torch


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pagbench.evaluation.scores import NetworkScoreProvider
    from pagbench_plugins.learned.networks import Denoiser

    model = Denoiser(3, 1000, width=args.width).to(args.device).eval().requires_grad_(False)

    class Provider(NetworkScoreProvider):
        name = "denoiser-architecture"
        image_shape = (3, 64, 64)

        def network_score(self, images, labels, sigma):
            return model.score(images, sigma, labels)

    provider = Provider()
    provider.chunk_size, provider.device = args.chunk, args.device
    images = torch.rand(args.batch, 3, 64, 64)
    labels = torch.randint(0, 1000, (args.batch,))
    provider.scores(images[:2], labels[:2], 0.05, "conditional")  # warm up allocator and kernels
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = peak_rss_mib()
    scores = provider.scores(images, labels, 0.05, "posterior")  # conditional and unconditional passes
    if args.device.startswith("cuda"):
        rise = torch.cuda.max_memory_allocated() / 2**20 - before
    else:
        rise = peak_rss_mib() - before
    parameters = sum(p.numel() for p in model.parameters())
    print(f"scored {tuple(scores.shape)} posterior scores (2 network passes) on {args.device}, chunk {args.chunk}, "
          f"denoiser width {args.width} ({parameters / 1e6:.2f} M parameters)")
    print(f"peak memory rise over model + batch: {rise:.0f} MiB (process peak {peak_rss_mib():.0f} MiB)", file=sys.stdout)


if __name__ == "__main__":
    main()
