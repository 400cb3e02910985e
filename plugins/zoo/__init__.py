"""Built-in plugin: the ResNet18 model zoo and the ``pagbench train`` command.

Models named ``resnet18-<dataset>-<regime>-<strength>[-s<seed>]`` (e.g. ``resnet18-synthetic-noise-0.1``)
resolve to a :class:`~pagbench_plugins.zoo.training.TrainingRecipe`; stored weights load, missing ones are
trained first (with progress) and kept in the model store.
"""

from pagbench.plugin import ModelCard, hookimpl, lazy_family

from .recipes import PREFIX, parse_name, recipe_for


def _card(name: str) -> ModelCard:
    dataset, regime, strength, seed = parse_name(name)
    return ModelCard(
        architecture="resnet18 (CIFAR-style, 3x3 stem)",
        dataset=dataset,
        regime="standard" if strength == 0 else regime,
        strength=strength,
        source="trained by pagbench (pagbench train)",
        licence="MIT",
        description=f"{regime} training at strength {strength:g}",
        seed=seed,
    )


def _architecture(name, dataset, device):
    """The untrained ResNet18 of ``name`` for ``dataset`` (for ``checkpoint:PATH --arch NAME``):
    width from the name's dataset, classes and channels from ``dataset``; never trains."""
    from .build import architecture

    dataset_name, regime, strength, seed = parse_name(name)
    return architecture(recipe_for(dataset_name, regime, strength, seed=seed), dataset)


@hookimpl
def register_models(register):
    register(
        lazy_family(
            PREFIX, __name__ + ".build", "zoo_model",
            card=_card,
            architecture=_architecture,
            description="ResNet18 zoo: <dataset>-<regime>-<strength>, trained on first use",
            examples=("resnet18-synthetic-standard-0", "resnet18-synthetic-noise-0.1"),
        )
    )


@hookimpl
def register_board_columns(register):
    from .regime_labels import board_column

    register(board_column())


@hookimpl
def register_commands(cli):
    from .commands import add_commands

    add_commands(cli)
