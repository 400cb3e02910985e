"""Sanity flags: automatic checks that a model's numbers mean what they seem to (like AutoAttack's).

Each flag (:data:`FLAGS`) has a ``name``, a measured ``value``, a configurable ``threshold`` and
a one-line ``explanation``; it is *raised* when the value is beyond the threshold (above it, or
below it for ``vanishing_gradient``). The checks run on the first batch only and cost at most
three extra passes of the model on it: one forward (stochastic forward), one forward/backward at
x + δ (masking) and, only when the model was handed over with mode-dependent layers in train mode,
one forward in train mode (buffers restored afterwards). ``degenerate_gradients`` is computed from
the run's degenerate counts (:func:`degenerate_flag`). The result records, under ``sanity``::

    {"flags": {name: {"value", "threshold", "raised", "detail"}}, "raised": [names], "checked_images": n}

The runner calls :func:`training_layers` on the module before pagbench puts it in eval mode,
then :func:`check_batch` on the first batch; :func:`pagbench.results.documents.build_result` adds
:func:`degenerate_flag` and records it all. Nothing here imports torch at module level.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from pagbench.errors import PagbenchError


@dataclass(frozen=True)
class SanityFlag:
    """One flag: raised when ``value > threshold`` (``above=True``) or ``value < threshold``.
    ``low``/``high``: the range a configured threshold must lie in (inclusive)."""

    name: str
    threshold: float
    explanation: str
    above: bool = True
    low: float = 0.0
    high: float = 1.0


FLAGS = (
    SanityFlag("probability_outputs", 0.5,
               "fraction of images whose outputs are already probabilities (non-negative, summing to 1): softmax "
               "outputs passed as logits squash the gradient and the softmax-based metrics."),
    SanityFlag("stochastic_forward", 1e-4,
               "largest change of the outputs between two identical forward passes on the same batch, relative to "
               "their largest magnitude: a randomised model (dropout, noise) makes gradients and robustness numbers noise.",
               high=math.inf),
    SanityFlag("degenerate_gradients", 0.05,
               "fraction of images with zero or non-finite gradients or outputs (excluded from the means): the numbers "
               "describe only the rest."),
    SanityFlag("train_mode_layers", 0.0,
               "BatchNorm/Dropout layers the model was handed over in train mode (or that ignore eval()) with a forward "
               "that differs between train and eval: pagbench evaluates in eval mode, code that does not gets other numbers.",
               high=math.inf),
    SanityFlag("vanishing_gradient", 0.1,
               "median over images of |grad at x + δ| / |grad at x| for tiny noise δ: a gradient that collapses next to "
               "the data points is masked (obfuscated), and alignment measured at x says nothing about the model.",
               above=False, high=math.inf),
    SanityFlag("sparse_gradient", 0.5,
               "mean fraction of pixels whose gradient is exactly zero: a gradient that is zero on most pixels is masked "
               "or the model ignores most of the image."),
)
FLAG_NAMES = tuple(flag.name for flag in FLAGS)
_BY_NAME = {flag.name: flag for flag in FLAGS}
#: Standard deviation of the masking check's noise δ, in [0,1] pixel units.
NOISE_STD = 1e-3
#: |sum − 1| below which an output row counts as summing to 1.
SUM_TOLERANCE = 1e-4


def flag(name: str) -> SanityFlag:
    """The flag called ``name``; an unknown name is a one-line error with the closest names."""
    if name not in _BY_NAME:
        close = difflib.get_close_matches(name, FLAG_NAMES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PagbenchError(f"unknown sanity flag {name!r}{hint} (flags: {', '.join(FLAG_NAMES)})")
    return _BY_NAME[name]


def resolve_thresholds(overrides: dict | None = None) -> dict[str, float]:
    """Every flag's threshold: the defaults with ``overrides`` (name → number or numeric text)
    applied. An unknown name, a non-number or a value outside the flag's range is a one-line
    :class:`PagbenchError` (``--sanity-threshold NAME=VALUE``)."""
    thresholds = {item.name: item.threshold for item in FLAGS}
    for name, raw in (overrides or {}).items():
        item = flag(str(name).strip())
        try:
            value = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or not item.low <= value <= item.high:
            upper = "∞" if math.isinf(item.high) else f"{item.high:g}"
            raise PagbenchError(f"--sanity-threshold {item.name}: expected a number in [{item.low:g}, {upper}], got {raw!r}")
        thresholds[item.name] = value
    return thresholds


def record(name: str, value, thresholds: dict, detail: str | None = None) -> dict:
    """A flag's entry in the result: value, threshold, whether it is raised, and a detail line."""
    item, threshold = flag(name), thresholds[name]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raised = False
        value = None
    else:
        value = float(value)
        raised = value > threshold if item.above else value < threshold
    return {"value": value, "threshold": float(threshold), "raised": bool(raised), "detail": detail}


# ------------------------------------------------------------------------------ train mode
def _mode_dependent(module) -> bool:
    import torch.nn as nn

    kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU)
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return bool(module.track_running_stats)
    return isinstance(module, kinds)


def training_layers(module) -> dict:
    """What the module would do as handed over, before pagbench's ``eval()``: the qualified
    names of its BatchNorm/Dropout-type layers in train mode, and whether any submodule at all
    had its ``training`` flag set (``{"layers": [...], "any_training": bool}``)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        return {"layers": [], "any_training": False}
    layers = [name or "(model)" for name, child in module.named_modules() if child.training and _mode_dependent(child)]
    return {"layers": layers, "any_training": any(child.training for child in module.modules())}


def _train_forward_differs(module, images, reference) -> bool | str:
    """Whether ``module`` in train mode gives other outputs than ``reference`` (eval mode) on
    ``images``; its buffers (BatchNorm running statistics) and modes are restored afterwards.
    When the train-mode forward raises, the one-line reason (a str): the check could not be made."""
    import torch

    modes = {name: child.training for name, child in module.named_modules()}
    buffers = {name: buffer.detach().clone() for name, buffer in module.named_buffers()}
    try:
        module.train()
        with torch.no_grad():
            output = module(images)
    except Exception as error:
        text = str(error).splitlines()[0] if str(error) else ""
        return f"its train-mode forward raised {type(error).__name__}: {text}"[:300]
    finally:
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])
        for name, child in module.named_modules():
            child.training = modes.get(name, False)
    if not isinstance(output, torch.Tensor) or output.shape != reference.shape:
        return True
    return not torch.allclose(output.double(), reference.double(), rtol=1e-4, atol=1e-6 * _finite_scale(reference), equal_nan=True)


def _finite_scale(values) -> float:
    """The largest finite |value| (1 when there is none): a scale that NaN or inf outputs cannot spoil."""
    import torch

    finite = values[torch.isfinite(values)]
    return float(finite.abs().max()) if finite.numel() and float(finite.abs().max()) > 0 else 1.0


# --------------------------------------------------------------------------------- checks
def check_model(module, images, labels, gradient: str = "logprob", *, logits=None, gradient_values=None, noise=None,
                handed_over: dict | None = None, thresholds: dict | None = None) -> dict:
    """The batch checks on ``module`` (already in eval mode, as pagbench evaluates it).

    images (B, C, H, W) in [0,1] and labels (B,) on the module's device; ``logits`` (B, Y) and
    ``gradient_values`` (B, C, H, W), when given, are the evaluation pass's (else computed here);
    ``noise`` (B, C, H, W) standard normals for the masking check (else drawn from a fixed seed);
    ``handed_over`` is :func:`training_layers` of the module before ``eval()``; ``thresholds``
    from :func:`resolve_thresholds`. Returns name → :func:`record` for every flag but
    ``degenerate_gradients``. The global random state is left as it was.
    """
    import torch

    from pagbench.evaluation.gradients import input_gradients

    thresholds = thresholds if thresholds is not None else resolve_thresholds()
    flags: dict[str, dict] = {}
    devices = [images.device.index or 0] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if logits is None or gradient_values is None:
            logits, gradient_values = input_gradients(module, images, labels, gradient)
        logits = logits.detach()
        gradient_values = gradient_values.detach().double().cpu()

        # outputs that are already probabilities
        rows = logits.double()
        probability_rows = (rows >= 0).all(1) & ((rows.sum(1) - 1).abs() <= SUM_TOLERANCE)
        count = int(probability_rows.sum())
        flags["probability_outputs"] = record("probability_outputs", count / max(len(rows), 1), thresholds,
                                              f"{count} of {len(rows)} output rows are non-negative and sum to 1")

        # a stochastic forward pass
        with torch.no_grad():
            again = module(images)
        again = again.detach().double() if isinstance(again, torch.Tensor) else None
        if again is None or again.shape != rows.shape:
            change = math.inf
        else:
            scale = _finite_scale(rows)
            same = (torch.isnan(again) & torch.isnan(rows)) | (torch.isinf(rows) & (again == rows))  # NaN/inf in both
            difference = torch.where(same, torch.zeros_like(rows), (again - rows).abs())
            change = float(torch.nan_to_num(difference, nan=math.inf).max()) / scale if difference.numel() else 0.0
        flags["stochastic_forward"] = record("stochastic_forward", change if math.isfinite(change) else 1e300, thresholds,
                                             "two identical forward passes differ" if change > 0 else "identical outputs")

        # layers in train mode as handed over
        handed_over = handed_over or {"layers": [], "any_training": False}
        still = [name or "(model)" for name, child in module.named_modules() if child.training and _mode_dependent(child)]
        named = sorted(set(handed_over.get("layers", [])) | set(still))
        differs = bool(handed_over.get("any_training") or still) and _train_forward_differs(module, images, rows)
        value = (len(named) or 1) if differs is True else 0
        detail = None
        if isinstance(differs, str):  # not checked: the value is unknown, not 0
            value, detail = None, f"layers in train mode ({', '.join(named[:5]) or 'a module'}) not compared: {differs}"
        elif differs:
            shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
            detail = (f"in train mode: {shown}" if named else "a module was in train mode") + "; its forward differs between train and eval"
            if still:
                detail += f"; still in train mode after eval(): {', '.join(still[:5])}"
        flags["train_mode_layers"] = record("train_mode_layers", value, thresholds, detail)

        # masking: the gradient at x + δ, and exact zeros at x
        flat = gradient_values.reshape(len(gradient_values), -1)
        usable = torch.isfinite(flat).all(1) & (flat.abs().amax(1) > 0)
        if noise is None:
            generator = torch.Generator().manual_seed(0)
            noise = torch.randn(images.shape, generator=generator, dtype=torch.float64)
        perturbed = (images.double() + NOISE_STD * noise.to(images.device).double()).to(images.dtype)
        _, noisy = input_gradients(module, perturbed, labels, gradient)
        noisy = noisy.detach().double().cpu().reshape(len(flat), -1)
        ratio = torch.nan_to_num(noisy.norm(dim=1), nan=0.0) / flat.norm(dim=1).clamp_min(1e-300)
        median = float(ratio[usable].median()) if bool(usable.any()) else None
        flags["vanishing_gradient"] = record("vanishing_gradient", median, thresholds,
                                             f"δ ~ N(0, {NOISE_STD:g}²) per pixel, {int(usable.sum())} images with a usable gradient")
        zero_fraction = float((flat[usable] == 0).double().mean(1).mean()) if bool(usable.any()) else None
        flags["sparse_gradient"] = record("sparse_gradient", zero_fraction, thresholds,
                                          f"over {int(usable.sum())} images with a usable gradient")
    return flags


def check_batch(setup, context) -> dict:
    """:func:`check_model` for the runner: the setup's model and options on the first batch's
    :class:`~pagbench.evaluation.metrics.MetricContext` (its logits and gradient are reused). Returns the
    ``sanity`` record without ``degenerate_gradients`` (see :func:`pagbench.results.documents.build_result`)."""
    options = setup.options
    thresholds = resolve_thresholds(getattr(options, "sanity_thresholds", None))
    shape = tuple(context.images.shape[1:])
    noise = context.randomness.randn("sanity", *shape) if context.randomness is not None else None
    flags = check_model(setup.model.module, context.images, context.labels, options.gradient, logits=context.logits,
                        gradient_values=context.gradient, noise=noise, handed_over=getattr(setup, "training_layers", None),
                        thresholds=thresholds)
    return {"flags": flags, "checked_images": int(len(context.labels))}


def degenerate_flag(degenerate: dict, num_images: int, thresholds: dict | None = None) -> dict:
    """``degenerate_gradients`` from the run's degenerate counts (zero / non-finite gradients,
    non-finite outputs) over ``num_images``."""
    thresholds = thresholds if thresholds is not None else resolve_thresholds()
    bad = sum(int(count) for count in (degenerate or {}).values())
    counts = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in (degenerate or {}).items() if count)
    return record("degenerate_gradients", bad / max(int(num_images), 1), thresholds,
                  f"{bad} of {num_images} images" + (f" ({counts})" if counts else ""))


def sanity_record(checked: dict | None, degenerate: dict, num_images: int, thresholds: dict | None = None) -> dict:
    """The result's ``sanity`` section: the batch checks (``checked``, from :func:`check_batch`;
    None when they did not run) and ``degenerate_gradients``, in :data:`FLAGS` order."""
    flags = dict((checked or {}).get("flags") or {})
    flags["degenerate_gradients"] = degenerate_flag(degenerate, num_images, thresholds)
    ordered = {name: flags[name] for name in FLAG_NAMES if name in flags}
    return {"flags": ordered, "raised": [name for name, item in ordered.items() if item["raised"]],
            "checked_images": int((checked or {}).get("checked_images") or 0)}


__all__ = ["FLAGS", "FLAG_NAMES", "SanityFlag", "check_batch", "check_model", "degenerate_flag", "flag", "record",
           "resolve_thresholds", "sanity_record", "training_layers"]
