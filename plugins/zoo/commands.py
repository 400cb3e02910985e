"""``pagbench train``: train one zoo model into the model store."""

from __future__ import annotations

import click


def add_commands(cli: click.Group) -> None:
    @cli.command("train")
    @click.option("--dataset", default="synthetic", show_default=True)
    @click.option("--regime", default="standard", show_default=True, help="Registered training regime (pagbench trainers).")
    @click.option("--strength", type=float, default=0.0, show_default=True, help="Regime strength (0 = standard).")
    @click.option("--epochs", type=int, default=None)
    @click.option("--lr", type=float, default=None)
    @click.option("--batch-size", type=int, default=None)
    @click.option("--width", type=int, default=None, help="ResNet18 width (64 = paper).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--data-root", default=None, type=click.Path())
    def train_command(dataset, regime, strength, epochs, lr, batch_size, width, seed, device, data_root):
        """Train a ResNet18 with a regime; weights and recipe go to the model store."""
        from pagbench.errors import PagbenchError
        from pagbench.registry import datasets, trainers

        if not strength >= 0:
            raise PagbenchError(f"--strength must be >= 0, got {strength}")
        trainers().get(regime)
        from .build import train_recipe
        from .recipes import model_name, recipe_for

        recipe = recipe_for(dataset, regime, strength, epochs=epochs, lr=lr, batch_size=batch_size, width=width, seed=seed)
        recipe.validate()
        data = datasets().get(dataset).factory(data_root)
        _, record = train_recipe(recipe, data, device)
        click.echo(f"trained {model_name(dataset, recipe.regime, strength)}: test accuracy {record['test_accuracy']:.4f} "
                   f"({record['train_seconds']:.0f} s) → {recipe.identifier}")

    @cli.command("trainers")
    def trainers_command():
        """List registered training regimes."""
        from rich.table import Table

        from pagbench.cli import console
        from pagbench.registry import trainers

        table = Table(title="training regimes")
        for column in ("name", "strength", "default sweep", "description"):
            table.add_column(column)
        for entry in trainers():
            table.add_row(entry.name, entry.strength_name, ", ".join(f"{s:g}" for s in entry.default_strengths), entry.description)
        console().print(table)
