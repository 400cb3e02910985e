"""``pagbench train``, ``sweep``, ``sweep-report`` and ``trainers``: the zoo's commands."""

from __future__ import annotations

import os

import click


def training_switches(command):
    """The GPU-efficiency switches of ``train`` and ``sweep`` (:class:`.training.TrainingOptions`
    and the recipe's ``amp``). Defaults keep CPU results bit-identical to earlier releases."""
    switches = [
        click.option("--device-data/--no-device-data", default=None,
                     help="Keep the training split on the device, crop and flip there (default: on for in-memory datasets)."),
        click.option("--channels-last", is_flag=True, help="NHWC memory format (a GPU speed-up)."),
        click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default="off", show_default=True,
                     help="Autocast; changes results, so it is part of the recipe id when not off (fp16: not with gnorm)."),
        click.option("--compile", "compile_model", is_flag=True, help="torch.compile the network (not with gnorm)."),
        click.option("--deterministic/--no-deterministic", default=None,
                     help="cuDNN deterministic kernels, no autotuning or TF32 (default: on for CPU, off for CUDA)."),
    ]
    for switch in reversed(switches):
        command = switch(command)
    return command


def _training_options(device_data, channels_last, compile_model, deterministic):
    from .training import TrainingOptions

    return TrainingOptions(device_data=device_data, channels_last=channels_last, compile=compile_model, deterministic=deterministic)


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
    @training_switches
    def train_command(dataset, regime, strength, epochs, lr, batch_size, width, seed, device, data_root, no_progress,
                      device_data, channels_last, amp, compile_model, deterministic):
        """Train a ResNet18 with a regime; weights and recipe go to the model store."""
        from pagbench.plugin import PagbenchError
        from pagbench.plugin import datasets, trainers

        if not strength >= 0:
            raise PagbenchError(f"--strength must be >= 0, got {strength}")
        trainers().get(regime)
        from .build import train_recipe
        from .recipes import model_name, recipe_for

        recipe = recipe_for(dataset, regime, strength, epochs=epochs, lr=lr, batch_size=batch_size, width=width, seed=seed,
                            amp=None if amp == "off" else amp)
        recipe.validate()
        options = _training_options(device_data, channels_last, compile_model, deterministic)
        data = datasets().get(dataset).factory(data_root)
        _, record = train_recipe(recipe, data, device, progress=not no_progress, options=options)
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
    @click.option("--sigmas", default=None, help="σ grid of the score for alignment curves (a,b,c or lo:hi:n; see evaluate --sigmas).")
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--data-root", default=None, type=click.Path())
    @click.option("--output-dir", default=None, type=click.Path(), help="Default: results/sweep-<dataset>-<regime>.")
    @click.option("--emit-jobs", default=None, type=click.Path(), help="Write one command per (strength, seed) and stop.")
    @click.option("--launcher", default="local", show_default=True,
                  help="local (in this process) or submitit (a Slurm job array; pip install 'pagbench[slurm]').")
    @click.option("--cluster", default=None, help="submitit: slurm, local, debug or auto (default: slurm when sbatch exists, else local).")
    @click.option("--max-parallel", type=int, default=None, help="submitit: jobs of the array running at once (default 64).")
    @click.option("--gpus-per-job", type=int, default=None, help="submitit: GPUs per job (default: 1 with --device cuda, else 0).")
    @click.option("--cpus-per-job", type=int, default=None,
                  help="submitit: CPU cores per job (default 4, or the partition's largest node when smaller).")
    @click.option("--mem-per-job", "mem_gb", type=float, default=None, help="submitit: memory per job in GB (default: the cluster's).")
    @click.option("--time", "time_minutes", type=int, default=None, help="submitit: minutes per job; at the limit it is requeued and resumes (default 1440).")
    @click.option("--partition", default=None, help="submitit: Slurm partition.")
    @click.option("--wait/--no-wait", default=None, help="submitit: wait for the jobs and render (default: wait except on Slurm).")
    @click.option("--no-report", is_flag=True, help="Only train and evaluate (for jobs); render later with sweep-report.")
    @click.option("--no-progress", is_flag=True)
    @training_switches
    def sweep_command(dataset, regime, strengths, grid, preset, seeds, seed_offset, num_images, batch_size, epochs, epsilons,
                      sigmas, device, data_root, output_dir, emit_jobs, launcher, cluster, max_parallel, gpus_per_job, cpus_per_job,
                      mem_gb, time_minutes, partition, wait, no_report, no_progress, device_data, channels_last, amp, compile_model,
                      deterministic):
        """Sweep a regime's strength: train or reuse, evaluate, plot the three regimes."""
        from pathlib import Path

        from pagbench.plugin import parse_floats
        from pagbench.plugin import PagbenchError
        from pagbench.plugin import datasets, trainers

        from .recipes import recipe_for
        from .launchers import SubmititSettings, SweepJob, check_launcher
        from .sweep import job_commands, report, run, strengths_for, write_jobs

        trainers().get(regime)
        if strengths is not None and grid is not None:
            raise PagbenchError("give --strengths or --grid, not both")
        if seeds < 1:
            raise PagbenchError(f"--seeds must be >= 1, got {seeds}")
        if epochs is not None and epochs <= 0:
            raise PagbenchError(f"--epochs must be positive, got {epochs}")
        given, flag = (strengths, "--strengths") if strengths is not None else (grid, "--grid")
        chosen = strengths_for(regime, preset, parse_floats(given, flag))  # an empty --strengths '' is an error
        output = Path(output_dir or f"results/sweep-{dataset}-{regime}")
        overrides = {"epochs": epochs} if epochs else {}
        if amp != "off":
            overrides["amp"] = amp
        options = _training_options(device_data, channels_last, compile_model, deterministic)
        for strength in chosen:  # recipe errors (e.g. fp16 with gnorm) before anything runs
            recipe_for(dataset, regime, strength, seed=seed_offset, preset=preset, **overrides).validate()
        if compile_model and regime == "gnorm":
            raise PagbenchError("--compile excludes gnorm: compiled graphs do not support the double backward of its input-gradient penalty")
        # the evaluation's options are checked as `evaluate` checks them, before jobs are written or anything trains
        # (an empty --sigmas '' or --epsilons '' is an error, not dropped)
        evaluation = dict(num_images=num_images, batch_size=batch_size, robustness_epsilons=parse_floats(epsilons, "--epsilons"))
        if sigmas is not None:
            evaluation["sigmas"] = parse_floats(sigmas, "--sigmas")
        from pagbench.plugin import EvaluationOptions
        from pagbench.plugin import check_writable_file
        from pagbench.plugin import check_folder

        EvaluationOptions(model="-", dataset=dataset, **evaluation).validate()  # the device is the jobs' to check
        if not emit_jobs and not no_report and max(chosen) <= 0:
            raise PagbenchError("a sweep figure needs at least one positive strength (--strengths gave only 0); "
                                "add one, or pass --no-report to only train and evaluate")
        if emit_jobs:
            check_writable_file(emit_jobs, "--emit-jobs")
        else:
            check_folder(output, "--output-dir")
        if emit_jobs:
            extra = ["--num-images", str(num_images), "--device", device] + (["--epochs", str(epochs)] if epochs else [])
            extra += ["--epsilons", epsilons] if epsilons is not None else []
            extra += ["--sigmas", sigmas] if sigmas is not None else []
            extra += ["--data-root", data_root] if data_root else []
            extra += _switch_arguments(device_data, channels_last, amp, compile_model, deterministic)
            write_jobs(Path(emit_jobs), job_commands(dataset, regime, chosen, seeds, preset, output, extra))
            return
        settings = SubmititSettings(**{key: value for key, value in dict(
            cluster=cluster, max_parallel=max_parallel, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, mem_gb=mem_gb,
            time_minutes=time_minutes, partition=partition, wait=wait).items() if value is not None})
        slurm_given = any(value is not None for value in (cluster, max_parallel, gpus_per_job, cpus_per_job, mem_gb, time_minutes, partition, wait))
        resolved = check_launcher(launcher, settings, device, slurm_given)
        seed_range = range(seed_offset, seed_offset + seeds)
        if launcher == "submitit":
            jobs = [SweepJob(dataset=dataset, regime=regime, strength=strength, seed=seed, preset=preset, output_dir=str(output),
                             device=device, data_root=data_root, evaluation=evaluation, overrides=overrides,
                             training_options=options.as_dict()) for strength in chosen for seed in seed_range]
            _submit_and_merge(jobs, resolved, settings, output, regime, no_report)
            return
        data = datasets().get(dataset).factory(data_root)
        evaluation["data_root"] = data_root
        for result in run(data, regime, chosen, seed_range, preset, output, evaluation, device, not no_progress, overrides, options):
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
        """Render the figure, table and regime labels from a sweep's result files (merged by file);
        name the log of every submitted job that left no result (exit 1 when there is one)."""
        from .launchers import missing_results
        from .sweep import report

        missing = missing_results(directory)
        for line in missing:
            click.echo(line, err=True)
        figure, markdown, table = report(directory, regime)
        click.echo(table)
        click.echo(f"wrote {figure} and {markdown}", err=True)
        if missing:
            raise SystemExit(1)

    @cli.command("trainers")
    def trainers_command():
        """List registered training regimes."""
        from rich.table import Table

        from pagbench.plugin import console
        from pagbench.plugin import trainers

        table = Table(title="training regimes")
        for column in ("name", "strength", "default sweep", "description"):
            table.add_column(column)
        for entry in trainers():
            table.add_row(entry.name, entry.strength_name, ", ".join(f"{s:g}" for s in entry.default_strengths), entry.description)
        console().print(table)


def _switch_arguments(device_data, channels_last, amp, compile_model, deterministic) -> list[str]:
    """The training switches as command-line arguments (for ``--emit-jobs``)."""
    arguments = [] if device_data is None else ["--device-data" if device_data else "--no-device-data"]
    arguments += ["--channels-last"] if channels_last else []
    arguments += ["--amp", amp] if amp != "off" else []
    arguments += ["--compile"] if compile_model else []
    arguments += [] if deterministic is None else ["--deterministic" if deterministic else "--no-deterministic"]
    return arguments


def _fail_on_missing(missing: list[str]) -> None:
    for line in missing:
        click.echo(line, err=True)
    if missing:
        raise SystemExit(1)


def _submit_and_merge(jobs, cluster, settings, output, regime, no_report) -> None:
    """Submit the sweep's jobs as one array; on a local or debug cluster (or with --wait) wait
    for them, then merge their result files as ``sweep-report`` does."""
    from .launchers import missing_results, submit, wait
    from .sweep import report

    handles = submit(jobs, cluster, settings, output, jobs[0].device)
    ids = sorted({str(handle.job_id).split("_")[0] for handle in handles})
    click.echo(f"submitted {len(jobs)} jobs ({cluster}: {', '.join(ids)}); logs in {output / 'submitit'}", err=True)
    if not (settings.wait if settings.wait is not None else cluster != "slurm"):
        click.echo(f"when they have finished: pagbench sweep-report {output}", err=True)
        return
    wait(jobs, handles, output)
    missing = missing_results(output)
    if not no_report and len(missing) < len(jobs):
        figure, markdown, table = report(output, regime)
        click.echo(table)
        click.echo(f"wrote {figure} and {markdown}", err=True)
    _fail_on_missing(missing)
