"""The ``pagbench`` command line: a thin click layer over the library functions.

User errors (:class:`~pagbench.errors.PagbenchError`) print one line on stderr and exit with
code 2, never a traceback. Plugins add commands through the ``register_commands`` hook.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from pagbench.version import __version__
from pagbench.console import console, parse_floats  # noqa: F401  (re-exported for old callers)
from pagbench.errors import PagbenchError, Terminated


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class PagbenchGroup(click.Group):
    """Turns :class:`PagbenchError` into a one-line message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PagbenchError as error:
            fail(str(error), error.exit_code)
        except Terminated:
            fail("terminated (SIGTERM)", Terminated.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)


@click.group(cls=PagbenchGroup)
@click.version_option(__version__, prog_name="pagbench")
def cli():
    """pagbench: which image classifiers have perceptually-aligned gradients (PAGs), and why.

    Inputs are images in [0,1]; every σ and ε is in [0,1] pixel units.
    """


# ------------------------------------------------------------------------------------- listing
@cli.command("plugins")
def plugins_command():
    """List loaded plugins (with versions and hooks) and plugins that failed to load."""
    from rich.table import Table

    from pagbench.extensions import registry
    from pagbench.extensions.manager import plugin_clashes, plugin_failures, plugin_infos

    for kind in registry.KINDS:  # building each registry finds names registered twice
        registry.build_registry(kind)
    table = Table(title="pagbench plugins")
    for column in ("name", "distribution", "version", "hooks"):
        table.add_column(column)
    for info in plugin_infos():
        table.add_row(info.name, info.distribution or "-", info.version or "-", ", ".join(info.hooks))
    out = console()
    out.print(table)
    failures = plugin_failures()
    if failures:
        broken = Table(title="plugins that failed to load", style="red")
        for column in ("name", "distribution", "error"):
            broken.add_column(column)
        for failure in failures:
            broken.add_row(failure.name, failure.distribution or "-", failure.error)
        out.print(broken)
    clashes = plugin_clashes()
    if clashes:
        clashing = Table(title="names registered by more than one plugin", style="yellow")
        for column in ("kind", "name", "used", "ignored", "note"):
            clashing.add_column(column)
        for clash in clashes:
            note = "override (PAGBENCH_PLUGIN_OVERRIDES)" if clash.overridden else f"PAGBENCH_PLUGIN_OVERRIDES={clash.ignored} to use it"
            clashing.add_row(clash.kind, clash.name, clash.kept, clash.ignored, note)
        out.print(clashing)


@cli.command("models")
def models_command():
    """List registered models and model families with their cards."""
    from rich.table import Table

    from pagbench.extensions.records import ModelFamily
    from pagbench.extensions.registry import models

    registry = models()
    table = Table(title="models")
    for column in ("name", "architecture", "dataset", "regime", "strength", "plugin", "description"):
        table.add_column(column)
    for entry in registry:
        if isinstance(entry, ModelFamily):
            examples = f" (e.g. {', '.join(entry.examples)})" if entry.examples else ""
            table.add_row(entry.name, "-", "-", "-", "-", registry._owners[entry.name], entry.description + examples)
        else:
            card = entry.card
            strength = "-" if card.strength is None else f"{card.strength:g}"
            table.add_row(entry.name, card.architecture, card.dataset, card.regime, strength, registry._owners[entry.name], card.description)
    console().print(table)


def _simple_listing(kind: str, title: str, columns: tuple[str, ...], row):
    from rich.table import Table

    from pagbench.extensions import registry as registries

    registry = registries.build_registry(kind)
    table = Table(title=title)
    for column in columns + ("plugin",):
        table.add_column(column)
    for entry in registry:
        table.add_row(*row(entry), registry._owners[entry.name])
    console().print(table)


@cli.command("datasets")
def datasets_command():
    """List registered datasets."""

    def row(entry):
        shape = "x".join(map(str, entry.image_shape)) if entry.image_shape else "-"
        classes = str(entry.num_classes) if entry.num_classes else "-"
        providers = f"{entry.default_score_provider or '-'} / {entry.default_manifold_provider or '-'}"
        return entry.name, classes, shape, providers, getattr(entry, "default_gradient", None) or "logprob", entry.description

    _simple_listing("datasets", "datasets", ("name", "classes", "shape", "score / manifold", "gradient", "description"), row)


@cli.command("metrics")
def metrics_command():
    """List registered metrics."""

    def row(metric):
        direction = {True: "higher", False: "lower", None: "-"}[metric.higher_is_better]
        return metric.name, direction, ", ".join(sorted(metric.requires)) or "-", metric.description

    _simple_listing("metrics", "metrics", ("name", "better", "requires", "description"), row)


@cli.command("providers")
def providers_command():
    """List score providers and manifold providers."""
    _simple_listing("score_providers", "score providers", ("name", "description"), lambda e: (e.name, e.description))
    _simple_listing("manifold_providers", "manifold providers", ("name", "description"), lambda e: (e.name, e.description))


@cli.command("schema")
def schema_command():
    """Print the JSON Schema (draft 2020-12) of result files."""
    import json

    from pagbench.results.schema import result_schema

    click.echo(json.dumps(result_schema(), indent=2, ensure_ascii=False))


# ------------------------------------------------------------------------------------ evaluate
def _metrics_table(results: list[dict]):
    """One column per model, one row per metric: value ± stderr."""
    from rich.table import Table

    config = results[0]["config"]
    sigma = config.get("sigma_used") if config.get("sigma_used") is not None else config.get("sigma")
    score = (f"score {config['score']} ({config.get('score_provider')}) σ={sigma:g}" if sigma is not None
             else "no score provider")
    table = Table(title=f"PAG metrics on {config['dataset']} "
                  f"({config['num_images']} images, gradient {config['gradient']}, {score})")
    table.add_column("metric")
    table.add_column("better")
    for result in results:
        table.add_column(result["config"]["model"], justify="right")
    names: list[str] = []
    for result in results:
        names += [name for name in result["metrics"] if name not in names]
    for name in names:
        cells = []
        direction = "-"
        for result in results:
            entry = result["metrics"].get(name)
            if entry is None:
                cells.append("n/a")  # the reason is printed under the table
                continue
            direction = {True: "↑", False: "↓", None: ""}[entry["higher_is_better"]]
            if entry["value"] is None:
                cells.append("—")
            else:
                cells.append(f"{entry['value']:.4f} ± {entry['stderr']:.4f}")
        table.add_row(name, direction, *cells)
    return table


def _report(results: list[dict]) -> None:
    out = console()
    out.print(_metrics_table(results))
    reasons = {}
    for result in results:
        for name, reason in result.get("unavailable", {}).items():
            reasons.setdefault((name, reason), []).append(result["config"]["model"])
    for (name, reason), models in reasons.items():
        who = "" if len(models) == len(results) else f" (for {', '.join(models)})"
        out.print(f"[yellow]{name} unavailable{who}: {reason}")
    for result in results:
        for name, record in result["metrics"].items():
            if record.get("reason"):
                out.print(f"[yellow]{name} has n = 0 ({result['config']['model']}): {record['reason']}")
        for message in result.get("warnings", []):
            out.print(f"[yellow]warning ({result['config']['model']}): {message}")


def _apply(params, function):
    """Attach click ``params`` to ``function`` as stacked ``@click.option`` decorators would."""
    if not hasattr(function, "__click_params__"):
        function.__click_params__ = []
    function.__click_params__.extend(reversed(params))
    return function


def evaluation_options(function):
    """The options shared by ``evaluate`` and ``demo``: generated from the ``evaluation`` group of
    :class:`~pagbench.evaluation.options.EvaluationOptions`' declarations, then ``--no-progress``."""
    from pagbench.evaluation.options import click_options

    params = click_options("evaluation") + [click.Option(["--no-progress"], is_flag=True, help="Hide progress bars.")]
    return _apply(params, function)


def model_loading_options(function):
    """Options that reach the model factory (``EvaluationOptions.model_options``; the ``model`` group)."""
    from pagbench.evaluation.options import click_options

    return _apply(click_options("model"), function)


def _options_from(kwargs: dict, model: str):
    from pagbench.evaluation.options import EvaluationOptions, values_from_cli

    metric_values = {}
    for name, declared in _declared_metric_options().items():
        value = kwargs.get(name)
        if declared.type == "floats":
            value = parse_floats(value, declared.cli_flag)
        elif declared.type == "flag":
            value = True if value else None
        metric_values[name] = value
    return EvaluationOptions.create(model=model, **values_from_cli(kwargs), **metric_values)


def _declared_metric_options() -> dict:
    from pagbench.evaluation.options import declared_metric_options

    return declared_metric_options()


_CLICK_TYPES = {"float": float, "int": int, "str": str, "floats": str}


def metric_click_options() -> list[click.Option]:
    """The click options generated from every registered metric's :class:`~pagbench.evaluation.metrics.MetricOption`."""
    params = []
    for name, declared in _declared_metric_options().items():
        if declared.type == "flag":
            params.append(click.Option([declared.cli_flag, name], is_flag=True, default=False, help=declared.help,
                                       hidden=declared.hidden))
        else:
            params.append(click.Option([declared.cli_flag, name], type=_CLICK_TYPES[declared.type], default=None,
                                       help=declared.help, hidden=declared.hidden))
    return params


def add_metric_options(commands) -> None:
    """Insert the metric-declared options into ``commands`` (after ``--metric``), once each; options
    generated earlier for metrics no longer registered (a test's throwaway plugin) are removed."""
    generated = metric_click_options()
    for param in generated:
        param.metric_option = True
    for command in commands:
        command.params = [param for param in command.params if not getattr(param, "metric_option", False)]
        present = {param.name for param in command.params}
        after = next((index for index, param in enumerate(command.params) if param.name == "metric_names"), len(command.params) - 1)
        for offset, param in enumerate(param for param in generated if param.name not in present):
            command.params.insert(after + 1 + offset, param)


def run_evaluations(models: tuple[str, ...], kwargs: dict, output: str | None, output_dir: str, per_image: bool) -> list[dict]:
    """Evaluate each model with a shared geometry cache and write one result file per model."""
    from pagbench.results.documents import check_writable, default_result_path, write_result
    from pagbench.evaluation.runner import evaluate_many

    if output and len(models) > 1:
        raise PagbenchError("--output names one file; use --output-dir with several --model")
    from pagbench.evaluation.checks import check_cache_dir, check_folder

    all_options = [_options_from(kwargs, model) for model in models]
    if output:
        check_writable(output)
    else:
        check_folder(output_dir, "--output-dir")
        for options in all_options:
            check_folder(Path(output_dir) / options.dataset, "--output-dir")
    check_cache_dir()
    results = []
    # every model is loaded before the first evaluation; the dataset, providers and geometry are shared
    for result in evaluate_many(all_options, progress=not kwargs["no_progress"], per_image=per_image):
        path = output or default_result_path(result, output_dir)
        written = write_result(result, path)
        click.echo(f"wrote {written}", err=True)
        results.append(result)
    return results


@cli.command("evaluate")
@click.option("--model", "models", multiple=True, required=True,
              help="A registered model name, or a family's PREFIX:NAME (`pagbench models` lists both; repeatable; geometry is shared).")
@evaluation_options
@model_loading_options
@click.option("--output", default=None, type=click.Path(), help="Result JSON path (one model).")
@click.option("--output-dir", default="results", show_default=True, type=click.Path(), help="Directory for timestamped result files.")
@click.option("--per-image", is_flag=True, help="Also store per-image values in the result.")
def evaluate_command(models, output, output_dir, per_image, **kwargs):
    """Evaluate models' PAG metrics and write one JSON result per model."""
    from pagbench.errors import DegenerateImagesWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateImagesWarning)  # the table reports it; other warnings stay visible
        results = run_evaluations(models, kwargs, output, output_dir, per_image)
    _report(results)


@cli.command("demo")
@click.option("--model", "models", multiple=True, default=None, show_default=True,
              help="Models to compare (zoo models are trained on first use).")
@evaluation_options
@click.option("--output-dir", default="results", show_default=True, type=click.Path())
def demo_command(models, output_dir, **kwargs):
    """The main job on the embedded dataset: the Bayes-optimal model against trained CNNs."""
    from pagbench.errors import DegenerateImagesWarning
    from pagbench.evaluation.options import demo_models

    models = tuple(models) or demo_models(kwargs.get("dataset"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateImagesWarning)  # the table reports it; other warnings stay visible
        results = run_evaluations(models, kwargs, None, output_dir, False)
    _report(results)


from pagbench.leaderboard.cli import leaderboard_group  # noqa: E402  (click only; heavy imports are lazy)
from pagbench.leaderboard.gallery_cli import gallery_command  # noqa: E402  (click only; heavy imports are lazy)

cli.add_command(leaderboard_group)
cli.add_command(gallery_command)

from pagbench.files.assets_cli import assets_group  # noqa: E402  (click only; heavy imports are lazy)

cli.add_command(assets_group)


def _parameter(command: click.Command, name: str) -> click.Parameter:
    return next(param for param in command.params if param.name == name)


def apply_plugin_defaults(group: click.Group) -> None:
    """Defaults that name built-ins come from plugins: ``--dataset`` is the dataset marked
    ``default=True``, ``demo --model`` its ``demo_models``. Without them (no dataset marked, or
    several) the options stay unset and the error comes when a command runs."""
    from pagbench.evaluation.options import default_dataset, demo_models

    try:
        dataset = default_dataset()
    except PagbenchError:
        dataset = None
    for name in ("evaluate", "demo", "gallery"):
        _parameter(group.commands[name], "dataset").default = dataset
    try:
        models = demo_models(dataset) if dataset else None
    except PagbenchError:
        models = None
    _parameter(group.commands["demo"], "models").default = models


def _copy_command(command: click.Command) -> click.Command:
    """A copy of ``command`` (and of a group's sub-commands) whose parameters can be changed or
    added to without touching the module-level original."""
    import copy

    copied = copy.copy(command)
    copied.params = [copy.copy(param) for param in command.params]
    if isinstance(command, click.Group):
        copied.commands = {name: _copy_command(sub) for name, sub in command.commands.items()}
    return copied


def build_cli() -> click.Group:
    """A new root group, with the metrics' options, the plugins' defaults and every plugin's
    commands; the module-level commands are never changed, so each call reflects the plugins
    loaded at that time."""
    from pagbench.extensions.manager import call_hook, get_plugin_manager, record_failure

    manager = get_plugin_manager()
    group = _copy_command(cli)
    try:
        add_metric_options([group.commands["evaluate"], group.commands["demo"]])
    except Exception as error:  # a metric declaring an option twice, differently: report, keep the CLI
        record_failure("metrics", None, error)
    apply_plugin_defaults(group)
    call_hook(manager.hook.register_commands, group, builtins_first=False)
    return group


def _raise_terminated(signum, frame):
    raise Terminated()


def install_signal_handlers() -> None:
    """SIGTERM behaves like SIGINT (see :class:`~pagbench.errors.Terminated`); main thread only."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def main() -> None:
    install_signal_handlers()
    try:
        group = build_cli()
    except PagbenchError as error:
        fail(str(error), error.exit_code)
    except Terminated:
        fail("terminated (SIGTERM)", Terminated.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    try:
        group(prog_name="pagbench")
    except SystemExit as done:
        exit_now(done.code)


def exit_now(code) -> None:
    """Leave the process with ``code`` (a ``SystemExit`` code). Once torch is loaded, the
    interpreter's module-by-module teardown alone takes ~0.4 s (measured on 2 CPU cores), so
    then atexit handlers run (tempfile and weakref finalisers, logging), the streams are flushed
    and the process ends with ``os._exit``; without torch, a plain ``SystemExit``."""
    if "torch" not in sys.modules:
        raise SystemExit(code)
    import atexit
    import os

    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
