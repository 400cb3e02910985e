"""Several models in one ``pagbench.evaluate`` call vs one call per model.

One call shares the dataset, the providers and the geometry (scores and tangent bases are
computed for the first model and read back for the others); separate calls each start from a
fresh cache directory, as separate runs on a clean machine would. Timed in one process,
alternating the two ways, median of ``--repeats``; the ratios are what matter.

    python benchmarks/multi_model_evaluation.py [--models 3] [--num-images 300] [--width 16]

Reports: (a) in the joint call, each later model's wall time ÷ the first model's (target ≤ 0.6);
(b) the joint call's total ÷ the separate calls' total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--num-images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--width", type=int, default=16, help="ResNet18 width of the models")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PAGBENCH_OFFLINE", "1")

    import torch

    import pagbench
    from pagbench_plugins.zoo.resnet import ResNet18

    networks = []
    for seed in range(args.models):
        torch.manual_seed(seed)
        networks.append(ResNet18(10, width=args.width))
    # every metric the embedded dataset offers; LPIPS on a random backbone when the real one is absent
    options = dict(num_images=args.num_images, batch_size=args.batch_size, lpips_random_backbone=True)

    def joint():
        os.environ["PAGBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="pagbench-bench-")
        started = time.perf_counter()
        results = pagbench.evaluate({f"net{i}": net for i, net in enumerate(networks)}, **options)
        total = time.perf_counter() - started
        per_model = [r["timing"]["total_seconds"] for r in results.values()]
        return total, per_model

    def separate():
        total = 0.0
        for i, net in enumerate(networks):
            os.environ["PAGBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="pagbench-bench-")
            started = time.perf_counter()
            pagbench.evaluate(net, name=f"net{i}", **options)
            total += time.perf_counter() - started
        return total

    joint()  # warm-up: imports, the LPIPS network, the dataset's first generation
    joint_totals, separate_totals, later_ratios = [], [], []
    for _ in range(args.repeats):
        total, per_model = joint()
        joint_totals.append(total)
        later_ratios.append([seconds / per_model[0] for seconds in per_model[1:]])
        separate_totals.append(separate())
    ratios = [statistics.median(column) for column in zip(*later_ratios)]
    print(f"{args.models} ResNet18 (width {args.width}) models, {args.num_images} synthetic images, all metrics")
    print(f"joint call: later model / first model = {', '.join(f'{r:.2f}' for r in ratios)} (target <= 0.6)")
    print(
        f"joint total / separate total = {statistics.median(joint_totals) / statistics.median(separate_totals):.2f} "
        f"(joint {statistics.median(joint_totals):.2f} s, separate {statistics.median(separate_totals):.2f} s)"
    )


if __name__ == "__main__":
    main()
