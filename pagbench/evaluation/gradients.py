"""Input gradients of a model, one forward and one backward pass per batch.

``gradient`` choices (what is differentiated w.r.t. the [0,1] input pixels):

* ``logprob``   — log softmax(f(x))_y, the log-probability of the label (default),
* ``logit``     — f(x)_y, the label's logit,
* ``logsumexp`` — log Σ_c exp f(x)_c,
* ``logit-sum`` — Σ_c f(x)_c (the reference code's choice for unconditional scores).

All are vector-Jacobian products ``vᵀ ∂f/∂x`` with a per-image weight vector ``v`` over the
classes, computed in float64 from the logits. For ``logprob``, v = e_y − softmax(f) with
1 − p_y taken as Σ_{c≠y} p_c, so confident predictions keep the gradient's direction instead of
rounding to zero. ``v`` is rescaled to max |v| = 1 before the backward pass and the scale is
applied afterwards in float64, so tiny weights do not underflow in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagbench.errors import PagbenchError

if TYPE_CHECKING:
    import torch

GRADIENTS = ("logprob", "logit", "logsumexp", "logit-sum")


def class_weights(logits: "torch.Tensor", labels: "torch.Tensor", gradient: str) -> "torch.Tensor":
    """The weights ``v`` (B, num_classes), float64, whose VJP gives the chosen gradient."""
    import torch

    logits = logits.detach().double()
    labels = labels.to(logits.device)
    rows = torch.arange(logits.shape[0], device=logits.device)
    if gradient == "logit":
        weights = torch.zeros_like(logits)
        weights[rows, labels] = 1.0
    elif gradient == "logit-sum":
        weights = torch.ones_like(logits)
    elif gradient == "logsumexp":
        weights = torch.softmax(logits, dim=1)
    elif gradient == "logprob":
        probabilities = torch.softmax(logits, dim=1)
        weights = -probabilities
        others = probabilities.scatter(1, labels[:, None], 0.0).sum(1)
        weights[rows, labels] = others
    else:
        raise PagbenchError(f"unknown gradient {gradient!r}; choose from {', '.join(GRADIENTS)}")
    return weights


def check_logits(logits, batch: int, labels=None, num_classes: int | None = None) -> None:
    """A one-line :class:`PagbenchError` unless ``logits`` is a (batch, num_classes) tensor with a
    column for every label: a model whose output ignores the batch, or changes its shape after
    the first call, is reported as such rather than failing inside the gradient's indexing."""
    import torch

    if not isinstance(logits, torch.Tensor):
        raise PagbenchError(f"model returned a {type(logits).__name__} for a batch of {batch} images, expected a logits tensor")
    shape = tuple(logits.shape)
    expected = f"({batch}, {num_classes if num_classes is not None else 'num_classes'})"
    wrong = logits.ndim != 2 or shape[0] != batch or (num_classes is not None and shape[1] != num_classes)
    if not wrong and labels is not None and labels.numel() and int(labels.max()) >= shape[1]:
        wrong = True
    if wrong:
        raise PagbenchError(f"model output has shape {shape} for a batch of {batch} images; expected {expected} logits "
                            "(does the model's output ignore the batch, or change after its first call?)")


def input_gradients(model, images: "torch.Tensor", labels: "torch.Tensor", gradient: str) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Logits (B, Y) and the chosen input gradient (B, C, H, W) float64, in one forward/backward.

    Model parameters receive no gradient (only the input is differentiated).
    """
    import torch

    inputs = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        check_logits(logits, images.shape[0], labels)
        weights = class_weights(logits, labels, gradient)
        scale = weights.abs().amax(dim=1)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        upstream = (weights / safe[:, None]).to(logits.dtype)
        upstream = torch.nan_to_num(upstream, nan=0.0)
        (grad,) = torch.autograd.grad(logits, inputs, grad_outputs=upstream, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(inputs)
    result = grad.detach().double() * scale.view(-1, *([1] * (grad.ndim - 1)))
    return logits.detach(), result
