"""Cost of a full evaluation relative to its floor, and geometry reuse with warm caches.

floor = one forward + backward pass of the model over the N images (the input gradient, with
        frozen parameters, as evaluation computes it) plus fetching the scores and tangent
        bases from their providers; a conventional forward + backward that also computes
        parameter gradients is reported beside it;
full  = ``pagbench.evaluate`` with every applicable metric (LPIPS on a random AlexNet backbone
        when the real weights are absent: the same compute).

Both are timed in the same process, interleaved, median of ``--repeats``; the ratio is what
matters, not the seconds. Then a second model is evaluated on the same images with a fresh
in-memory cache over the same on-disk cache and the providers' calls are counted (expected 0).

    python benchmarks/evaluation_overhead.py [--num-images 500] [--width 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--width", type=int, default=16, help="ResNet18 width of the model under test")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PAGBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="pagbench-bench-"))

    import torch

    import pagbench
    from pagbench import ModelCard, ModelEntry, hookimpl
    from pagbench.evaluation.cache import GeometryCache
    from pagbench.evaluation.gradients import input_gradients
    from pagbench.models.loading import prepare_for_evaluation
    from pagbench.extensions.manager import get_plugin_manager
    from pagbench.extensions.registry import datasets, manifold_providers, score_providers
    from pagbench_plugins.zoo.resnet import ResNet18

    torch.manual_seed(0)
    dataset = datasets().get("synthetic").factory(None)
    network = prepare_for_evaluation(ResNet18(10, width=args.width), "cpu")

    class Bench:
        @hookimpl
        def register_models(self, register):
            card = ModelCard(architecture=f"resnet18 w{args.width} (untrained)", dataset="synthetic")
            register(ModelEntry("bench-resnet", lambda name, data, device: network, card))

    get_plugin_manager().register(Bench(), name="bench")
    scores = score_providers().get("analytic").factory(dataset, {})
    manifold = manifold_providers().get("analytic").factory(dataset, {})
    split = dataset.split("test")

    trainable = ResNet18(10, width=args.width).eval()
    trainable.load_state_dict(network.state_dict())

    def training_floor() -> float:
        """A conventional forward + backward (parameter gradients too), plus the geometry fetch."""
        started = time.perf_counter()
        for start in range(0, args.num_images, args.batch_size):
            batch = split.batch(list(range(start, min(start + args.batch_size, args.num_images))))
            inputs = batch.images.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(trainable(inputs), batch.labels).backward()
            scores.scores(batch.images, batch.labels, 0.0, "posterior")
            manifold.tangent_basis(batch.images, batch.labels)
        return time.perf_counter() - started

    def floor() -> float:
        started = time.perf_counter()
        for start in range(0, args.num_images, args.batch_size):
            batch = split.batch(list(range(start, min(start + args.batch_size, args.num_images))))
            input_gradients(network, batch.images, batch.labels, "logprob")
            scores.scores(batch.images, batch.labels, 0.0, "posterior")
            manifold.tangent_basis(batch.images, batch.labels)
        return time.perf_counter() - started

    breakdown = {}

    def full(metrics=None) -> float:
        started = time.perf_counter()
        result = pagbench.evaluate("bench-resnet", num_images=args.num_images, batch_size=args.batch_size,
                                   lpips_random_backbone=True, cache=GeometryCache(use_disk=False), metrics=metrics)
        breakdown.update(result["timing"])
        return time.perf_counter() - started

    without_robustness = ("accuracy", "score_cosine", "lpips_alignment", "on_manifold_fraction")

    full()  # warm-up (LPIPS construction, allocator)
    floors, fulls, partials, conventional = [], [], [], []
    for _ in range(args.repeats):
        floors.append(floor())
        conventional.append(training_floor())
        partials.append(full(without_robustness))
        fulls.append(full())
    floor_s, full_s, partial_s = statistics.median(floors), statistics.median(fulls), statistics.median(partials)
    print(f"model: ResNet18 width {args.width}, {args.num_images} images of synthetic, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"floor (gradient + score + tangent fetch): {floor_s:.3f} s")
    print(f"full evaluation, all metrics:              {full_s:.3f} s")
    print(f"ratio full / floor:                        {full_s / floor_s:.2f}  (target <= 2)")
    print(f"ratio without manifold_robustness / floor: {partial_s / floor_s:.2f}")
    conventional_s = statistics.median(conventional)
    print(f"conventional floor (parameter gradients too): {conventional_s:.3f} s; full / that: {full_s / conventional_s:.2f}")
    parts = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in breakdown["per_metric_seconds"].items())
    print(f"last full run: model {breakdown['model_seconds']:.3f} s, geometry {breakdown['geometry_seconds']:.3f} s, metrics: {parts}")

    # Warm caches: count provider calls for a second model on the same images.
    calls = {"score": 0, "tangent": 0}
    original_scores, original_tangent = type(scores).scores, type(manifold).tangent_basis

    def counted_scores(self, *a, **k):
        calls["score"] += 1
        return original_scores(self, *a, **k)

    def counted_tangent(self, *a, **k):
        calls["tangent"] += 1
        return original_tangent(self, *a, **k)

    type(scores).scores, type(manifold).tangent_basis = counted_scores, counted_tangent
    type(scores).disk_cache = type(manifold).disk_cache = True  # exercise the on-disk path too
    try:
        options = dict(num_images=args.num_images, batch_size=args.batch_size, metrics=("score_cosine", "on_manifold_fraction"))
        pagbench.evaluate("bench-resnet", cache=GeometryCache(), **options)
        cold = dict(calls)
        calls.update(score=0, tangent=0)
        pagbench.evaluate("bayes", cache=GeometryCache(), **options)  # new process-level cache: disk only
        print(f"provider calls, first model (cold):  {cold}")
        print(f"provider calls, second model (warm): {calls}")
    finally:
        type(scores).scores, type(manifold).tangent_basis = original_scores, original_tangent
        type(scores).disk_cache = type(manifold).disk_cache = False


if __name__ == "__main__":
    main()
