"""Rich progress bars on stderr (silent when disabled or when stderr is not a terminal)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, fields: dict | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(steps=1, **fields)``; ``fields`` are shown after the bar (e.g. loss)."""
    if not enabled:
        yield lambda steps=1, **_: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(steps: int = 1, **status) -> None:
            text = "  ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in status.items())
            progress.update(task, advance=steps, **({"status": text} if status else {}))

        yield advance
