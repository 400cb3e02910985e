"""Example pagbench plugin: one registration per hook. Heavy imports happen in the factories."""

import click

from pagbench.plugin import DatasetEntry, ManifoldProviderEntry, ModelCard, ModelEntry, ScoreProviderEntry, TrainerEntry, hookimpl


@hookimpl
def register_datasets(register):
    register(
        DatasetEntry(
            name="example-bars",
            factory=_bars_dataset,
            description="Bar orientation in the top half (signal), random bars below (distractor)",
            num_classes=2,
            image_shape=(1, 16, 16),
            default_score_provider="class-gaussians",
            default_manifold_provider="pca",
        )
    )


@hookimpl
def register_models(register):
    register(
        ModelEntry(
            name="example-bars-template",
            factory=_template_model,
            card=ModelCard(architecture="template matching", dataset="example-bars", regime="hand-made",
                           source="pagbench-example-plugin", licence="MIT"),
        )
    )


@hookimpl
def register_score_providers(register):
    register(ScoreProviderEntry("class-gaussians", _class_gaussians, "Scores of N(class mean, s²I) fitted to the train split."))


@hookimpl
def register_manifold_providers(register):
    register(ManifoldProviderEntry("pca", _pca, "Top-k principal directions of the train split (option k, default 8)."))


@hookimpl
def register_trainers(register):
    register(TrainerEntry("label-smoothing", _label_smoothing_loss, "Cross-entropy with label smoothing.", "smoothing ε in [0,1)"))


@hookimpl
def register_metrics(register):
    from .gradient_norm import GradientNorm

    register(GradientNorm())


@hookimpl
def register_commands(cli):
    @cli.command("example-hello")
    def hello():
        """Say hello from the example plugin."""
        click.echo("hello from pagbench-example-plugin")


def _bars_dataset(data_root):
    from .bars import build_dataset

    return build_dataset()


def _template_model(name, dataset, device):
    from .bars import TemplateModel

    return TemplateModel()


def _class_gaussians(dataset, options):
    from .providers import ClassGaussianScores

    return ClassGaussianScores(dataset)


def _pca(dataset, options):
    from .providers import PcaManifold

    return PcaManifold(dataset, int(options.get("k", 8)))


def _label_smoothing_loss(model, images, labels, strength, **unused):
    import torch.nn.functional as functional

    return functional.cross_entropy(model(images), labels, label_smoothing=float(strength))
