"""Small helpers shared by the CLI and by plugins' commands: a rich console and option parsing.

Plugins import these from here, never from :mod:`pagbench.cli` (the CLI is a shell over the
library, and a plugin importing it would tie the plugin to the command tree).
"""

from __future__ import annotations

import sys

from pagbench.errors import PagbenchError


def console(stderr: bool = False):
    """A rich console; when not writing to a terminal, wide enough that tables do not wrap."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, width=width)


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``"0.1,1,10"`` → (0.1, 1.0, 10.0); ``"lo:hi:n"`` → n log-spaced values from lo to hi."""
    if text is None:
        return None
    try:
        if ":" in text:
            low, high, count = text.split(":")
            low, high, count = float(low), float(high), int(count)
            if low <= 0 or high <= 0 or count < 1:
                raise ValueError
            from pagbench.evaluation.checks import MAX_GRID_POINTS

            if count > MAX_GRID_POINTS:
                raise PagbenchError(f"{option}: {count} points asked for ({text!r}); at most {MAX_GRID_POINTS}")
            if count == 1:
                return (low,)
            ratio = (high / low) ** (1.0 / (count - 1))
            return tuple(low * ratio**i for i in range(count))
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise PagbenchError(f"{option}: expected comma-separated numbers or lo:hi:n, got {text!r}") from None
    if not values:
        raise PagbenchError(f"{option}: empty list")
    return values
