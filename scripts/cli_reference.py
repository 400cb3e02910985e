"""Regenerate the CLI reference from the click commands (the docs cannot drift).

Writes docs/reference/cli.md (and the block between ``<!-- cli-reference:start -->`` and
``<!-- cli-reference:end -->`` in README.md, while README.md has one): the table of every command (built-in plugins' commands included) and the options of
``pagbench evaluate`` with their defaults and help, both read from ``pagbench.cli.build_cli()``.
The built-in plugin set is loaded (``PAGBENCH_LOAD_PLUGINS``, as the tests do) so installed
third-party plugins never leak into the README.

    python scripts/cli_reference.py          # rewrite what is stale
    python scripts/cli_reference.py --check  # exit 1 when anything is stale (tests/test_cli_reference.py)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGE = ROOT / "docs" / "reference" / "cli.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def _cell(text: str, code: bool = False) -> str:
    """One table cell: one line, ``|`` escaped; outside code spans ``<``/``>`` too (no HTML tags)."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if code else text.replace("<", "&lt;").replace(">", "&gt;")


def _usage(path: str, command) -> str:
    """``pagbench NAME`` with the command's required options and its arguments."""
    import click

    pieces = [path]
    for param in command.params:
        if isinstance(param, click.Argument):
            pieces.append(param.name.upper() + ("..." if param.nargs == -1 else ""))
        elif isinstance(param, click.Option) and param.required:
            pieces.append(f"{param.opts[0]} {param.name.upper().rstrip('S') if param.multiple else param.name.upper()}")
    return " ".join(pieces)


def _commands(group, prefix: str = "pagbench"):
    """(path, command) for every command of ``group``, depth first, sorted by name."""
    import click

    for name in sorted(group.commands):
        command = group.commands[name]
        if getattr(command, "hidden", False):
            continue
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


def _default(param) -> str:
    if param.is_flag or param.multiple or param.default is None:
        return ""
    default = param.default
    return f"`{default}`"


def _metavar(param, command) -> str:
    import click

    if param.is_flag:
        return ""
    if isinstance(param.type, click.Choice):
        return " " + "|".join(param.type.choices)
    return " " + {"INTEGER": "N", "FLOAT": "X", "TEXT": "TEXT", "PATH": "PATH"}.get(param.type.name.upper(), param.type.name.upper())


def options_table(command) -> str:
    """Markdown table of ``command``'s visible options: flag, default, help."""
    import click

    lines = ["| option | default | what it does |", "|---|---|---|"]
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        repeat = " (repeatable)" if param.multiple and "repeatable" not in (param.help or "") else ""
        flag = f"`{param.opts[0]}{_metavar(param, command)}`"
        lines.append(f"| {_cell(flag, code=True)} | {_default(param)} | {_cell((param.help or '') + repeat)} |")
    return "\n".join(lines)


def reference(group) -> str:
    """The generated block (without the markers)."""
    lines = ["| command | what it does |", "|---|---|"]
    for path, command in _commands(group):
        lines.append(f"| `{_cell(_usage(path, command), code=True)}` | {_cell(command.get_short_help_str(limit=200))} |")
    evaluate = group.commands["evaluate"]
    lines += ["", "`pagbench evaluate` options (`pagbench demo` takes the same but the model-loading ones, "
              "`--output` and `--per-image`; every σ and ε is in [0,1] pixel units):", "", options_table(evaluate)]
    return "\n".join(lines)


def build_group():
    """``pagbench.cli.build_cli()`` under the built-in plugin set."""
    from pagbench.extensions.manager import bundled_plugin_names  # the built-ins, as tests/conftest.py loads them

    os.environ.setdefault("PAGBENCH_LOAD_PLUGINS", ",".join(bundled_plugin_names()))
    from pagbench.cli import build_cli

    return build_cli()


def updated(text: str, group) -> str:
    """``text`` (README.md) with the block between the markers regenerated."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"README.md must hold {START} … {END} once")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference(group)}\n{END}{tail}"


def page(group) -> str:
    """docs/reference/cli.md: the whole CLI reference page."""
    return ("# CLI reference\n\nGenerated from the click commands by `python scripts/cli_reference.py` (a test fails when "
            "it is stale); `pagbench COMMAND --help` says the same.\n\n" + reference(group) + "\n")


def targets(group) -> list[tuple[Path, str]]:
    """(path, wanted text): the docs page, and README.md's block while README.md holds the markers."""
    wanted = [(PAGE, page(group))]
    text = README.read_text(encoding="utf-8")
    if START in text:
        wanted.append((README, updated(text, group)))
    return wanted


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = [(path, text) for path, text in targets(build_group())
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    if check:
        for path, _ in stale:
            print(f"{path.relative_to(ROOT)}'s CLI reference is stale: run python scripts/cli_reference.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"{path.relative_to(ROOT)}: CLI reference updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
