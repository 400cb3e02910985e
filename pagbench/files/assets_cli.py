"""``pagbench assets``: list, fetch, verify and copy by hand the files runs need (:mod:`pagbench.files.assets`).

Lists whatever the plugins declare (``register_assets``); the core names none of them.
"""

from __future__ import annotations

import sys

import click

SELECTION = [
    click.option("--dataset", default=None, help="Only the assets this dataset needs."),
    click.option("--metric", "metrics", multiple=True, help="Only the assets these metrics need (repeatable)."),
    click.option("--root", type=click.Path(file_okay=False), default=None,
                 help="Asset root (default: $PAGBENCH_ASSETS_DIR, else <cache dir>/assets)."),
    click.argument("names", nargs=-1),
]


def _selection(function):
    for decorator in reversed(SELECTION):
        function = decorator(function)
    return function


def _size(entry) -> str:
    if entry.size is None:
        return "?"
    text = f"{entry.size / 1e6:,.1f} MB" if entry.size >= 1e5 else f"{entry.size:,} B"
    return text if entry.size_exact else f"≈{text}"


def _hash(entry) -> str:
    from pagbench.files.assets import expected_hash

    expected = expected_hash(entry)
    if expected is None:
        return "none yet (pinned on first download)"
    algorithm, value, how = expected
    return f"{algorithm}:{value} ({how})"


def _chosen(dataset, metrics, names):
    from pagbench.files.assets import select
    from pagbench.errors import PagbenchError

    from pagbench.extensions import registry

    if dataset is not None:
        registry.datasets().get(dataset)  # unknown name: one line with the closest names
    if metrics:
        table = registry.metrics()
        for name in metrics:
            table.get(name)
    chosen = select(dataset, metrics, names)
    if not chosen:
        raise PagbenchError("no asset is declared for this selection" + (f" (dataset {dataset})" if dataset else ""))
    return chosen


@click.group("assets")
def assets_group():
    """Files runs need (dataset archives, network pickles, backbone weights): list, fetch, verify, manifest."""


@assets_group.command("list")
@_selection
def list_command(dataset, metrics, root, names):
    """Table of assets: source URL, size, hash, local path and status (present/missing/damaged/partial)."""
    from rich.table import Table
    from rich.text import Text

    from pagbench.files.assets import local_path, status
    from pagbench.console import console

    table = Table(title="assets")
    for column in ("name", "source", "size", "hash", "local path", "status"):
        table.add_column(column, overflow="fold")
    for entry in _chosen(dataset, metrics, names):  # Text: paths and URLs are shown as they are, never as markup
        cells = (entry.name, entry.url or f"manual: {entry.manual}", _size(entry), _hash(entry), str(local_path(entry, root)),
                 status(entry, root))
        table.add_row(*(Text(cell) for cell in cells))
    console().print(table)


@assets_group.command("fetch")
@_selection
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def fetch_command(dataset, metrics, root, names, no_progress):
    """Download the selected assets that are missing (resuming partial downloads); check the rest."""
    from pagbench.files.assets import download, local_path, status, verify
    from pagbench.errors import PagbenchError

    left = []
    for entry in _chosen(dataset, metrics, names):
        state = status(entry, root)
        path = local_path(entry, root)
        if state == "present":
            verify(entry, root)
            click.echo(f"{entry.name}: present at {path}")
            continue
        if state == "damaged":
            raise PagbenchError(f"asset {entry.name}: {path} is damaged (size or hash differs); delete it and run again")
        if not entry.url:
            click.echo(f"{entry.name}: manual only — {entry.manual}; put {entry.filename} at {path}", err=True)
            left.append(entry.name)
            continue
        target = download(entry, root, progress=not no_progress)
        click.echo(f"{entry.name}: fetched to {target}")
    if left:
        click.echo(f"still missing (manual): {', '.join(left)}", err=True)
        sys.exit(1)


@assets_group.command("verify")
@_selection
def verify_command(dataset, metrics, root, names):
    """Re-hash the selected assets that are present; exit 1 when one is damaged."""
    from pagbench.files.assets import local_path, verify
    from pagbench.errors import PagbenchError

    damaged = 0
    for entry in _chosen(dataset, metrics, names):
        path = local_path(entry, root)
        if not path.is_file():
            click.echo(f"{entry.name}: missing ({path})")
            continue
        try:
            digest = verify(entry, root)
        except PagbenchError as error:
            damaged += 1
            click.echo(f"{entry.name}: DAMAGED — {error}")
            continue
        click.echo(f"{entry.name}: ok (sha256 {digest})")
    if damaged:
        sys.exit(1)


@assets_group.command("manifest")
@_selection
def manifest_command(dataset, metrics, root, names):
    """For an air-gapped cluster: the files to copy, their hashes and destinations (copy-pasteable)."""
    import shlex

    from pagbench.files.assets import asset_root, expected_hash, local_path

    base = root or asset_root()
    lines = ["# pagbench assets manifest: fetch each URL on a machine with network access, check its hash,",
             "# then copy it to the destination on the cluster. To keep the files elsewhere:",
             f"#   export PAGBENCH_ASSETS_DIR=/your/dir   (now: {base})", ""]
    for entry in _chosen(dataset, metrics, names):
        expected = expected_hash(entry)
        path = local_path(entry, root)
        lines.append(f"# {entry.name}: {entry.description} ({_size(entry)}; licence: {entry.licence or 'see source'})")
        if entry.url:
            lines.append(f"curl -L --fail -C - -o {shlex.quote(entry.filename)} {shlex.quote(entry.url)}")
        else:
            lines.append(f"# manual only: {entry.manual}")
        if expected:
            algorithm, value, how = expected
            tool = "sha256sum" if algorithm == "sha256" else "md5sum"
            if len(value) == {"sha256": 64, "md5": 32}[algorithm]:
                lines.append(f"echo {shlex.quote(f'{value}  {entry.filename}')} | {tool} -c -   # {how}")
            else:
                lines.append(f"{tool} {shlex.quote(entry.filename)}   # must start with {value} ({how})")
        else:
            lines.append(f"sha256sum {shlex.quote(entry.filename)}   # no published hash: pagbench pins the first copy it sees")
        lines.append(f"mkdir -p {shlex.quote(str(path.parent))} && cp {shlex.quote(entry.filename)} {shlex.quote(str(path))}")
        lines.append("")
    lines.append("# then, on the cluster: pagbench assets verify" + (f" --dataset {dataset}" if dataset else ""))
    click.echo("\n".join(lines))
