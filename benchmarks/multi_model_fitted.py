"""Several models in one ``pagbench.evaluate`` call vs one call per model, with the fitted
``denoiser`` score and manifold providers (``pagbench fit-score --dataset synthetic``), whose
geometry (network passes and Jacobian subspace iterations) is what a real dataset costs.

``benchmarks/multi_model_evaluation.py`` measures the same on synthetic's analytic geometry,
which is nearly free, so there a later model costs almost what the first does. Separate calls
each start from a fresh cache directory (the fitted denoiser passed by path). Timed in one
process, alternating the two ways, median of ``--repeats``.

    pagbench fit-score --dataset synthetic --steps 300     # once, ~30 s on 2 cores
    python benchmarks/multi_model_fitted.py [--models 3] [--num-images 200] [--width 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--width", type=int, default=16, help="ResNet18 width of the models")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--denoiser", default=None, help="fitted denoiser directory (default: the newest for synthetic in the model store)")
    args = parser.parse_args()
    os.environ.setdefault("PAGBENCH_OFFLINE", "1")

    import torch

    import pagbench
    from pagbench.models.store import store_dir
    from pagbench_plugins.zoo.resnet import ResNet18

    denoiser = args.denoiser
    if denoiser is None:
        fitted = sorted(store_dir().glob("denoiser-synthetic-*"), key=lambda path: path.stat().st_mtime)
        if not fitted:
            raise SystemExit("no fitted denoiser for synthetic: run pagbench fit-score --dataset synthetic --steps 300")
        denoiser = str(fitted[-1])
    networks = []
    for seed in range(args.models):
        torch.manual_seed(seed)
        networks.append(ResNet18(10, width=args.width))
    options = dict(num_images=args.num_images, batch_size=args.batch_size, lpips_random_backbone=True, score_provider="denoiser",
                   manifold_provider="denoiser", provider_options={"denoiser": denoiser})

    def fresh_cache():
        os.environ["PAGBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="pagbench-bench-")

    def joint():
        fresh_cache()
        started = time.perf_counter()
        results = pagbench.evaluate({f"net{i}": net for i, net in enumerate(networks)}, **options)
        return time.perf_counter() - started, [r["timing"]["total_seconds"] for r in results.values()]

    def separate():
        total = 0.0
        for i, net in enumerate(networks):
            fresh_cache()
            started = time.perf_counter()
            pagbench.evaluate(net, name=f"net{i}", **options)
            total += time.perf_counter() - started
        return total

    joint()  # warm-up
    joint_totals, separate_totals, later_ratios = [], [], []
    for _ in range(args.repeats):
        total, per_model = joint()
        joint_totals.append(total)
        later_ratios.append([seconds / per_model[0] for seconds in per_model[1:]])
        separate_totals.append(separate())
    ratios = [statistics.median(column) for column in zip(*later_ratios)]
    print(f"{args.models} ResNet18 (width {args.width}) models, {args.num_images} synthetic images, all metrics, "
          f"fitted denoiser scores and tangent spaces ({Path(denoiser).name})")
    print(f"joint call: later model / first model = {', '.join(f'{r:.2f}' for r in ratios)} (target <= 0.6)")
    print(f"joint total / separate total = {statistics.median(joint_totals) / statistics.median(separate_totals):.2f} "
          f"(joint {statistics.median(joint_totals):.2f} s, separate {statistics.median(separate_totals):.2f} s)")


if __name__ == "__main__":
    main()
