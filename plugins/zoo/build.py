"""Building, training and loading zoo models (imports torch)."""

from __future__ import annotations

import sys

from pagbench.errors import PagbenchError
from pagbench.training import TrainingRecipe, is_trained, load_trained, train

from .recipes import NORMALIZATION, parse_name, recipe_for


def architecture(recipe: TrainingRecipe, dataset):
    """A fresh ResNet18 for ``recipe`` on ``dataset``."""
    from .resnet import ResNet18

    if recipe.architecture != "resnet18":
        raise PagbenchError(f"unknown architecture {recipe.architecture!r} (the zoo has resnet18)")
    mean, std = NORMALIZATION.get(dataset.name, ((0.5,), (0.25,)))
    return ResNet18(dataset.num_classes, channels=dataset.image_shape[0], width=recipe.width, mean=mean, std=std)


def train_recipe(recipe: TrainingRecipe, dataset, device: str = "cpu", progress: bool = True):
    """Train ``recipe`` (resuming if interrupted) with its registered regime; returns (model, record)."""
    from pagbench.registry import trainers

    regime = trainers().get(recipe.regime)
    return train(
        recipe,
        lambda: architecture(recipe, dataset),
        dataset,
        regime.loss,
        device=device,
        progress=progress,
        log=lambda message: print(message, file=sys.stderr),
    )


def obtain(recipe: TrainingRecipe, dataset, device="cpu", progress: bool = True):
    """The stored model of ``recipe``, training it first if the store lacks it."""
    if is_trained(recipe):
        from pagbench.integrity import DamagedFile, warn_damaged

        try:
            return load_trained(recipe, lambda: architecture(recipe, dataset), device)
        except DamagedFile as error:  # reported once; the recipe determines the weights: retrain
            warn_damaged(error, "retraining the model")
            print(f"{error}; retraining {recipe.identifier}", file=sys.stderr)
            return train_recipe(recipe, dataset, device, progress)
    print(f"{recipe.identifier} is not in the model store: training it now", file=sys.stderr)
    return train_recipe(recipe, dataset, device, progress)


def zoo_model(name: str, dataset, device):
    dataset_name, regime, strength, seed = parse_name(name)
    if dataset_name != dataset.name:
        raise PagbenchError(f"model {name!r} was trained on {dataset_name!r}, not on {dataset.name!r}")
    from pagbench.registry import trainers

    trainers().get(regime)  # unknown regime → one-line error with close matches
    model, _ = obtain(recipe_for(dataset_name, regime, strength, seed=seed), dataset, str(device))
    return model
