"""The prepared GPU check (issue 13): CPU vs CUDA agreement, training and evaluation throughput,
and the projected GPU-hours of the paper's CIFAR-10 sweep. Run by ``benchmarks/gpu_check.sh``.

    python benchmarks/gpu_check.py            # on a GPU machine: < 5 min on one GPU
    python benchmarks/gpu_check.py --quick    # tiny sizes (CI; also what runs without CUDA)

Without CUDA (or with ``--cpu-only``) it says so, runs the CPU side of every part with tiny
sizes and prints no GPU figure. Sections:

(a) every metric of ``pagbench.evaluate`` on the embedded dataset, on CPU and on CUDA, for the
    Bayes model and a tiny zoo ResNet18 trained here; tolerance |cpu − cuda| ≤ 5e-3 for means of
    continuous per-image values, ≤ 2/n for accuracy and fractions (one image's argmax or
    threshold may flip under different kernels);
(b) training throughput (images/s) of the zoo's own training step (``training_step`` of
    ``plugins/zoo/training.py``, the cifar10 recipes' optimiser and the registered regimes' losses)
    for standard, noise, smooth, gnorm and pgd-10, ResNet18 width 64, batch 128, 3×32×32 random
    data, each switch on and off (fp16 and compile are
    excluded for gnorm, with the reason); the data path (host batches through pinned memory vs
    device-resident crop + flip) per step on a CIFAR-size uint8 split;
(c) evaluation throughput (images/s) of all metrics on 3×32×32 inputs, with a CIFAR-size score
    network (the fitted-denoiser U-Net of ``plugins/learned/networks.py``, width 64, two fitting
    steps: random-like weights) for scores and tangent spaces;
(d) projected GPU-hours of the paper's CIFAR-10 sweep from (b): 4 regimes (noise, gnorm,
    smooth, pgd-10) × 30 strengths × 200 epochs × 50,000 images, one seed, training only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REGIMES = ("standard", "noise", "smooth", "gnorm", "pgd-10")
PAPER = dict(regimes=("noise", "gnorm", "smooth", "pgd-10"), strengths=30, epochs=200, images=50_000)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (what runs without CUDA)")
    parser.add_argument("--cpu-only", action="store_true", help="ignore CUDA even when present")
    parser.add_argument("--budget-s", type=float, default=270.0, help="stop starting new measurements after this many seconds")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    return parser.parse_args(argv)


class Clock:
    def __init__(self, budget):
        self.started, self.budget = time.perf_counter(), budget

    def left(self) -> bool:
        return time.perf_counter() - self.started < self.budget


def sizes(quick: bool) -> dict:
    if quick:
        return dict(width=8, batch=16, side=16, warmup=1, steps=2, eval_images=16, agree_images=24, zoo_train=300,
                    denoiser_width=8, split=512, k=4)
    return dict(width=64, batch=128, side=32, warmup=5, steps=20, eval_images=256, agree_images=200, zoo_train=4000,
                denoiser_width=64, split=50_000, k=32)


# ---------------------------------------------------------------------------------------- (a)
def agreement(devices, size):
    import torch

    import pagbench
    from pagbench_plugins.regimes import standard_loss
    from pagbench_plugins.synthetic.dataset import build_dataset
    from pagbench_plugins.zoo.build import architecture
    from pagbench_plugins.zoo.training import TrainingRecipe, train

    print("\n(a) CPU vs CUDA agreement of every metric on the embedded dataset")
    data = build_dataset(train_size=size["zoo_train"], test_size=200)
    recipe = TrainingRecipe(dataset="synthetic", width=4, epochs=1, lr=0.05, batch_size=128, lr_milestones=(), augment="none")
    zoo, _ = train(recipe, lambda: architecture(recipe, data), data, standard_loss, progress=False)
    n = size["agree_images"]
    models = {"bayes": lambda: "bayes", "zoo resnet18 w4 (trained here)": lambda: zoo}
    for label, make in models.items():
        results = {}
        for device in devices:
            model = make()
            kwargs = dict(name="zoo-check") if not isinstance(model, str) else {}
            results[device] = pagbench.evaluate(model, num_images=n, device=device, lpips_random_backbone=True, **kwargs)["metrics"]
        print(f"  {label}, {n} images")
        if len(devices) == 1:
            for name, metric in sorted(results["cpu"].items()):
                print(f"    {name:<36} cpu {_fmt(metric['value'])}   (CUDA absent: no comparison)")
            continue
        for name in sorted(results["cpu"]):
            cpu, cuda = results["cpu"][name]["value"], results["cuda"].get(name, {}).get("value")
            tolerance = 2.0 / n if ("fraction" in name or name == "accuracy") else 5e-3
            if cpu is None or cuda is None:
                verdict, diff = ("ok (both n/a)" if cpu is cuda else "MISMATCH (n/a on one side)"), float("nan")
            else:
                diff = abs(cpu - cuda)
                verdict = "ok" if diff <= tolerance else "MISMATCH"
            print(f"    {name:<36} cpu {_fmt(cpu)}  cuda {_fmt(cuda)}  |diff| {diff:.2e}  tol {tolerance:.1e}  {verdict}")
    del torch


def _fmt(value):
    return "   n/a  " if value is None else f"{value:8.4f}"


# ---------------------------------------------------------------------------------------- (b)
EAGER_SETS = [("fp32", {}), ("channels_last", {"channels_last": True}), ("bf16", {"amp": "bf16"}), ("fp16", {"amp": "fp16"}),
              ("channels_last + bf16", {"channels_last": True, "amp": "bf16"})]
#: measured last (after (c) and (d)): compiling takes tens of seconds per graph
COMPILE_SETS = [("compile", {"compile": True}), ("compile + channels_last + bf16", {"compile": True, "channels_last": True, "amp": "bf16"})]


def excluded(regime, switches):
    if regime == "gnorm" and switches.get("amp") == "fp16":
        return "excluded: gnorm's input-gradient penalty is not loss-scaled and underflows in fp16"
    if regime == "gnorm" and switches.get("compile"):
        return "excluded: compiled graphs do not support gnorm's double backward"
    return None


#: the regime strengths timed in (b): mid-grid values of the paper's sweeps (pgd-10 is pgd with cifar10's 10 steps of 2ε/10)
STRENGTHS = {"standard": 0.0, "noise": 0.1, "smooth": 1.0, "gnorm": 0.1, "pgd-10": 0.5}


def step_throughput(device, regime, switches, size):
    """images/s of the zoo's own training step (``pagbench_plugins.zoo.training.training_step``,
    what ``pagbench train`` and every sweep job run) on the cifar10 recipe of ``regime``, with its
    optimiser, GradScaler, autocast dtype and the regime's registered loss; the network is the
    zoo's ResNet18 for cifar10 (normalisation inside) at ``size["width"]``."""
    import torch
    from types import SimpleNamespace

    from pagbench.extensions.registry import trainers
    from pagbench_plugins.zoo.build import architecture
    from pagbench_plugins.zoo.recipes import recipe_for
    from pagbench_plugins.zoo.training import autocast_dtype, optimizer_for, training_step

    name = "pgd" if regime == "pgd-10" else regime
    recipe = recipe_for("cifar10", name, STRENGTHS[regime], amp=switches.get("amp")).with_overrides(width=size["width"],
                                                                                                   batch_size=size["batch"])
    cifar = SimpleNamespace(name="cifar10", num_classes=10, image_shape=(3, size["side"], size["side"]))
    torch.manual_seed(0)
    memory_format = torch.channels_last if switches.get("channels_last") else torch.contiguous_format
    model = architecture(recipe, cifar).to(device, memory_format=memory_format)
    network = torch.compile(model) if switches.get("compile") else model
    optimizer, scaler = optimizer_for(recipe, model, device)
    amp = autocast_dtype(recipe)
    loss_fn = trainers().get(recipe.regime).loss
    images = torch.rand(size["batch"], 3, size["side"], size["side"], device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (size["batch"],), device=device)

    def step():
        network.train()
        training_step(network, optimizer, scaler, loss_fn, images, labels, recipe, device.type, amp)

    for _ in range(size["warmup"]):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(size["steps"]):
        step()
    _sync(device)
    return size["steps"] * size["batch"] / (time.perf_counter() - started)


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_path(device, size):
    """Per-step time of the data path: host batches (+ pinned non-blocking copy) vs resident."""
    import torch

    from pagbench_plugins.datasets.splits import Uint8Split
    from pagbench_plugins.zoo.training import TrainingRecipe, _to_device, augment, resident_split

    generator = torch.Generator().manual_seed(0)
    split = Uint8Split(torch.randint(0, 256, (size["split"], 3, 32, 32), dtype=torch.uint8, generator=generator),
                       torch.randint(0, 10, (size["split"],), generator=generator))
    recipe = TrainingRecipe(dataset="cifar10")
    resident = resident_split(split, device)
    order = torch.randperm(len(split), generator=generator)
    steps = max(4, size["steps"])

    def host(start):
        batch = split.batch(order[start : start + 128].tolist())
        return augment(_to_device(batch.images, device), recipe, generator)

    device_order = order.to(device)

    def on_device(start):
        images, _ = resident.batch(device_order[start : start + 128])
        return augment(images, recipe, generator)

    timings = {}
    for name, fetch in (("host (pinned, non-blocking)", host), ("device-resident", on_device)):
        fetch(0)
        _sync(device)
        started = time.perf_counter()
        for index in range(steps):
            fetch((index * 128) % (len(split) - 128))
        _sync(device)
        timings[name] = (time.perf_counter() - started) / steps
    return timings


def training(device, size, clock, sets, table, data=True):
    for label, switches in sets:
        for regime in REGIMES:
            reason = excluded(regime, switches)
            if reason:
                print(f"  {regime:<9} {label:<32} {reason}")
                continue
            if not clock.left():
                print(f"  {regime:<9} {label:<32} skipped: time budget spent")
                continue
            try:
                rate = step_throughput(device, regime, switches, size)
            except Exception as error:  # a switch that does not work here is reported, not fatal
                print(f"  {regime:<9} {label:<32} failed: {type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}")
                continue
            table[(regime, label)] = rate
            base = table.get((regime, "fp32"))
            ratio = f"  ({rate / base:.2f}x fp32)" if base and label != "fp32" else ""
            print(f"  {regime:<9} {label:<32} {rate:10.1f}{ratio}")
    if not data:
        return table
    timings = data_path(device, size)
    host, resident = timings["host (pinned, non-blocking)"], timings["device-resident"]
    print(f"  data path per step of 128 (uint8 3x32x32 split of {size['split']}): host {host * 1e3:.2f} ms, "
          f"device-resident {resident * 1e3:.2f} ms ({host / resident:.1f}x)")
    return table


# ---------------------------------------------------------------------------------------- (c)
def evaluation(device, size, clock):
    import torch

    import pagbench
    from pagbench import DatasetEntry, hookimpl
    from pagbench.evaluation.data import Dataset, TensorSplit
    from pagbench.extensions.manager import get_plugin_manager
    from pagbench_plugins.learned.fit import fit_denoiser
    from pagbench_plugins.learned.store import DenoiserRecipe
    from pagbench_plugins.zoo.resnet import ResNet18

    print(f"\n(c) evaluation throughput, all metrics, 3x32x32, {device}")
    if not clock.left():
        print("  skipped: time budget spent")
        return
    generator = torch.Generator().manual_seed(0)

    def build(data_root):
        images = torch.rand(512 + size["eval_images"], 3, 32, 32, generator=generator)
        labels = torch.randint(0, 10, (images.shape[0],), generator=generator)
        return Dataset(name="gpucheck-cifar", num_classes=10, image_shape=(3, 32, 32),
                       splits={"train": TensorSplit(images[:512], labels[:512]), "test": TensorSplit(images[512:], labels[512:])},
                       config={"seed": 0, "images": int(images.shape[0])}, robustness_epsilons=(0.5, 1.0), headline_epsilon=1.0)

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetEntry("gpucheck-cifar", build, "random 3x32x32 images (gpu_check)", num_classes=10, image_shape=(3, 32, 32),
                                  default_score_provider="denoiser", default_manifold_provider="denoiser"))

    manager = get_plugin_manager()
    name = manager.register(Plugin(), name="gpucheck")
    try:
        from pagbench.extensions.registry import datasets

        dataset = datasets().get("gpucheck-cifar").factory(None)
        fit_denoiser(DenoiserRecipe(dataset="gpucheck-cifar", width=size["denoiser_width"], steps=2, batch_size=16), dataset, progress=False)
        torch.manual_seed(0)
        model = ResNet18(10, width=size["width"])
        options = dict(dataset="gpucheck-cifar", num_images=size["eval_images"], device=str(device), lpips_random_backbone=True,
                       provider_options={"device": str(device), "k": str(size["k"])})
        # warm-up on other images (the train split), so the timed run finds no cached geometry
        pagbench.evaluate(model, name="gpucheck-warmup", **{**options, "split": "train", "num_images": min(16, size["eval_images"])})
        _sync(device)
        started = time.perf_counter()
        result = pagbench.evaluate(model, name="gpucheck", **options)
        _sync(device)
        seconds = time.perf_counter() - started
        available = sorted(key for key, metric in result["metrics"].items() if metric["value"] is not None)
        print(f"  denoiser U-Net width {size['denoiser_width']}, ResNet18 width {size['width']}, {size['eval_images']} images: "
              f"{size['eval_images'] / seconds:.1f} images/s ({seconds:.1f} s); metrics with values: {', '.join(available)}")
        timing = result.get("timing", {})
        print("    " + ", ".join(f"{key} {timing[key]:.2f} s" for key in ("prepare_seconds", "model_seconds", "geometry_seconds", "metrics_seconds") if key in timing))
        per_metric = timing.get("per_metric_seconds") or {}
        for key, value in sorted(per_metric.items()):
            print(f"    {key:<28} {value:8.2f} s")
    finally:
        manager.unregister(name=name)


# ---------------------------------------------------------------------------------------- (d)
def projection(table, device, quick):
    print("\n(d) projected GPU-hours of the paper's CIFAR-10 sweep (training only, one seed)")
    print(f"  assumptions: {len(PAPER['regimes'])} regimes ({', '.join(PAPER['regimes'])}) x {PAPER['strengths']} strengths x "
          f"{PAPER['epochs']} epochs x {PAPER['images']:,} images; epoch time = images / measured images/s of the fastest "
          "measured switch set per regime; evaluation, data loading stalls and the standard model excluded")
    if device.type != "cuda" or quick:
        print("  not a GPU projection: " + ("CUDA absent, " if device.type != "cuda" else "") + "quick sizes; shown to check the formula only")
    total = 0.0
    for regime in PAPER["regimes"]:
        rates = {label: rate for (name, label), rate in table.items() if name == regime}
        if not rates:
            print(f"  {regime:<9} no measurement")
            continue
        label, rate = max(rates.items(), key=lambda item: item[1])
        epoch_seconds = PAPER["images"] / rate
        hours = PAPER["strengths"] * PAPER["epochs"] * epoch_seconds / 3600
        total += hours
        print(f"  {regime:<9} {label:<32} epoch {epoch_seconds:8.1f} s -> {hours:10.1f} device-hours")
    print(f"  total {total:.1f} device-hours (x seeds for several seeds)")


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("PAGBENCH_OFFLINE", "1")
    os.environ.setdefault("PAGBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="pagbench-gpu-check-"))
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_only
    quick = args.quick or not cuda
    size = sizes(quick)
    clock = Clock(args.budget_s)
    device = torch.device("cuda" if cuda else "cpu")
    print(f"pagbench GPU check: torch {torch.__version__}, " + (f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}" if cuda else
          "CUDA absent" + (" (--cpu-only)" if args.cpu_only and torch.cuda.is_available() else "") + ": CPU parts only, tiny sizes, no GPU figures"))
    agreement(["cpu", "cuda"] if cuda else ["cpu"], size)
    print(f"\n(b) training throughput, images/s: ResNet18 width {size['width']}, batch {size['batch']}, "
          f"3x{size['side']}x{size['side']} random data, {device}")
    table = training(device, size, clock, EAGER_SETS, {})
    evaluation(device, size, clock)
    projection(table, device, quick)
    if cuda and not args.no_compile:
        print("\n(b, continued) torch.compile rows (measured last: compiling takes tens of seconds per graph)")
        before = dict(table)
        training(device, size, clock, COMPILE_SETS, table, data=False)
        if table != before:
            projection(table, device, quick)
    elif not cuda:
        print("\n(b, continued) torch.compile rows: not run without CUDA (compiling for the CPU takes minutes)")
    print(f"\ndone in {time.perf_counter() - clock.started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
