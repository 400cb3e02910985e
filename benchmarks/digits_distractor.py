"""The paper's distractor finding, offline: signal/distractor ratio of ResNet18s on
`digits-distractor`, standard against noise-trained, over a grid of noise levels.

    pagbench train --dataset digits-distractor --regime standard --strength 0
    pagbench train --dataset digits-distractor --regime noise --strength 0.5
    pagbench train --dataset digits-distractor --regime noise --strength 1
    pagbench train --dataset digits-distractor --regime pgd --strength 1      # 3 steps of 2ε/3, ~16 min
    python benchmarks/digits_distractor.py --output benchmarks/figures/digits_distractor.png

(zoo models are also trained on first use). For each model and noise level σ it reports the mean
softmax-L1 change under Gaussian noise of std σ on the signal half and on the distractor half of
all 397 test images, and their ratio; the plot shows the ratio (left) and both sensitivities
(right).
"""

from __future__ import annotations

import argparse

MODELS = (
    "resnet18-digits-distractor-standard-0",
    "resnet18-digits-distractor-noise-0.5",
    "resnet18-digits-distractor-noise-1",
    "resnet18-digits-distractor-pgd-1",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
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
    from pagbench.cli import parse_floats

    torch.set_num_threads(args.threads)
    levels = parse_floats(args.noise_levels, "--noise-levels")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    print(f"noise levels: {', '.join(f'{v:.3g}' for v in levels)}")
    for name in args.models.split(","):
        result = pagbench.evaluate(name, dataset="digits-distractor", num_images=args.num_images, noise_levels=levels,
                                   metrics=("accuracy", "signal_distractor_ratio"), progress=False)
        signal = result["curves"]["signal_sensitivity"]["mean"]
        distractor = result["curves"]["distractor_sensitivity"]["mean"]
        ratios = [s / d if d > 0 else float("nan") for s, d in zip(signal, distractor)]
        label = name.replace("resnet18-digits-distractor-", "")
        print(f"{label:12s} accuracy {result['metrics']['accuracy']['value']:.3f}  ratio " + " ".join(f"{r:6.2f}" for r in ratios))
        left.plot(levels, ratios, marker="o", label=label)
        line = right.plot(levels, signal, marker="o", label=f"{label}: signal")[0]
        right.plot(levels, distractor, marker="x", linestyle="--", color=line.get_color(), label=f"{label}: distractor")
    left.axhline(1.0, color="grey", linewidth=0.8)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("noise std σ on one half (pixel units)")
    left.set_yscale("log")
    left.set_ylabel("signal / distractor sensitivity")
    right.set_ylabel("mean ‖Δ softmax‖₁")
    left.legend()
    right.legend(fontsize=7)
    figure.suptitle(f"digits-distractor, ResNet18 width 8, {args.num_images} test images")
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
