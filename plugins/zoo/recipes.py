"""Zoo recipes: per-dataset training defaults and the ``resnet18-<dataset>-<regime>-<strength>``
naming scheme (no heavy imports)."""

from __future__ import annotations

from pagbench.errors import PagbenchError
from pagbench.training import TrainingRecipe

PREFIX = "resnet18-"

#: Defaults per dataset. ``synthetic`` is sized to train in about a minute on 2 CPU cores;
#: ``cifar10`` is the paper's schedule (DESIGN §7).
DATASET_DEFAULTS: dict[str, dict] = {
    "synthetic": dict(width=8, epochs=6, lr=2e-3, batch_size=128, lr_milestones=(), augment="none",
                      optimizer="adam", schedule="onecycle", weight_decay=0.0),
    "cifar10": dict(width=64, epochs=200, lr=0.025, batch_size=128, lr_milestones=(150, 175), augment="crop-flip"),
    # The paper's MNIST-distractor schedule (9 epochs, lr 0.1, ×0.1 at 3 and 6), no crop/flip
    # (flips change digits); the offline digits set uses a narrow ResNet18 to train on a CPU.
    "mnist-distractor": dict(width=64, epochs=9, lr=0.1, batch_size=128, lr_milestones=(3, 6), augment="none"),
    "digits-distractor": dict(width=8, epochs=9, lr=0.1, batch_size=128, lr_milestones=(3, 6), augment="none"),
}

#: Normalisation inside the model per dataset (mean, std per channel).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "synthetic": ((0.5,), (0.25,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist-distractor": ((0.1,), (0.25,)),
    "digits-distractor": ((0.1,), (0.25,)),
    "imagenet64": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def parse_name(name: str) -> tuple[str, str, float]:
    """``resnet18-synthetic-noise-0.1`` → ("synthetic", "noise", 0.1)."""
    parts = name[len(PREFIX) :].split("-") if name.startswith(PREFIX) else []
    if len(parts) < 3:
        raise PagbenchError(f"zoo model names look like {PREFIX}<dataset>-<regime>-<strength>, got {name!r}")
    try:
        strength = float(parts[-1])
    except ValueError:
        raise PagbenchError(f"{name!r}: strength {parts[-1]!r} is not a number") from None
    if not strength >= 0:
        raise PagbenchError(f"{name!r}: strength must be >= 0")
    return "-".join(parts[:-2]), parts[-2], strength


def model_name(dataset: str, regime: str, strength: float) -> str:
    return f"{PREFIX}{dataset}-{regime}-{strength:g}"


def recipe_for(dataset: str, regime: str, strength: float, **overrides) -> TrainingRecipe:
    defaults = DATASET_DEFAULTS.get(dataset)
    if defaults is None:
        defaults = DATASET_DEFAULTS["cifar10"]
    if strength == 0:
        regime = "standard"
    recipe = TrainingRecipe(dataset=dataset, regime=regime, strength=float(strength), **defaults)
    return recipe.with_overrides(**overrides)
