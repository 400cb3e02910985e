"""The robustness library's checkpoint layout (import-light: no torch), declared to the core as a
:class:`pagbench.plugin.CheckpointLayout` so that ``checkpoint:PATH`` (and every other route that
fits a state dict) recognises such files too.

The library's ``AttackerModel`` stores ``module.model.*`` (the network), ``module.attacker.*`` (a
copy of it) and ``module.normalizer.new_mean`` / ``new_std`` (its normalisation), with or without
the ``module.`` of DataParallel: the network is kept, the attacker dropped and the normaliser's
mean and std used. That normaliser clamps its input to [0,1] first, and the clamp is part of the
model (zero input gradient at pixels at or beyond 0 and 1; outputs that ignore how far a perturbed
pixel leaves [0,1]): it is kept, on the architecture's normalisation layer, and the card's
``input_clamp`` says so (``clamp=False`` drops it, and says that instead).
"""

from __future__ import annotations

from typing import Mapping

#: What the card says about pixels outside [0,1] for robustness-library checkpoints.
CLAMP_KEPT = "clamped to [0,1] before normalisation, as the robustness library's InputNormalize does (zero gradient at pixels at or beyond 0 and 1)"
CLAMP_DROPPED = "none: pixels outside [0,1] pass unclamped (clamp=false; the robustness library itself clamps them to [0,1])"
CLAMP_UNAVAILABLE = (
    "none: the architecture's normalisation layer cannot clamp, but the robustness library clamps inputs to [0,1]; "
    "outputs differ for inputs outside [0,1] and gradients at pixels at 0 or 1"
)


def is_robustness_layout(state: Mapping) -> bool:
    """The robustness library's ``AttackerModel`` layout: ``[module.]model.*`` next to
    ``[module.]attacker.*`` and/or ``[module.]normalizer.*``."""
    keys = [key[len("module.") :] if key.startswith("module.") else key for key in state]
    return any(k.startswith("model.") for k in keys) and any(k.startswith(("attacker.", "normalizer.")) for k in keys)


def split_robustness_layout(state: Mapping):
    """An ``AttackerModel`` state dict (``[module.]model.*``, ``[module.]attacker.*``,
    ``[module.]normalizer.new_mean/new_std``) → (the network's weights, (new_mean, new_std) or
    None). The attacker's copy of the network is dropped."""
    plain = {(key[len("module.") :] if key.startswith("module.") else key): value for key, value in state.items()}
    mean, std = plain.get("normalizer.new_mean"), plain.get("normalizer.new_std")
    network = {key[len("model.") :]: value for key, value in plain.items() if key.startswith("model.")}
    return network, ((mean, std) if mean is not None and std is not None else None)


def robustness_layout():
    """The layout as a :class:`pagbench.plugin.CheckpointLayout`."""
    from pagbench.plugin import CheckpointLayout

    return CheckpointLayout(
        name="robustness",
        recognise=is_robustness_layout,
        split=split_robustness_layout,
        description="robustness library: module.model.* kept, module.attacker.* and module.normalizer.* dropped",
        normalization_source="checkpoint (robustness library module.normalizer.new_mean/new_std)",
        clamps_input=True,
        clamp_kept=CLAMP_KEPT,
        clamp_dropped=CLAMP_DROPPED,
        clamp_unavailable=CLAMP_UNAVAILABLE,
        normalization_keys=(("normalizer.new_mean", "normalizer.new_std"),),  # the normaliser next to a bare network
    )
