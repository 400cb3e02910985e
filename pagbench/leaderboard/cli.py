"""``pagbench leaderboard add|reseal|build|verify|gallery``: click over :mod:`pagbench.leaderboard.store`,
:mod:`pagbench.leaderboard.verify`, :mod:`pagbench.leaderboard.render` and :mod:`pagbench.leaderboard.gallery` (imported
lazily, so ``pagbench --help`` imports neither torch nor matplotlib). ``pagbench gallery`` is
:mod:`pagbench.leaderboard.gallery_cli`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pagbench.errors import PagbenchError

_DIR = click.option("--dir", "root", default="leaderboard", show_default=True, type=click.Path(file_okay=False),
                    help="The leaderboard folder (entries/, galleries/, cards/, README.md).")


_TRUST_CHECKPOINT = click.option("--trust-checkpoint", is_flag=True,
                                 help="Allow entries whose model is a whole pickled module or TorchScript (loading it runs code from the file).")
_TRUST_PICKLE = click.option("--trust-pickle", is_flag=True,
                             help="Allow entries whose score provider unpickles a model file (this runs code stored in it).")


def _console(stderr: bool = False):
    from pagbench.console import console

    return console(stderr)


@click.group("leaderboard")
def leaderboard_group():
    """The leaderboard: validated result entries and the generated board (leaderboard/README.md)."""


@leaderboard_group.command("add")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=True))
@_DIR
def add_command(results, root):
    """Validate RESULTS (result JSON files) and store them as entries under <dir>/entries/<dataset>/.

    The same model and configuration (the entry key) replaces the older entry; a different
    configuration becomes its own row. Nothing is written when any file is invalid.
    """
    from rich.table import Table

    from pagbench.leaderboard.store import add_results

    outcomes = add_results(results, root)
    table = Table(title="leaderboard add")
    for column in ("result", "model", "dataset", "action", "entry"):
        table.add_column(column)
    styles = {"added": "green", "replaced": "green", "unchanged": "dim", "kept-newer": "yellow", "superseded": "yellow"}
    for outcome in outcomes:
        action = outcome.action if outcome.action != "kept-newer" else "kept (stored entry is newer)"
        table.add_row(str(outcome.source), outcome.model, outcome.dataset, f"[{styles[outcome.action]}]{action}", str(outcome.entry_path))
    _console().print(table)
    for outcome in outcomes:
        if outcome.trust_required and outcome.action in ("added", "replaced", "unchanged"):
            flags = " and ".join(outcome.trust_required)
            click.echo(f"note: {outcome.source} was run with {flags}; the entry does not keep that trust "
                       f"(`leaderboard verify` and `leaderboard gallery` ask for {flags} on their command line)", err=True)
    if any(outcome.action in ("added", "replaced") for outcome in outcomes):
        click.echo(f"run `pagbench leaderboard build{'' if root == 'leaderboard' else ' --dir ' + root}` to update the board", err=True)


@leaderboard_group.command("reseal")
@click.argument("entries", nargs=-1, required=True)
@_DIR
def reseal_command(entries, root):
    """Recompute the content_sha256 of ENTRIES (paths, or <dataset>/<entry> under <dir>/entries) after a deliberate edit.

    Every entry carries the SHA-256 of its content; build, verify and gallery refuse an entry that
    does not match. Everything else about the entry is checked as when it is read, and it is
    rebuilt as `leaderboard add` would store it. Resealing vouches for nothing: run
    `pagbench leaderboard verify ENTRY` to check its numbers.
    """
    from pagbench.leaderboard.store import reseal_entries

    for outcome in reseal_entries(entries, root):
        click.echo(f"{outcome.action}: {outcome.path}", err=True)
    click.echo(f"run `pagbench leaderboard verify ENTRY{'' if root == 'leaderboard' else ' --dir ' + root}` to check resealed "
               f"numbers, then `pagbench leaderboard build`", err=True)


@leaderboard_group.command("build")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the committed files differ from what the entries render.")
@_DIR
def build_command(check, root):
    """Render <dir>/README.md (one table per dataset) and the model cards from the entries."""
    from pagbench.leaderboard.render import build
    from pagbench.leaderboard.site import build_site

    site = build_site(root, check=check)  # renders every page before writing any: a bad entry stops here
    report = build(root, check=check)
    report.stale += site.stale
    report.removed += site.removed
    summary = f"{report.entries} entries, {report.datasets} dataset(s)"
    if check:
        if report.clean:
            click.echo(f"leaderboard is up to date ({summary})")
            return
        for relative in report.stale:
            click.echo(f"stale: {root}/{relative}", err=True)
        for relative in report.removed:
            click.echo(f"not generated by any entry: {root}/{relative}", err=True)
        click.echo(f"Error: the leaderboard in {root} differs from what its entries render; run `pagbench leaderboard build`", err=True)
        sys.exit(1)
    for relative in report.stale:
        click.echo(f"wrote {root}/{relative}", err=True)
    for relative in report.removed:
        click.echo(f"removed {root}/{relative}", err=True)
    click.echo(f"leaderboard built ({summary}; {len(report.stale)} file(s) changed)")


@leaderboard_group.command("verify")
@click.argument("entry", required=False)
@click.option("--all", "every", is_flag=True, help="Verify every entry of the board; a summary table; exit 1 if any fails.")
@click.option("--num-images", type=int, default=None, help="Re-evaluate on the first N images (default: the entry's number).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-root", default=None, type=click.Path())
@click.option("--tolerance", type=float, default=None,
              help="Absolute tolerance (default 1e-3); 3 standard errors of the difference are added when N differs.")
@click.option("--seed-results", "seed_results", multiple=True, type=click.Path(exists=True),
              help="Result files or folders of them (e.g. docs/sweeps/synthetic-noise) holding other training seeds of the "
                   "entries' recipes: their spread sets the tolerance for retrained weights (repeatable).")
@click.option("--no-progress", is_flag=True)
@_TRUST_CHECKPOINT
@_TRUST_PICKLE
@_DIR
def verify_command(entry, every, num_images, device, data_root, tolerance, seed_results, no_progress, trust_checkpoint,
                   trust_pickle, root):
    """Re-evaluate ENTRY (a path, or <dataset>/<entry> under <dir>/entries), or every entry with --all,
    and report whether it reproduces.

    Same weights (the model's weights digest equals the entry's): each stored metric must agree
    within 1e-3 + 3·√|se_now² − se_entry²| (the second term is the standard error of the
    difference between nested image sets; zero when N is the entry's). Weights retrained from
    the recipe (digest differs, or the entry records none): within the recipe's seed spread —
    0.1·|value| + 0.02, or 2× the range over its training seeds on the board or in
    --seed-results where that is larger — plus that. The output says which case applied.
    Exit code 0 when every compared metric reproduces, 1 when one does not.
    """
    import warnings

    from pagbench.leaderboard.store import find_entry, load_entries
    from pagbench.leaderboard.verify import VERIFY_ABSOLUTE_TOLERANCE, load_seed_results, verify_entry

    if tolerance is not None and not tolerance >= 0:
        raise PagbenchError(f"--tolerance must be >= 0, got {tolerance}")
    if every == (entry is not None):
        raise PagbenchError("give one ENTRY or --all")
    options = dict(num_images=num_images, device=device, data_root=data_root,
                   absolute_tolerance=VERIFY_ABSOLUTE_TOLERANCE if tolerance is None else tolerance,
                   trust_checkpoint=trust_checkpoint, trust_pickle=trust_pickle)
    if every:
        _verify_every(root, seed_results, options, progress=not no_progress)
        return
    found = find_entry(entry, root)
    pool = (load_entries(root) if (Path(root) / "entries").is_dir() else []) + load_seed_results(seed_results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = verify_entry(found, progress=not no_progress, seed_entries=pool, **options)
    out = _console()
    out.print(_verify_table(report))
    out.print(f"case: {report.case_text}", markup=False, highlight=False)
    for note in report.notes:
        out.print(f"[yellow]note: {_plain(note)}")
    if report.reproduces:
        out.print(f"[green]reproduces: {len(report.compared)} metric(s) within tolerance")
        return
    failed = [check.name for check in report.compared if not check.ok]
    message = f"does not reproduce: {', '.join(failed)}" if failed else "nothing could be compared"
    click.echo(f"{found.path}: {message}", err=True)
    sys.exit(1)


def _plain(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _verify_table(report):
    from rich.table import Table

    from pagbench.leaderboard.render import number

    found = report.entry
    table = Table(title=_plain(f"verify {found.path} ({found.model}: {report.num_images} images, entry has {found.config['num_images']})"))
    for column in ("metric", "entry", "now", "|difference|", "tolerance", "reproduces"):
        table.add_column(column, justify="left" if column in ("metric", "reproduces") else "right")
    for check in report.checks:
        verdict = {True: "[green]yes", False: "[red]NO", None: f"[yellow]not compared ({_plain(check.note)})"}[check.ok]
        table.add_row(_plain(check.name), number(check.stored, 4), number(check.measured, 4),
                      "-" if check.difference is None else f"{check.difference:.2e}",
                      "-" if check.tolerance is None else f"{check.tolerance:.2e}", verdict)
    return table


def _verify_every(root, seed_results, options, progress: bool) -> None:
    """``verify --all``: one line per entry as it finishes, then a summary table; exit 1 if any fails."""
    import time
    import warnings

    from rich.table import Table

    from pagbench.leaderboard.verify import UNKNOWN_WEIGHTS, verify_all

    started = time.perf_counter()

    def done(outcome):
        if outcome.error is not None:
            verdict = f"ERROR: {outcome.error}"
        else:
            verdict = "reproduces" if outcome.reproduces else "DOES NOT REPRODUCE"
            seeds = f"; spread of {outcome.report.seeds + 1} training seeds" if outcome.report.seeds else ""
            verdict += f" ({outcome.report.case}{seeds})"
        click.echo(f"{outcome.entry.path}: {verdict} [{outcome.seconds:.0f} s]", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcomes = verify_all(root, seed_results, on_done=done, progress=progress, **options)
    table = Table(title=_plain(f"verify --all {root}: {len(outcomes)} entries"))
    for column in ("entry", "case", "compared", "failed", "reproduces", "seconds"):
        table.add_column(column, justify="right" if column in ("compared", "seconds") else "left")
    for outcome in outcomes:
        report = outcome.report
        if report is None:
            table.add_row(_plain(outcome.entry.path.name), "-", "-", "-", f"[red]error: {_plain(outcome.error)}", f"{outcome.seconds:.0f}")
            continue
        failed = [check.name for check in report.compared if not check.ok]
        table.add_row(_plain(outcome.entry.path.name), report.case, str(len(report.compared)), _plain(", ".join(failed) or "-"),
                      "[green]yes" if report.reproduces else "[red]NO", f"{outcome.seconds:.0f}")
    out = _console()
    out.print(table)
    undigested = sum(outcome.report is not None and outcome.report.case == UNKNOWN_WEIGHTS for outcome in outcomes)
    if undigested:
        out.print(f"[yellow]note: {undigested} entries record no weights digest (made before entries carried one), so they "
                  f"were compared against the seed spread; re-adding their results records it")
    bad = [outcome for outcome in outcomes if not outcome.reproduces]
    elapsed = time.perf_counter() - started
    if not bad:
        out.print(f"[green]every entry reproduces ({len(outcomes)} entries, {elapsed:.0f} s)")
        return
    click.echo(f"{len(bad)} of {len(outcomes)} entries do not reproduce or could not be verified ({elapsed:.0f} s): "
               + ", ".join(outcome.entry.path.name for outcome in bad), err=True)
    sys.exit(1)


@leaderboard_group.command("gallery")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable; default all on the board).")
@click.option("--num-images", type=int, default=4, show_default=True, help="Rows: the first N images of the split.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--data-root", default=None, type=click.Path())
@click.option("--display", type=click.Choice(["auto", "rgb", "sum"]), default="auto", show_default=True,
              help="How 3-channel gradients are shown: rgb = (ĝ+1)/2, sum = channel sum on a diverging map.")
@_TRUST_CHECKPOINT
@_TRUST_PICKLE
@_DIR
def leaderboard_gallery_command(datasets, num_images, device, data_root, display, trust_checkpoint, trust_pickle, root):
    """Draw each entry's gradient gallery and one overview per dataset (then run `build` to link them)."""
    from pagbench.leaderboard.gallery import draw_galleries

    report = draw_galleries(root, tuple(datasets), num_images=num_images, device=device, data_root=data_root, display=display,
                            trust_checkpoint=trust_checkpoint, trust_pickle=trust_pickle)
    for path in report.written:
        click.echo(f"wrote {path}", err=True)
    for path in report.removed:
        click.echo(f"removed {path}", err=True)
