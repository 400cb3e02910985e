"""The attribution interface: what the gradient metrics score instead of the raw input gradient.

An attribution method is a plugin (``register_attributions``, :class:`pagbench.extensions.records.AttributionEntry`):
its factory turns the ``--attribution-option KEY=VALUE`` values into an :class:`Attribution`,
whose ``attribute(target)`` returns one (B, C, H, W) float64 map per image. Every metric that
requires the gradient reads it as ``context.gradient``. The methods come from plugins; the
default is the method whose entry sets ``default=True`` (:func:`default_attribution`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from pagbench.errors import PagbenchError

if TYPE_CHECKING:
    import torch


@dataclass
class AttributionTarget:
    """One batch, as an attribution method sees it.

    images (B, C, H, W) in [0,1] on the evaluation device and in the evaluation dtype; labels (B,);
    ``gradient`` the ``--gradient`` kind (what is differentiated); logits (B, Y) and
    ``input_gradient`` (B, C, H, W) float64 at ``images`` (already computed: the raw gradient costs
    nothing more); ``randomness.randn(stream, *shape)`` per-image seeded normals (B, *shape)
    float64 on the CPU, independent of the batch size.
    """

    model: Any
    images: "torch.Tensor"
    labels: "torch.Tensor"
    gradient: str
    logits: "torch.Tensor"
    input_gradient: "torch.Tensor"
    randomness: Any

    def gradient_at(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """The chosen input gradient (B, C, H, W) float64 at ``inputs`` (shaped like ``images``),
        with the same numerics as the raw gradient (:func:`pagbench.evaluation.gradients.input_gradients`)."""
        from pagbench.evaluation.gradients import input_gradients

        return input_gradients(self.model, inputs, self.labels, self.gradient)[1]

    def objective(self, inputs: "torch.Tensor") -> "torch.Tensor":
        """A differentiable (B,) function of ``inputs`` whose input gradient is the chosen gradient:
        Σ_c v_c f_c(x) with the class weights v (:func:`pagbench.evaluation.gradients.class_weights`) held
        constant. Its value is not the log-probability; only its gradient is meaningful (for Captum)."""
        from pagbench.evaluation.gradients import class_weights

        logits = self.model(inputs)
        weights = class_weights(logits, self.labels, self.gradient).to(logits.dtype)
        return (weights.detach() * logits).sum(1)


class Attribution:
    """Base class. ``name`` and ``settings`` (every resolved setting, JSON-serialisable, recorded
    in the result as ``config.attribution_settings``); subclasses implement :meth:`attribute`."""

    name: str = ""

    def __init__(self, settings: dict | None = None):
        self.settings = dict(settings or {})

    def attribute(self, target: AttributionTarget) -> "torch.Tensor":
        """(B, C, H, W) float64 attribution, on ``target.images``' device."""
        raise NotImplementedError


def option_value(options: dict, key: str, kind: Callable, default, method: str, check: Callable | None = None, rule: str = ""):
    """``options[key]`` converted by ``kind`` (``int``, ``float``, ``str``), or ``default``; a value
    that does not convert or fails ``check`` is a one-line :class:`PagbenchError` naming ``rule``."""
    if key not in options or options[key] is None:
        return default
    raw = options[key]
    try:
        if kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        value = kind(raw)
        if isinstance(raw, bool) or (kind in (int, float) and not value == value):
            raise ValueError
    except (TypeError, ValueError):
        raise PagbenchError(f"--attribution-option {key}: expected {kind.__name__}, got {raw!r}") from None
    if check is not None and not check(value):
        raise PagbenchError(f"--attribution-option {key} must be {rule}, got {raw!r}")
    return value


def default_attribution() -> str:
    """The name of the one registered attribution method whose entry sets ``default=True``."""
    from pagbench.extensions import registry

    marked = [entry.name for entry in registry.attributions() if entry.default]
    if len(marked) != 1:
        which = "none does" if not marked else f"{', '.join(marked)} do"
        raise PagbenchError(f"exactly one registered attribution method must be marked default=True (AttributionEntry); {which}")
    return marked[0]


def build_attribution(name: str, options: dict) -> Attribution:
    """The registered method ``name`` built from ``options`` (one-line errors: an unknown method
    answers with the closest names; an undeclared option key lists the method's keys)."""
    from pagbench.extensions import registry

    entry = registry.attributions().get(name)
    unknown = sorted(set(options or {}) - set(entry.options))
    if unknown:
        accepted = ", ".join(entry.options) or "none"
        raise PagbenchError(f"attribution method {name!r} takes no option {unknown[0]!r}; its options: {accepted}")
    attribution = entry.factory(dict(options or {}))
    attribution.name = attribution.name or entry.name
    return attribution


__all__ = ["Attribution", "AttributionTarget", "build_attribution", "default_attribution", "option_value"]
