"""The cost of pinning zoo training to one CPU thread: time per training epoch of the synthetic
ResNet18 recipe (``resnet18-synthetic-<regime>-<strength>``: width 8, batch 128, 20,000 images =
157 steps) with the recipe's ``cpu_threads`` = 1 (the default, which makes the weights independent
of ``OMP_NUM_THREADS``) against 2 threads. Steps are timed in blocks of ``--steps``, the two thread
counts interleaved in one process, median of ``--repeats``; the ratio is the figure (an epoch is
157 such steps plus a 500-image accuracy check, which is small).

    python benchmarks/training_threads.py [--regime standard] [--strength 0] [--steps 10] [--repeats 5]

On a machine whose cores are busy with other work the 2-thread time is pessimistic (the second
thread waits for a core): run it on an idle machine for the figure that matters.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regime", default="standard")
    parser.add_argument("--strength", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import os

    import torch

    from pagbench.extensions.registry import trainers
    from pagbench_plugins.synthetic.generator import SyntheticDistribution
    from pagbench_plugins.zoo.build import architecture
    from pagbench_plugins.zoo.recipes import recipe_for
    from pagbench_plugins.zoo.training import pinned_threads

    recipe = recipe_for("synthetic", args.regime, args.strength)
    loss_fn = trainers().get(recipe.regime).loss
    images, labels = SyntheticDistribution().sample(recipe.batch_size * args.steps, seed=0)

    class Shape:  # what architecture() reads from a dataset
        name, num_classes, image_shape = "synthetic", 10, tuple(images.shape[1:])

    torch.manual_seed(0)
    model = architecture(recipe, Shape())
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    model.train()

    def block() -> float:
        started = time.perf_counter()
        for step in range(args.steps):
            batch = slice(step * recipe.batch_size, (step + 1) * recipe.batch_size)
            loss = loss_fn(model, images[batch], labels[batch], recipe.strength, **recipe.regime_options)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / args.steps

    cpu = torch.device("cpu")
    block()  # warm-up
    seconds = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in (1, 2):
            with pinned_threads(cpu, threads):
                seconds[threads].append(block())
    one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
    steps_per_epoch = -(-20_000 // recipe.batch_size)
    print(f"recipe {recipe.identifier}; {os.cpu_count()} CPUs; {args.repeats} × {args.steps} steps per thread count")
    print(f"per step: 1 thread {one * 1e3:.0f} ms, 2 threads {two * 1e3:.0f} ms "
          f"(all: {[round(s * 1e3) for s in seconds[1]]} / {[round(s * 1e3) for s in seconds[2]]} ms)")
    print(f"per epoch ({steps_per_epoch} steps): 1 thread {one * steps_per_epoch:.1f} s, 2 threads {two * steps_per_epoch:.1f} s")
    print(f"pinning to one thread costs {one / two:.2f}x the 2-thread epoch time")


if __name__ == "__main__":
    main()
