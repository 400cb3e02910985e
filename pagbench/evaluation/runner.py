"""The evaluation runner: one pass over the images computes every metric.

Per batch: one forward and one backward pass of the model for the chosen input gradient (in the
``--dtype`` precision), then the chosen attribution (:mod:`pagbench.evaluation.attributions`; the raw
gradient by default, at no extra cost); the score (at the headline σ and at every σ of
``--sigmas``) and the tangent basis come from the :class:`~pagbench.evaluation.cache.GeometryCache` (they do
not depend on the model); then every metric reads the shared :class:`~pagbench.evaluation.metrics.MetricContext`.
Tensors stay on the model's device (the CPU-cached geometry is moved there once per batch; a
tangent basis too large for the free device memory stays on the CPU); per-image values move to the
CPU only for aggregation, once per run.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from pagbench.evaluation.aggregate import summarize
from pagbench.evaluation.attributions import AttributionTarget, build_attribution
from pagbench.evaluation.cache import GeometryCache
from pagbench.errors import DegenerateImagesWarning, MetricUnavailable, PagbenchError
from pagbench.evaluation.gradients import check_logits, input_gradients
from pagbench.evaluation.options import EvaluationOptions
from pagbench.evaluation.scores import PAIRED_SCORE


def _check_options(options: EvaluationOptions) -> None:
    """The checks declared with the options (:meth:`EvaluationOptions.validate`), before any compute."""
    options.validate()


def _provider(kind: str, name: str | None, default: str | None, dataset, options):
    """Instantiate a score or manifold provider, or return (None, reason)."""
    from pagbench.extensions import registry

    chosen = name or default
    if chosen is None:
        return None, None, f"no {kind} provider for dataset {dataset.name!r} (choose one with --{kind}-provider)"
    table = registry.score_providers() if kind == "score" else registry.manifold_providers()
    entry = table.get(chosen)
    try:
        return entry.factory(dataset, dict(options.provider_options)), chosen, None
    except MetricUnavailable as error:
        if name is not None:
            raise PagbenchError(str(error)) from error
        return None, chosen, str(error)


@dataclass
class SharedSetup:
    """What does not depend on the model: dataset, providers, σ and metrics. Built once and
    shared by every model evaluated with the same configuration (see :func:`shared_key`)."""

    options: EvaluationOptions
    dataset: Any
    device: Any
    score_provider: Any = None
    score_provider_name: str | None = None
    manifold_provider: Any = None
    manifold_provider_name: str | None = None
    score_kind: str = "posterior"
    sigma: float | None = None
    score_unavailable: str | None = None  # why there is no score provider, when there is none
    #: the σ grid of the score curves (``--sigmas`` with the headline σ added, ascending), or None
    sigmas: list[float] | None = None
    attribution: Any = None  # the pagbench.evaluation.attributions.Attribution the gradient metrics score
    dtype: Any = None  # torch dtype of the model and inputs in the gradient pass
    metrics: list = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluationSetup(SharedSetup):
    """Everything resolved before the first batch: the shared part and the model."""

    model: Any = None
    prepare_seconds: float = 0.0  # loading the model (and, for the first model, the shared setup)
    training_layers: dict | None = None  # pagbench.evaluation.sanity.training_layers() of the model before eval()


def shared_key(options: EvaluationOptions) -> tuple:
    """Options that decide the :class:`SharedSetup`: everything but the model and its options."""
    import json

    config = options.as_dict()
    config.pop("model")
    config.pop("model_options")
    return (json.dumps(config, sort_keys=True, default=str),)


def prepare_shared(options: EvaluationOptions, *, with_metrics: bool = True) -> SharedSetup:
    """Resolve the dataset, providers, σ and metric availability (no heavy compute, no model).

    ``with_metrics=False`` resolves no metric (e.g. for a gallery, which needs only gradients
    and scores): ``metrics`` stays empty and nothing is refused for lack of one."""
    from pagbench.extensions import registry
    from pagbench.models.loading import resolve_device

    import torch

    _check_options(options)
    attribution = build_attribution(options.attribution, options.attribution_options)  # bad method/options: fail now
    device = resolve_device(options.device)
    dataset_entry = registry.datasets().get(options.dataset)
    dataset = dataset_entry.factory(options.data_root)
    split = dataset.split(options.split)
    if options.num_images > len(split):
        raise PagbenchError(
            f"--num-images {options.num_images} exceeds the {len(split)} images of {dataset.name!r}/{options.split}"
        )
    shared = SharedSetup(options=options, dataset=dataset, device=device, attribution=attribution,
                         dtype=getattr(torch, options.dtype))
    shared.score_kind = PAIRED_SCORE[options.gradient] if options.score == "auto" else options.score
    score_provider, shared.score_provider_name, score_reason = _provider(
        "score", options.score_provider, dataset_entry.default_score_provider, dataset, options
    )
    manifold_provider, shared.manifold_provider_name, manifold_reason = _provider(
        "manifold", options.manifold_provider, dataset_entry.default_manifold_provider, dataset, options
    )
    shared.score_provider, shared.manifold_provider = score_provider, manifold_provider
    shared.score_unavailable = score_reason
    if score_provider is not None:
        shared.sigma = float(options.sigma if options.sigma is not None else score_provider.default_sigma)
        if options.sigmas:
            shared.sigmas = sigma_grid(options.sigmas, shared.sigma)

    if not with_metrics:
        return shared
    metric_table = registry.metrics()
    wanted = list(options.metrics) if options.metrics else metric_table.names()
    for name in wanted:
        metric = metric_table.get(name)
        reason = None
        if "score" in metric.requires and score_provider is None:
            reason = score_reason
        elif "tangent_basis" in metric.requires and manifold_provider is None:
            reason = manifold_reason
        else:
            try:
                metric.check_available(shared)
            except MetricUnavailable as error:
                reason = str(error)
        if reason is None:
            shared.metrics.append(metric)
        else:
            shared.unavailable[metric.name] = reason
    if score_provider is not None and any("score" in metric.requires for metric in shared.metrics):
        for sigma in [shared.sigma, *(shared.sigmas or ())]:
            score_provider.check(sigma, shared.score_kind)  # e.g. σ ≤ 0 for a learned score: fail now
    if not shared.metrics:
        raise PagbenchError("no metric can be computed: " + "; ".join(f"{k}: {v}" for k, v in shared.unavailable.items()))
    return shared


def sigma_grid(sigmas, headline: float) -> list[float]:
    """The σ grid of the score curves: ``sigmas`` with the headline σ added when no grid point
    equals it (:func:`pagbench.evaluation.checks.in_grid`), sorted ascending, duplicates dropped."""
    from pagbench.evaluation.checks import in_grid

    grid: list[float] = []
    for value in sorted(float(sigma) for sigma in sigmas):
        if not grid or not in_grid(value, [grid[-1]]):
            grid.append(value)
    if not in_grid(headline, grid):
        grid = sorted([*grid, float(headline)])
    return [headline if in_grid(headline, [value]) else value for value in grid]


def prepare(options: EvaluationOptions, model=None, shared: SharedSetup | None = None, *, with_metrics: bool = True) -> EvaluationSetup:
    """Resolve names, load the model, check shapes and metric availability (no heavy compute).

    ``model`` may be a ready :class:`~pagbench.models.loading.LoadedModel`; otherwise ``options.model``
    is loaded from the registry. ``shared`` (from :func:`prepare_shared` with the same
    :func:`shared_key`) reuses the dataset and providers of an earlier model.
    """
    from pagbench.models.loading import check_output_shape, load_model, prepare_for_evaluation

    started = time.perf_counter()
    if shared is None:
        shared = prepare_shared(options, with_metrics=with_metrics)
    elif shared_key(shared.options) != shared_key(options):
        raise PagbenchError("internal: a shared setup was reused for another configuration")
    dataset, device = shared.dataset, shared.device
    loaded = model if model is not None else load_model(options.model, dataset, options.device, options.model_options)
    from pagbench.evaluation.sanity import training_layers

    handed_over = loaded.handed_over if loaded.handed_over is not None else training_layers(loaded.module)
    if loaded.original is None:  # e.g. the caller's own module: its mode and flags are put back afterwards
        from pagbench.models.loading import ModuleState

        loaded.original = ModuleState(loaded.module)
    loaded.module = prepare_for_evaluation(loaded.module, device)  # eval mode before any forward pass
    check_output_shape(loaded.module, dataset, device, split=options.split)
    if options.dtype != "float32":  # models are float32 by contract: float32 leaves them as they are
        loaded.module = _in_dtype(loaded.module, shared.dtype, options.dtype, dataset, device, options.split)
    common = {f.name: getattr(shared, f.name) for f in fields(SharedSetup)}
    common.update(options=options, unavailable=dict(shared.unavailable))
    return EvaluationSetup(**common, model=loaded, prepare_seconds=time.perf_counter() - started, training_layers=handed_over)


def _in_dtype(module, dtype, name: str, dataset, device, split: str):
    """``module`` converted to ``dtype`` (in place, like ``Module.to``), checked on one image of
    ``split`` in that precision: a model that cannot run in it is a one-line error before compute.
    A copy is converted (a round trip through bfloat16 would change the weights of the caller's
    object); a module that cannot be copied is converted in place, with a warning."""
    import copy

    import torch

    try:
        module = copy.deepcopy(module)
    except Exception as error:
        warnings.warn(f"the model could not be copied ({type(error).__name__}); it is converted to --dtype {name} in place",
                      stacklevel=2)
    module = module.to(dtype)
    sample = dataset.split(split).batch([0]).images.to(device, dtype)
    with torch.no_grad():
        try:
            module(sample)
        except Exception as error:
            raise PagbenchError(f"the model cannot run in --dtype {name}: {type(error).__name__}: {error}") from error
    return module


def prepare_all(all_options, models=None, *, with_metrics: bool = True) -> list[EvaluationSetup]:
    """:func:`prepare` for several evaluations, building each distinct :class:`SharedSetup`
    once and loading every model before any compute (a bad model fails before the first one
    runs). ``models`` is None or a list, aligned with ``all_options``, of ready
    :class:`~pagbench.models.loading.LoadedModel` objects or None."""
    models = list(models) if models is not None else [None] * len(all_options)
    if len(models) != len(all_options):
        raise PagbenchError("internal: models and options differ in length")
    from pagbench.models.loading import restore_models

    shared_by_key: dict[tuple, SharedSetup] = {}
    setups = []
    try:
        for options, model in zip(all_options, models):
            key = shared_key(options)
            started = time.perf_counter()
            if key not in shared_by_key:
                shared_by_key[key] = prepare_shared(options, with_metrics=with_metrics)
            shared_seconds = time.perf_counter() - started
            setup = prepare(options, model=model, shared=shared_by_key[key])
            setup.prepare_seconds += shared_seconds
            setups.append(setup)
    except BaseException:  # the models prepared so far go back to how they were handed over
        restore_models([*(setup.model for setup in setups), *models])
        raise
    return setups


def _image_seed(seed: int, index: int, stream: str) -> int:
    digest = hashlib.sha256(f"{seed}:{index}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class _Randomness:
    """Per-image random streams: results do not depend on the batch size or order."""

    def __init__(self, seed: int, indices):
        self.seed, self.indices = seed, [int(i) for i in indices]

    def randn(self, stream: str, *shape: int):
        import torch

        draws = []
        for index in self.indices:
            generator = torch.Generator().manual_seed(_image_seed(self.seed, index, stream))
            draws.append(torch.randn(*shape, generator=generator, dtype=torch.float64))
        return torch.stack(draws)


def _on_device(tensor, device):
    """``tensor`` on ``device``, unless it would take more than a quarter of the free memory of a
    CUDA device: it then stays on the CPU (metrics move the smaller gradient to it)."""
    import torch

    device = torch.device(device)
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if tensor.numel() * tensor.element_size() > free // 4:
            return tensor
    return tensor.to(device)


def _count_degenerate(gradient, logits, degenerate: dict):
    """Add this batch's zero and non-finite gradients and non-finite outputs to ``degenerate``;
    returns the (B,) mask of images whose gradient the gradient metrics may use."""
    import torch

    flat = gradient.reshape(gradient.shape[0], -1)
    finite = torch.isfinite(flat).all(1)
    nonzero = flat.abs().amax(1) > 0
    logits_finite = torch.isfinite(logits).all(1)
    degenerate["nonfinite_logits"] += int((~logits_finite).sum())
    degenerate["nonfinite_gradient"] += int((~finite & logits_finite).sum())
    degenerate["zero_gradient"] += int((finite & ~nonzero).sum())
    return finite & nonzero & logits_finite


def _batch_geometry(setup: EvaluationSetup, cache: GeometryCache, batch, batch_indices, needs_score: bool, needs_tangent: bool):
    """(score at the headline σ, scores at each σ of ``--sigmas`` or None, tangent basis or None) of
    one image batch, from ``cache`` (computed once per batch, whatever the model), on the setup's device."""
    options, device = setup.options, setup.device
    score = tangent = sigma_scores = None
    batch_key = dict(dataset=setup.dataset.fingerprint, split=options.split,
                     indices=hashlib.sha256(str(batch_indices).encode()).hexdigest())
    if needs_score:
        provider = setup.score_provider

        def score_at(sigma):
            key = cache.key(kind="score", provider=provider.fingerprint, sigma=sigma, score=setup.score_kind, **batch_key)
            value = cache.get_or_compute(
                key, lambda: provider.scores(batch.images, batch.labels, sigma, setup.score_kind), disk=provider.disk_cache
            )
            return _on_device(value, device)

        score = score_at(setup.sigma)
        if setup.sigmas:
            sigma_scores = [score if sigma == setup.sigma else score_at(sigma) for sigma in setup.sigmas]
    if needs_tangent:
        provider = setup.manifold_provider
        key = cache.key(kind="tangent", provider=provider.fingerprint, **batch_key)
        tangent = _on_device(cache.get_or_compute(
            key, lambda: provider.tangent_basis(batch.images, batch.labels), disk=provider.disk_cache, storage="float32"
        ), device)
    return score, sigma_scores, tangent


def iter_batches(setup: EvaluationSetup, indices, *, cache: GeometryCache, timing: dict | None = None,
                 degenerate: dict | None = None, needs_score: bool = True, needs_tangent: bool = False,
                 needs_mask: bool = False):
    """The evaluation pipeline: per batch of ``setup.options.batch_size`` of the split's images
    ``indices``, one forward/backward pass of the model for the chosen input gradient
    (:func:`pagbench.evaluation.gradients.input_gradients`) and the chosen attribution, the score (at the
    headline σ and, with ``--sigmas``, at every σ of the grid) and the tangent basis from ``cache``
    (computed once per image batch, whatever the model), yielded as a
    :class:`~pagbench.evaluation.metrics.MetricContext`. ``evaluate``, galleries and re-evaluations consume it.

    ``timing`` (``model_seconds``, ``geometry_seconds``) and ``degenerate`` (counts of zero and
    non-finite gradients and outputs) are accumulated in place when given. ``needs_score`` asks
    for the score only when the setup has a score provider.
    """
    import torch

    from pagbench.evaluation.metrics import MetricContext

    options, dataset, module, device = setup.options, setup.dataset, setup.model.module, setup.device
    split = dataset.split(options.split)
    timing = timing if timing is not None else {"model_seconds": 0.0, "geometry_seconds": 0.0}
    degenerate = degenerate if degenerate is not None else {"zero_gradient": 0, "nonfinite_gradient": 0, "nonfinite_logits": 0}
    needs_score = needs_score and setup.score_provider is not None
    needs_tangent = needs_tangent and setup.manifold_provider is not None
    indices = [int(index) for index in indices]

    def probabilities(images):
        with torch.no_grad():
            logits = module(images)
            check_logits(logits, images.shape[0], num_classes=dataset.num_classes)
            return torch.softmax(logits.double(), dim=1)

    for start in range(0, len(indices), options.batch_size):
        batch_indices = indices[start : start + options.batch_size]
        batch = split.batch(batch_indices)
        images, labels = batch.images.to(device, setup.dtype or torch.float32), batch.labels.to(device)
        randomness = _Randomness(options.seed, batch_indices)

        tick = time.perf_counter()
        logits, gradient = input_gradients(module, images, labels, options.gradient)
        check_logits(logits, len(batch_indices), num_classes=dataset.num_classes)
        if setup.attribution is not None:  # the default method returns the raw gradient itself
            target = AttributionTarget(model=module, images=images, labels=labels, gradient=options.gradient,
                                       logits=logits, input_gradient=gradient, randomness=randomness)
            gradient = setup.attribution.attribute(target).double()
        timing["model_seconds"] += time.perf_counter() - tick

        gradient_ok = _count_degenerate(gradient, logits, degenerate)

        tick = time.perf_counter()
        score, sigma_scores, tangent = _batch_geometry(setup, cache, batch, batch_indices, needs_score, needs_tangent)
        timing["geometry_seconds"] += time.perf_counter() - tick
        yield MetricContext(
            images=images,
            labels=labels,
            logits=logits,
            gradient=gradient,
            gradient_ok=gradient_ok,
            probabilities=probabilities,
            randomness=randomness,
            dataset=dataset,
            options=options,
            score=score,
            sigmas=setup.sigmas if sigma_scores is not None else None,
            sigma_scores=sigma_scores,
            tangent_basis=tangent,
            signal_mask=batch.signal_mask if needs_mask else None,
        )


def _summaries(setup: EvaluationSetup, per_image: dict, curves: dict, degenerate: dict) -> tuple[dict, dict, dict]:
    """(metrics, curves, metric settings) of a result from the per-image values (name → (N,)) and
    curve values (name → (N, G)) of every batch: mean ± standard error over the images that were not
    excluded; a metric with n = 0 carries the reason."""
    from pagbench.evaluation.aggregate import no_value_reason

    metrics_out: dict[str, dict] = {}
    curves_out: dict[str, dict] = {}
    settings: dict[str, dict] = {}
    for metric in setup.metrics:
        for name, direction in metric.outputs.items():
            if name in per_image:
                metrics_out[name] = {**summarize(per_image[name]).as_dict(), "higher_is_better": direction}
        derived_directions = metric.derived_outputs()
        for name, summary in metric.derived(per_image).items():
            metrics_out[name] = {**summary.as_dict(), "higher_is_better": derived_directions.get(name)}
        for name, grid in metric.curve_grid(setup).items():
            if name in curves:
                columns = [summarize(curves[name][:, j]) for j in range(curves[name].shape[1])]
                curves_out[name] = {"x": grid, "mean": [c.value for c in columns], "stderr": [c.stderr for c in columns],
                                    "n": [c.n for c in columns]}
        description = metric.describe(setup)
        if description:
            settings[metric.name] = description
    for record in metrics_out.values():  # n = 0 is reported as such, with the reason
        if record.get("n") == 0 and record.get("value") is None:
            record["reason"] = no_value_reason(degenerate, setup.options.num_images, int(record.get("excluded") or 0))
    return metrics_out, curves_out, settings


def _run_messages(setup: EvaluationSetup, degenerate: dict) -> list[str]:
    """The result's messages (an untrained head, degenerate images); degenerate images also warn."""
    messages = []
    if setup.model.card.requires_finetuning:
        messages.append("the model's classifier head is untrained (--replace-head): it requires fine-tuning before its numbers mean much")
    bad, total = sum(degenerate.values()), setup.options.num_images
    if bad:
        message = (f"{bad} of {total} images had degenerate gradients or outputs ({degenerate}); excluded from "
                   f"gradient metrics" + ("; non-finite outputs count as wrong for accuracy" if degenerate["nonfinite_logits"] else ""))
        messages.append(message)
        warnings.warn(message, DegenerateImagesWarning, stacklevel=3)
    return messages


def evaluate(
    options: EvaluationOptions,
    *,
    cache: GeometryCache | None = None,
    progress: bool = True,
    model=None,
    per_image: bool = False,
    setup: EvaluationSetup | None = None,
) -> dict:
    """Evaluate one model; returns the result document (see :mod:`pagbench.results.documents`).

    ``cache`` shares scores and tangent bases between runs (a new one per call by default, which
    still reads the on-disk cache). ``per_image=True`` adds the per-image values under ``per_image``.
    ``setup`` is a ready :class:`EvaluationSetup` (from :func:`prepare_all`); its preparation
    time is then not part of this result's ``total_seconds``.
    """
    import torch

    started = time.perf_counter()
    started_with_setup = setup is not None
    if setup is None:
        setup = prepare(options, model=model)
    options = setup.options
    cache = cache if cache is not None else GeometryCache()
    needs_score = any("score" in m.requires for m in setup.metrics)
    needs_tangent = any("tangent_basis" in m.requires for m in setup.metrics)
    needs_mask = any("signal_mask" in m.requires for m in setup.metrics)

    per_image_values: dict[str, list] = {}
    curves: dict[str, list] = {}
    degenerate = {"zero_gradient": 0, "nonfinite_gradient": 0, "nonfinite_logits": 0}
    timing = {"model_seconds": 0.0, "geometry_seconds": 0.0, "metrics_seconds": 0.0}
    per_metric: dict[str, float] = {}
    indices_all = list(range(options.num_images))

    from pagbench.progress import progress_bar
    from pagbench.evaluation.sanity import check_batch

    sanity_record = None
    with progress_bar(f"evaluating {setup.model.name}", total=options.num_images, enabled=progress) as advance:
        for context in iter_batches(setup, indices_all, cache=cache, timing=timing, degenerate=degenerate,
                                    needs_score=needs_score, needs_tangent=needs_tangent, needs_mask=needs_mask):
            tick = time.perf_counter()
            if sanity_record is None:  # AutoAttack-style flags, on the first batch (a few extra passes)
                sanity_record = check_batch(setup, context)
            for metric in setup.metrics:
                metric_tick = time.perf_counter()
                output = metric.compute(context)
                per_metric[metric.name] = per_metric.get(metric.name, 0.0) + time.perf_counter() - metric_tick
                for name, values in output.values.items():  # kept where computed: one move to the CPU per run
                    per_image_values.setdefault(name, []).append(values.detach())
                for name, values in output.curves.items():
                    curves.setdefault(name, []).append(values.detach())
            timing["metrics_seconds"] += time.perf_counter() - tick
            advance(len(context.labels))

    per_image_tensors = {name: torch.cat([part.double().cpu() for part in parts]) for name, parts in per_image_values.items()}
    curves = {name: torch.cat([part.double().cpu() for part in parts]) for name, parts in curves.items()}
    metrics_out, curves_out, settings = _summaries(setup, per_image_tensors, curves, degenerate)
    messages = _run_messages(setup, degenerate)

    timing["per_metric_seconds"] = per_metric
    timing["prepare_seconds"] = setup.prepare_seconds
    timing["total_seconds"] = time.perf_counter() - started + (setup.prepare_seconds if started_with_setup else 0.0)
    timing["images_per_second"] = options.num_images / timing["total_seconds"]
    from pagbench.results.documents import build_result

    result = build_result(setup, metrics_out, curves_out, settings, degenerate, timing, messages, sanity=sanity_record)
    if per_image:
        result["per_image"] = {"index": indices_all, **{k: v.tolist() for k, v in per_image_tensors.items()}}
    return result


def evaluate_many(all_options, *, models=None, cache: GeometryCache | None = None, progress: bool = True, per_image: bool = False):
    """Evaluate several models, yielding each result document as it is ready.

    Every model is loaded and every option checked before the first evaluation starts; models
    with the same configuration share the dataset, the providers and one geometry cache, so
    scores and tangent bases are computed once for all of them.
    """
    from pagbench.models.loading import restore_models

    setups = prepare_all(all_options, models)
    cache = cache if cache is not None else GeometryCache()
    try:
        for setup in setups:
            yield evaluate(setup.options, cache=cache, progress=progress, per_image=per_image, setup=setup)
    finally:  # each model's train/eval mode, requires_grad and device as it was handed over
        restore_models(setup.model for setup in setups)


__all__ = ["EvaluationOptions", "EvaluationSetup", "SharedSetup", "evaluate", "evaluate_many", "iter_batches", "prepare", "prepare_all", "prepare_shared"]
