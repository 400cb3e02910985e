"""What pinning torch's CPU kernels at AVX2 (pagbench/numerics.py) costs and buys: training steps
of a synthetic ResNet18 recipe (width 8, batch 128, one thread, the recipe's own optimiser and loss)
in fresh processes with the pins (``import pagbench``'s default) and without them
(``PAGBENCH_CPU_NUMERICS=native``), interleaved, median seconds per step of ``--repeats``; and the
weights digest each gives after ``--steps`` steps. ``--qemu-cpu Haswell`` also runs both under
``qemu-x86_64 -cpu Haswell`` (Debian's qemu-user: an emulated CPU without AVX-512, ~500× slower,
so keep ``--steps`` small there), which shows whether another machine's weights match ours.

    python benchmarks/cpu_numerics.py [--regime standard] [--strength 0] [--steps 10] [--repeats 5] [--qemu-cpu Haswell]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

PINS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def child(regime: str, strength: float, steps: int) -> None:
    """Train ``steps`` steps and print {"digest", "seconds_per_step", "numerics"} as JSON."""
    import hashlib
    import time

    import pagbench  # noqa: F401  (first: pins the kernels unless PAGBENCH_CPU_NUMERICS=native)
    import torch

    from pagbench.extensions.registry import trainers
    from pagbench.plugin import cpu_numerics
    from pagbench_plugins.synthetic.generator import SyntheticDistribution
    from pagbench_plugins.zoo.build import architecture
    from pagbench_plugins.zoo.recipes import recipe_for
    from pagbench_plugins.zoo.training import autocast_dtype, optimizer_for, training_step

    torch.set_num_threads(1)
    recipe = recipe_for("synthetic", regime, strength)
    loss_fn = trainers().get(recipe.regime).loss
    images, labels = SyntheticDistribution().sample(recipe.batch_size * steps, seed=0)

    class Shape:  # what architecture() reads from a dataset
        name, num_classes, image_shape = "synthetic", 10, tuple(images.shape[1:])

    torch.manual_seed(recipe.seed)
    model = architecture(recipe, Shape())
    optimizer, scaler = optimizer_for(recipe, model, torch.device("cpu"))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        batch = slice(step * recipe.batch_size, (step + 1) * recipe.batch_size)
        training_step(model, optimizer, scaler, loss_fn, images[batch], labels[batch], recipe, "cpu", autocast_dtype(recipe))
    seconds = (time.perf_counter() - started) / steps
    digest = hashlib.sha256(b"".join(value.detach().contiguous().numpy().tobytes() for value in model.state_dict().values()))
    print(json.dumps({"digest": digest.hexdigest(), "seconds_per_step": seconds, "numerics": cpu_numerics()}))


def run(args, native: bool, steps: int, qemu: str | None = None) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    env["PAGBENCH_CPU_NUMERICS"] = "native" if native else "pinned"
    command = [sys.executable, __file__, "--child", "--regime", args.regime, "--strength", str(args.strength), "--steps", str(steps)]
    if qemu:
        command = ["qemu-x86_64", "-cpu", qemu, *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regime", default="standard")
    parser.add_argument("--strength", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--qemu-cpu", default=None, help="also run under qemu-x86_64 -cpu NAME (e.g. Haswell)")
    parser.add_argument("--qemu-steps", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.regime, args.strength, args.steps)
        return

    runs = {"native": [], "pinned": []}
    for repeat in range(args.repeats):  # interleaved, the first kind alternating
        for kind in (("native", "pinned") if repeat % 2 == 0 else ("pinned", "native")):
            runs[kind].append(run(args, kind == "native", args.steps))
    for kind, done in runs.items():
        digests = {item["digest"][:12] for item in done}
        numerics = done[0]["numerics"]
        print(f"{kind}: ATen {numerics['capability']}, pinned={numerics['pinned']}; median "
              f"{statistics.median(item['seconds_per_step'] for item in done) * 1e3:.0f} ms/step "
              f"(all {[round(item['seconds_per_step'] * 1e3) for item in done]}); digest(s) after {args.steps} steps {sorted(digests)}")
    native = statistics.median(item["seconds_per_step"] for item in runs["native"])
    pinned = statistics.median(item["seconds_per_step"] for item in runs["pinned"])
    print(f"pinned / native time per step: {pinned / native:.2f}  ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    if args.qemu_cpu:
        if not shutil.which("qemu-x86_64"):
            print("qemu-x86_64 not found (apt-get install qemu-user): no emulated run")
            return
        here = {kind: run(args, kind == "native", args.qemu_steps)["digest"][:12] for kind in ("native", "pinned")}
        there = {kind: run(args, kind == "native", args.qemu_steps, args.qemu_cpu)["digest"][:12] for kind in ("native", "pinned")}
        print(f"after {args.qemu_steps} steps: this CPU native {here['native']}, pinned {here['pinned']}; "
              f"qemu -cpu {args.qemu_cpu} native {there['native']}, pinned {there['pinned']}; "
              f"pinned weights equal across the two CPUs: {here['pinned'] == there['pinned']}")


if __name__ == "__main__":
    main()
