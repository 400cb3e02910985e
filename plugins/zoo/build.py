"""Building, training and loading zoo models (imports torch)."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext

from pagbench.plugin import PagbenchError
from .training import TrainingRecipe, is_trained, load_trained, train

from .recipes import NORMALIZATION, parse_name, recipe_for


def architecture(recipe: TrainingRecipe, dataset):
    """A fresh ResNet18 for ``recipe`` on ``dataset``."""
    from .resnet import ResNet18

    if recipe.architecture != "resnet18":
        raise PagbenchError(f"unknown architecture {recipe.architecture!r} (the zoo has resnet18)")
    mean, std = NORMALIZATION.get(dataset.name, ((0.5,), (0.25,)))
    return ResNet18(dataset.num_classes, channels=dataset.image_shape[0], width=recipe.width, mean=mean, std=std)


def train_recipe(recipe: TrainingRecipe, dataset, device: str = "cpu", progress: bool = True, options=None):
    """Train ``recipe`` (resuming if interrupted) with its registered regime; returns (model, record).
    ``options``: :class:`.training.TrainingOptions` (how to execute it; default: today's)."""
    from pagbench.plugin import trainers

    regime = trainers().get(recipe.regime)
    with store_lock(recipe):
        return train(
            recipe,
            lambda: architecture(recipe, dataset),
            dataset,
            regime.loss,
            device=device,
            progress=progress,
            log=lambda message: print(message, file=sys.stderr),
            options=options,
        )


def store_lock(recipe: TrainingRecipe):
    """The model store's lock of ``recipe`` (:func:`pagbench.models.store.model_lock`), saying on stderr
    when it waits; under torchrun only rank 0 takes it (the other ranks follow rank 0)."""
    from pagbench.plugin import model_lock

    if int(os.environ.get("RANK", "0")) != 0:
        return nullcontext()
    return model_lock(recipe.identifier, on_wait=lambda path: print(
        f"{recipe.identifier} is being trained by another process: waiting for it (lock {path})", file=sys.stderr, flush=True))


def obtain(recipe: TrainingRecipe, dataset, device="cpu", progress: bool = True, options=None):
    """The stored model of ``recipe``, training it first if the store lacks it. Training is
    under the store's lock, so processes that need the same model at once train it once: the
    others wait, then load it."""
    from pagbench.plugin import DamagedFile, warn_damaged

    with nullcontext() if is_trained(recipe) else store_lock(recipe):
        if is_trained(recipe):
            try:
                return load_trained(recipe, lambda: architecture(recipe, dataset), device)
            except DamagedFile as error:  # reported once; the recipe determines the weights: retrain
                warn_damaged(error, "retraining the model")
                print(f"{error}; retraining {recipe.identifier}", file=sys.stderr)
                return train_recipe(recipe, dataset, device, progress, options)
        print(f"{recipe.identifier} is not in the model store: training it now", file=sys.stderr)
        return train_recipe(recipe, dataset, device, progress, options)


#: Model options of zoo names (``--model-option KEY=VALUE``; what ``pagbench sweep`` passes):
#: ``preset`` (cpu or paper: the sweep preset's recipe), ``epochs`` (override the recipe's) and
#: ``amp`` (off, bf16 or fp16: the recipe's autocast).
RECIPE_OPTIONS = ("preset", "epochs", "amp")


def recipe_of(name: str, options: dict | None = None) -> TrainingRecipe:
    """The recipe a zoo ``name`` stands for, under the model options ``options``."""
    from pagbench.plugin import describe_options

    options = dict(options or {})
    unknown = {key: value for key, value in options.items() if key not in RECIPE_OPTIONS}
    if unknown:
        raise PagbenchError(f"zoo model {name!r} takes the model options {', '.join(RECIPE_OPTIONS)} (got {describe_options(unknown)})")
    dataset_name, regime, strength, seed = parse_name(name)
    overrides = {}
    if options.get("epochs") not in (None, ""):
        try:
            overrides["epochs"] = int(options["epochs"])
        except (TypeError, ValueError):
            raise PagbenchError(f"--model-option epochs: expected an integer, got {options['epochs']!r}") from None
    if options.get("amp") not in (None, ""):
        overrides["amp"] = str(options["amp"])
    return recipe_for(dataset_name, regime, strength, seed=seed, preset=options.get("preset"), **overrides)


def zoo_model(name: str, dataset, device, options: dict | None = None):
    """The stored (or newly trained) model of ``name``. With model options the card names the
    recipe and its test accuracy, and carries the recipe as ``provenance["training_recipe"]``."""
    dataset_name, regime, _, _ = parse_name(name)
    if dataset_name != dataset.name:
        raise PagbenchError(f"model {name!r} was trained on {dataset_name!r}, not on {dataset.name!r}")
    from pagbench.plugin import trainers

    trainers().get(regime)  # unknown regime → one-line error with close matches
    recipe = recipe_of(name, options)
    recipe.validate()
    model, record = obtain(recipe, dataset, str(device))
    if not options:
        return model
    from dataclasses import replace

    from pagbench.plugin import BuiltModel

    from . import _card

    card = replace(_card(name), description=f"recipe {recipe.identifier}; test accuracy {record['test_accuracy']:.4f}",
                   provenance={"training_recipe": recipe.as_dict()})
    return BuiltModel(model, card)
