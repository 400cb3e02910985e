"""The training switches of issue 13 on a CPU, as ratios in one run.

(1) Data path per epoch (random crop with padding 4 + horizontal flip, batch 128, a CIFAR-size
    uint8 split): the loader before issue 13 (``split.batch`` + one crop and flip per example in
    a Python loop) vs host batches with the batched crop + flip vs the device-resident split.
(2) A training epoch of ResNet18 with the old loader vs the device-resident path (same model,
    same steps), so the data path's share of an epoch shows.
(3) Results of each switch against the seed-to-seed spread: per-epoch loss and test accuracy
    of short ``synthetic`` trainings (crop + flip on) for seeds 0..S-1 with the defaults, and
    seed 0 with each switch; bit-identity is checked where it is claimed (device data).

    python benchmarks/training_data_path.py [--images 10000] [--repeats 5] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def old_augment(images, generator):
    """The per-example loop the batched augmentation replaced (kept here to time it)."""
    import torch
    import torch.nn.functional as functional

    batch, _, height, width = images.shape
    padded = functional.pad(images, (4, 4, 4, 4), mode="reflect")
    rows = torch.randint(0, 9, (batch,), generator=generator)
    cols = torch.randint(0, 9, (batch,), generator=generator)
    crops = torch.stack([padded[i, :, rows[i] : rows[i] + height, cols[i] : cols[i] + width] for i in range(batch)])
    flips = torch.rand(batch, generator=generator) < 0.5
    crops[flips] = crops[flips].flip(-1)
    return crops


def data_path(args):
    import torch

    from pagbench_plugins.datasets.splits import Uint8Split
    from pagbench_plugins.zoo.training import TrainingRecipe, augment, resident_split

    generator = torch.Generator().manual_seed(0)
    split = Uint8Split(torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
                       torch.randint(0, 10, (args.images,), generator=generator))
    recipe = TrainingRecipe(dataset="cifar10")
    device = torch.device("cpu")
    resident = resident_split(split, device)

    def epoch(kind):
        order = torch.randperm(len(split), generator=generator)
        started = time.perf_counter()
        for start in range(0, len(split), 128):
            if kind == "old loader":
                old_augment(split.batch(order[start : start + 128].tolist()).images, generator)
            elif kind == "host, batched crop+flip":
                augment(split.batch(order[start : start + 128].tolist()).images, recipe, generator)
            else:
                augment(resident.batch(order[start : start + 128])[0], recipe, generator)
        return time.perf_counter() - started

    kinds = ("old loader", "host, batched crop+flip", "device-resident")
    times = {kind: [] for kind in kinds}
    for kind in kinds:
        epoch(kind)
    for _ in range(args.repeats):
        for kind in kinds:
            times[kind].append(epoch(kind))
    base = statistics.median(times["old loader"])
    print(f"(1) data path per epoch, {args.images} uint8 3x32x32 images, batch 128, crop (pad 4) + flip, median of {args.repeats}")
    for kind in kinds:
        median = statistics.median(times[kind])
        print(f"    {kind:<26} {median:7.3f} s   old / this = {base / median:5.2f}")


def training_epoch(args):
    import torch

    from pagbench.evaluation.data import TensorSplit
    from pagbench_plugins.regimes import standard_loss
    from pagbench_plugins.zoo.resnet import ResNet18
    from pagbench_plugins.zoo.training import TrainingRecipe, augment, resident_split

    generator = torch.Generator().manual_seed(0)
    count = args.epoch_images
    split = TensorSplit(torch.rand(count, 3, 32, 32, generator=generator), torch.randint(0, 10, (count,), generator=generator))
    recipe = TrainingRecipe(dataset="cifar10")
    resident = resident_split(split, torch.device("cpu"))
    torch.manual_seed(0)
    model = ResNet18(10, width=args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def epoch(kind):
        order = torch.randperm(count, generator=generator)
        started = time.perf_counter()
        model.train()
        for start in range(0, count, 128):
            if kind == "old loader":
                batch = split.batch(order[start : start + 128].tolist())
                images, labels = old_augment(batch.images, generator), batch.labels
            else:
                images, labels = resident.batch(order[start : start + 128])
                images = augment(images, recipe, generator)
            loss = standard_loss(model, images, labels, 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    kinds = ("old loader", "device-resident")
    times = {kind: [] for kind in kinds}
    epoch("old loader")
    for repeat in range(args.repeats):  # alternating which goes first
        for kind in (kinds if repeat % 2 == 0 else kinds[::-1]):
            times[kind].append(epoch(kind))
    old, new = (statistics.median(times[kind]) for kind in kinds)
    print(f"(2) training epoch, ResNet18 width {args.width}, {count} images 3x32x32, batch 128, standard loss")
    print(f"    old loader {old:.2f} s, device-resident {new:.2f} s: old / new = {old / new:.3f} (median of {args.repeats})")


def spread(args):
    import torch

    from pagbench_plugins.regimes import standard_loss
    from pagbench_plugins.synthetic.dataset import build_dataset
    from pagbench_plugins.zoo.build import architecture
    from pagbench_plugins.zoo.training import TrainingOptions, TrainingRecipe, train

    data = build_dataset(train_size=args.train_size, test_size=1000)
    base = dict(dataset="synthetic", width=8, epochs=args.epochs, lr=2e-3, batch_size=128, lr_milestones=(), augment="crop-flip",
                optimizer="adam", schedule="onecycle", weight_decay=0.0)

    def run(seed=0, amp="off", **switches):
        os.environ["PAGBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="pagbench-bench-")
        recipe = TrainingRecipe(seed=seed, amp=amp, **base)
        model, record = train(recipe, lambda: architecture(recipe, data), data, standard_loss, progress=False,
                              options=TrainingOptions(**switches))
        return record, {key: value.clone() for key, value in model.state_dict().items()}

    seeds = [run(seed=seed) for seed in range(args.seeds)]
    accuracies = [record["test_accuracy"] for record, _ in seeds]
    losses = [record["history"][-1]["loss"] for record, _ in seeds]
    low, high = min(accuracies), max(accuracies)
    print(f"(3) synthetic, ResNet18 width 8, {args.train_size} training images, {args.epochs} epochs, crop + flip; "
          f"seeds 0..{args.seeds - 1}: test accuracy {', '.join(f'{a:.4f}' for a in accuracies)} (spread {low:.4f}-{high:.4f}), "
          f"last-epoch loss {', '.join(f'{l:.4f}' for l in losses)}")
    reference_record, reference_state = seeds[0]
    for label, kwargs in (("--no-device-data (host batches)", dict(device_data=False)), ("--channels-last", dict(channels_last=True)),
                          ("--amp bf16", dict(amp="bf16"))):
        record, state = run(**kwargs)
        identical = all(torch.equal(state[key], reference_state[key]) for key in state)
        accuracy, loss = record["test_accuracy"], record["history"][-1]["loss"]
        where = "bit-identical to the default" if identical else (
            "within the seed spread" if low - 1e-9 <= accuracy <= high + 1e-9 else "OUTSIDE the seed spread")
        per_epoch = max(abs(a["loss"] - b["loss"]) for a, b in zip(record["history"], reference_record["history"]))
        print(f"    seed 0 {label:<32} test accuracy {accuracy:.4f}, last-epoch loss {loss:.4f}, "
              f"max per-epoch loss change vs default {per_epoch:.2e}: {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epoch-images", type=int, default=2560)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PAGBENCH_OFFLINE", "1")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    data_path(args)
    training_epoch(args)
    spread(args)


if __name__ == "__main__":
    main()
