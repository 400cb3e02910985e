"""The paper's distractor finding, offline: signal/distractor ratio of ResNet18s on
`digits-distractor` (the paper's construction: the same letter A in every image) and on the
`digits-distractor-varied` ablation (a random letter, size and place per image), standard against
noise-trained and PGD-trained, over a grid of noise levels.

    python benchmarks/digits_distractor.py --output benchmarks/figures/digits_distractor.png

trains the fourteen zoo models on first use (1 thread: standard ~2.5 min, noise ~2 min, PGD with 3
steps of 2ε/3 ~7 min each), or train them first with
``pagbench train --dataset digits-distractor --regime pgd --strength 1`` etc. For each model and
noise level σ it reports the mean softmax-L1 change under Gaussian noise of std σ on the signal
half and on the distractor half of all 397 test images, and their ratio; the figure shows the
ratio (left) and both sensitivities (right), one row per dataset.
"""

from __future__ import annotations

import argparse

DATASETS = ("digits-distractor", "digits-distractor-varied")
MODELS = ("standard-0", "standard-0-s1", "standard-0-s2", "noise-0.5", "noise-0.5-s1", "pgd-1", "pgd-1-s1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS), help="<regime>-<strength>[-s<seed>] of resnet18-<dataset>-…")
    parser.add_argument("--noise-levels", default="0.01:3:9", help="a,b,c or lo:hi:n (log-spaced), pixel units")
    parser.add_argument("--num-images", type=int, default=397)
    parser.add_argument("--output", default="benchmarks/figures/digits_distractor.png")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import pagbench
    from pagbench.console import parse_floats
    from pagbench.files.paths import write_atomic

    torch.set_num_threads(args.threads)
    levels = parse_floats(args.noise_levels, "--noise-levels")
    datasets = args.datasets.split(",")
    figure, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
    print(f"noise levels: {', '.join(f'{v:.3g}' for v in levels)}")
    colours: dict[str, str] = {}  # one colour per regime; seeds other than 0 paler
    for (left, right), dataset in zip(axes, datasets):
        print(dataset)
        for label in args.models.split(","):
            result = pagbench.evaluate(f"resnet18-{dataset}-{label}", dataset=dataset, num_images=args.num_images,
                                       noise_levels=levels, metrics=("accuracy", "signal_distractor_ratio"), progress=False)
            signal = result["curves"]["signal_sensitivity"]["mean"]
            distractor = result["curves"]["distractor_sensitivity"]["mean"]
            ratios = [s / d if d > 0 else float("nan") for s, d in zip(signal, distractor)]
            print(f"  {label:12s} accuracy {result['metrics']['accuracy']['value']:.3f}  ratio "
                  + " ".join(f"{r:6.2f}" for r in ratios))
            regime, seed = label.split("-")[0], (label.split("-s")[1] if "-s" in label else "0")
            style = dict(color=colours.setdefault(regime, f"C{len(colours)}"), alpha=1.0 if seed == "0" else 0.6)
            left.plot(levels, ratios, marker="o", label=label, **style)
            right.plot(levels, signal, marker="o", label=f"{label}: signal", **style)
            right.plot(levels, distractor, marker="x", linestyle="--", label=f"{label}: distractor", **style)
        left.axhline(1.0, color="grey", linewidth=0.8)
        for axis in (left, right):
            axis.set_xscale("log")
            axis.set_xlabel("noise std σ on one half (pixel units)")
        left.set_yscale("log")
        left.set_ylabel("signal / distractor sensitivity")
        left.set_title(dataset)
        right.set_ylabel("mean ‖Δ softmax‖₁")
        right.set_title(f"{dataset}: sensitivities")
        left.legend(fontsize=8)
        right.legend(fontsize=6, ncol=2)
    figure.suptitle(f"ResNet18 width 8, {args.num_images} test images")
    figure.tight_layout()
    write_atomic(args.output, lambda handle: figure.savefig(handle, format="png", dpi=110))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
