"""Sweeps: train (or reuse) one zoo model per (strength, seed), evaluate it, write one result
file per model, then render the figure, table and regime labels from the result files.

Results merge by file: jobs run anywhere (``--emit-jobs`` writes one command per model;
``--launcher submitit`` submits them as a Slurm job array, :mod:`.launchers`) write into the
same directory, and ``pagbench sweep-report DIR`` renders from whatever is there, naming the log
of every submitted job that left no result.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from pagbench.plugin import PagbenchError
from pagbench.plugin import write_atomic

from .recipes import GRIDS, model_name, recipe_for


def strengths_for(regime: str, preset: str, strengths: tuple[float, ...] | None) -> list[float]:
    """The strengths to sweep, 0 (the standard model) first."""
    if strengths is None:
        grid = GRIDS.get(preset, {}).get(regime)
        if grid is None:
            raise PagbenchError(f"preset {preset!r} has no grid for regime {regime!r}; give --strengths or --grid")
        strengths = grid
    if not strengths:
        raise PagbenchError("the strength grid is empty")
    from pagbench.plugin import card_strength

    for value in strengths:
        card_strength(value, "strengths")  # finite and >= 0, as a model card's strength
    return sorted({0.0, *map(float, strengths)})


def result_path(output_dir: Path, name: str) -> Path:
    return Path(output_dir) / f"{name}.json"


def run(dataset, regime: str, strengths: list[float], seeds: range, preset: str, output_dir: Path, evaluation: dict, device: str,
        progress: bool, overrides: dict, training_options=None):
    """Train (or reuse) the model of every (strength, seed), then evaluate them all through the
    runner (one dataset, one set of providers and one geometry cache for every model), writing
    each result file as it is ready; yields the results.

    The recipe reaches the zoo's factory as model options (``preset``, ``epochs``), so each
    result's model card names the recipe and its ``provenance["training_recipe"]``."""
    from pagbench.plugin import EvaluationOptions
    from pagbench.plugin import write_result
    from pagbench.plugin import evaluate_many

    from .build import obtain

    all_options = []
    for strength in strengths:
        for seed in seeds:
            recipe = recipe_for(dataset.name, regime, strength, seed=seed, preset=preset, **overrides)
            obtain(recipe, dataset, device, progress, training_options)  # train with this command's progress setting
            model_options = {"preset": preset, **{key: str(value) for key, value in overrides.items()}}
            all_options.append(EvaluationOptions(model=model_name(dataset.name, regime, strength, seed), dataset=dataset.name,
                                                 device=device, model_options=model_options, **evaluation))
    for result in evaluate_many(all_options, progress=progress):
        write_result(result, result_path(output_dir, result["config"]["model"]))
        yield result


def load_results(output_dir: Path) -> list[dict]:
    from pagbench.plugin import load_result

    paths = sorted(Path(output_dir).glob("*.json"))
    if not paths:
        raise PagbenchError(f"no result files in {output_dir}")
    return [load_result(path) for path in paths]


def report(output_dir: Path, regime: str | None = None) -> tuple[Path, Path, str]:
    """Render ``sweep-<regime>.png`` and ``sweep-<regime>.md`` into ``output_dir`` (the jobs
    that left no result: :func:`.launchers.missing_results`)."""
    from .sweep_report import collect, plot, render_markdown

    results = load_results(output_dir)
    dataset, regime, rows = collect(results, regime)
    epsilon = None
    for result in results:
        epsilon = result.get("metric_settings", {}).get("manifold_robustness", {}).get("headline_epsilon", epsilon)
    figure = plot(dataset, regime, rows, Path(output_dir) / f"sweep-{regime}.png", headline_epsilon=epsilon)
    table = render_markdown(dataset, regime, rows)
    markdown = Path(output_dir) / f"sweep-{regime}.md"
    write_atomic(markdown, lambda stream: stream.write(table.encode()))
    return figure, markdown, table


def job_commands(dataset: str, regime: str, strengths: list[float], seeds: int, preset: str, output_dir: Path, extra: list[str]) -> list[str]:
    """One ``pagbench sweep`` command per (strength, seed), for any scheduler."""
    commands = []
    for strength in strengths:
        for seed in range(seeds):
            arguments = ["pagbench", "sweep", "--dataset", dataset, "--regime", regime, "--strengths", f"{strength:g}",
                         "--seed-offset", str(seed), "--seeds", "1", "--preset", preset, "--output-dir", str(output_dir), "--no-report", *extra]
            commands.append(shlex.join(arguments))
    return commands


def write_jobs(path: Path, commands: list[str]) -> None:
    text = "\n".join(commands) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode()))
    print(f"wrote {len(commands)} jobs to {path}; run them anywhere, then: pagbench sweep-report DIR", file=sys.stderr)
