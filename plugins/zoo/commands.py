"""``pagbench train``: train one zoo model into the model store."""

from __future__ import annotations

import os

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
    @click.option("--no-progress", is_flag=True)
    def train_command(dataset, regime, strength, epochs, lr, batch_size, width, seed, device, data_root, no_progress):
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
        _, record = train_recipe(recipe, data, device, progress=not no_progress)
        if int(os.environ.get("RANK", "0")) != 0:
            return  # under torchrun, rank 0 reports
        click.echo(f"trained {model_name(dataset, recipe.regime, strength)}: test accuracy {record['test_accuracy']:.4f} "
                   f"({record['train_seconds']:.0f} s) → {recipe.identifier}")

    @cli.command("sweep")
    @click.option("--dataset", default="synthetic", show_default=True)
    @click.option("--regime", required=True, help="Registered training regime.")
    @click.option("--strengths", default=None, help="Comma-separated strengths (0 = standard is always added).")
    @click.option("--grid", default=None, help="lo:hi:n, n log-spaced strengths.")
    @click.option("--preset", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True,
                  help="Default grids and schedules: cpu (embedded dataset) or paper (README, \"Reproducing the paper's regimes\").")
    @click.option("--seeds", type=int, default=1, show_default=True, help="Training seeds per strength.")
    @click.option("--seed-offset", type=int, default=0, show_default=True, help="First training seed.")
    @click.option("--num-images", type=int, default=500, show_default=True)
    @click.option("--batch-size", type=int, default=100, show_default=True, help="Evaluation batch size.")
    @click.option("--epochs", type=int, default=None, help="Override the recipe's epochs.")
    @click.option("--epsilons", default=None, help="ε grid for the robustness curves (a,b,c or lo:hi:n).")
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--data-root", default=None, type=click.Path())
    @click.option("--output-dir", default=None, type=click.Path(), help="Default: results/sweep-<dataset>-<regime>.")
    @click.option("--emit-jobs", default=None, type=click.Path(), help="Write one command per (strength, seed) and stop.")
    @click.option("--no-report", is_flag=True, help="Only train and evaluate (for jobs); render later with sweep-report.")
    @click.option("--no-progress", is_flag=True)
    def sweep_command(dataset, regime, strengths, grid, preset, seeds, seed_offset, num_images, batch_size, epochs, epsilons,
                      device, data_root, output_dir, emit_jobs, no_report, no_progress):
        """Sweep a regime's strength: train or reuse, evaluate, plot the three regimes."""
        from pathlib import Path

        from pagbench.console import parse_floats
        from pagbench.errors import PagbenchError
        from pagbench.registry import datasets, trainers

        from .sweep import job_commands, report, run_one, strengths_for, write_jobs

        trainers().get(regime)
        if strengths and grid:
            raise PagbenchError("give --strengths or --grid, not both")
        if seeds < 1:
            raise PagbenchError(f"--seeds must be >= 1, got {seeds}")
        if epochs is not None and epochs <= 0:
            raise PagbenchError(f"--epochs must be positive, got {epochs}")
        chosen = strengths_for(regime, preset, parse_floats(strengths or grid, "--strengths" if strengths else "--grid"))
        output = Path(output_dir or f"results/sweep-{dataset}-{regime}")
        if emit_jobs:
            extra = ["--num-images", str(num_images), "--device", device] + (["--epochs", str(epochs)] if epochs else [])
            extra += ["--epsilons", epsilons] if epsilons else []
            extra += ["--data-root", data_root] if data_root else []
            write_jobs(Path(emit_jobs), job_commands(dataset, regime, chosen, seeds, preset, output, extra))
            return
        data = datasets().get(dataset).factory(data_root)
        evaluation = dict(num_images=num_images, batch_size=batch_size, robustness_epsilons=parse_floats(epsilons, "--epsilons"))
        overrides = {"epochs": epochs} if epochs else {}
        for strength in chosen:
            for seed in range(seed_offset, seed_offset + seeds):
                result = run_one(data, regime, strength, seed, preset, output, evaluation, device, not no_progress, overrides)
                metrics = result["metrics"]
                click.echo(f"{result['config']['model']}: accuracy {metrics['accuracy']['value']:.3f}, "
                           f"score_cosine {metrics.get('score_cosine', {}).get('value', float('nan')):.3f}", err=True)
        if not no_report:
            figure, markdown, table = report(output, regime)
            click.echo(table)
            click.echo(f"wrote {figure} and {markdown}", err=True)

    @cli.command("sweep-report")
    @click.argument("directory", type=click.Path())
    @click.option("--regime", default=None, help="Needed when the directory holds several regimes.")
    def sweep_report_command(directory, regime):
        """Render the figure, table and regime labels from a sweep's result files (merged by file)."""
        from .sweep import report

        figure, markdown, table = report(directory, regime)
        click.echo(table)
        click.echo(f"wrote {figure} and {markdown}", err=True)

    @cli.command("trainers")
    def trainers_command():
        """List registered training regimes."""
        from rich.table import Table

        from pagbench.console import console
        from pagbench.registry import trainers

        table = Table(title="training regimes")
        for column in ("name", "strength", "default sweep", "description"):
            table.add_column(column)
        for entry in trainers():
            table.add_row(entry.name, entry.strength_name, ", ".join(f"{s:g}" for s in entry.default_strengths), entry.description)
        console().print(table)
