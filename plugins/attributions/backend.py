"""Which implementation runs a method: pagbench's own (default) or Captum's.

``pagbench`` computes every gradient with :func:`pagbench.evaluation.gradients.input_gradients` (float64
class weights, rescaled before the backward pass, so confident predictions keep their gradient)
and sums in float64. ``captum`` runs Captum's implementation on the same objective
(:meth:`pagbench.evaluation.attributions.AttributionTarget.objective`), in the model's dtype: it agrees with
``pagbench`` to float32 rounding except where float32 underflows. ``auto`` is Captum when it is
installed, else pagbench's. The resolved backend is recorded in the settings.
"""

from __future__ import annotations

from pagbench.plugin import PagbenchError

BACKENDS = ("pagbench", "captum", "auto")


def captum_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("captum") is not None


def resolve_backend(value: str) -> str:
    if value not in BACKENDS:
        raise PagbenchError(f"--attribution-option backend must be one of {', '.join(BACKENDS)}, got {value!r}")
    if value == "auto":
        return "captum" if captum_installed() else "pagbench"
    if value == "captum" and not captum_installed():
        raise PagbenchError("--attribution-option backend=captum needs captum (pip install captum)")
    return value
