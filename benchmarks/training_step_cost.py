"""Cost of one training step per regime, relative to a standard step, on the same model and batch.

Targets (issue 3): a ``gnorm`` step ≤ 3× a standard step; a ``pgd`` step with k attack steps
≤ (k + 1.5)× a standard step. Steps are interleaved and the median of ``--repeats`` is taken.

    python benchmarks/training_step_cost.py [--width 8] [--batch-size 128] [--channels-last] [--amp bf16]

``--channels-last`` and ``--amp`` time every regime under that switch of ``pagbench train``
(ratios still against a standard step under the same switch).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    args = parser.parse_args()

    import contextlib

    import torch

    from pagbench_plugins.regimes import gnorm_loss, noise_loss, pgd_loss, smooth_loss, standard_loss
    from pagbench_plugins.synthetic.generator import SyntheticDistribution
    from pagbench_plugins.zoo.resnet import ResNet18

    torch.manual_seed(0)
    images, labels = SyntheticDistribution().sample(args.batch_size, seed=0)
    model = ResNet18(10, width=args.width)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    regimes = {
        "standard": lambda: standard_loss(model, images, labels, 0.0),
        "noise": lambda: noise_loss(model, images, labels, 0.1),
        "smooth": lambda: smooth_loss(model, images, labels, 1.0),
        "gnorm": lambda: gnorm_loss(model, images, labels, 0.1),
        "pgd k=3": lambda: pgd_loss(model, images, labels, 1.0, steps=3, step_factor=2.0),
        "pgd k=10": lambda: pgd_loss(model, images, labels, 1.0, steps=10),
    }

    def step(loss_fn) -> float:
        started = time.perf_counter()
        model.train()
        with torch.autocast("cpu", dtype=amp) if amp else contextlib.nullcontext():
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    for loss_fn in regimes.values():  # warm-up
        step(loss_fn)
    times = {name: [] for name in regimes}
    for _ in range(args.repeats):
        for name, loss_fn in regimes.items():
            times[name].append(step(loss_fn))
    base = statistics.median(times["standard"])
    targets = {"gnorm": 3.0, "pgd k=3": 4.5, "pgd k=10": 11.5}
    print(f"ResNet18 width {args.width}, batch {args.batch_size} of 3x16x16, torch threads {torch.get_num_threads()}, "
          f"channels_last {args.channels_last}, amp {args.amp}")
    print(f"{'regime':<10} {'median s':>9} {'× standard':>11} {'target':>7}")
    for name in regimes:
        median = statistics.median(times[name])
        target = f"≤ {targets[name]:g}" if name in targets else ""
        print(f"{name:<10} {median:9.4f} {median / base:11.2f} {target:>7}")


if __name__ == "__main__":
    main()
