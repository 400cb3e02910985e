"""Render the hook reference from the hook specifications' docstrings (the single source).

Writes, between ``<!-- hook-reference:start -->`` and ``<!-- hook-reference:end -->`` in
CONTRIBUTING.md, and as the whole page docs/reference/hooks.md, one section per hook of
``pagbench/extensions/hookspecs.py`` in source order: its signature and its docstring (markdown; reST
roles such as ``:class:`x``` and double backticks are shown as code).

    python scripts/hook_reference.py          # rewrite both
    python scripts/hook_reference.py --check  # exit 1 when either is stale (tests/test_hooks.py)
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
PAGE = ROOT / "docs" / "reference" / "hooks.md"
START, END = "<!-- hook-reference:start -->", "<!-- hook-reference:end -->"
INTRO = ("Every hook takes a `register` callback (or, for commands, the click group). This reference is generated "
         "from the docstrings in `pagbench/extensions/hookspecs.py` (`python scripts/hook_reference.py`); a test fails when it "
         "is stale, when a docstring does not name each argument of its hook, or when a hook has no "
         "`test_hook_<name>` in `tests/test_hooks.py`.")


def hooks() -> list[tuple[str, list[str], str]]:
    """(name, argument names, docstring) of every hook specification, in source order."""
    sys.path.insert(0, str(ROOT))
    from pagbench.extensions import hookspecs

    found = []
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("register_"):
            found.append((inspect.getsourcelines(function)[1], name, list(inspect.signature(function).parameters),
                          inspect.cleandoc(function.__doc__ or "")))
    return [(name, arguments, doc) for _, name, arguments, doc in sorted(found)]


def _markdown(doc: str) -> str:
    """reST inline markup as markdown code spans."""
    doc = re.sub(r":(?:class|func|mod|meth|attr):`~?([^`]+)`", r"`\1`", doc)
    return re.sub(r"``([^`]+)``", r"`\1`", doc)


def sections() -> str:
    parts = [INTRO, ""]
    for name, arguments, doc in hooks():
        parts += [f"### `{name}({', '.join(arguments)})`", "", _markdown(doc), ""]
    return "\n".join(parts).rstrip() + "\n"


def contributing_text(current: str) -> str:
    if START not in current or END not in current:
        raise SystemExit(f"CONTRIBUTING.md lacks the {START} / {END} markers")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{sections()}{END}{tail}"


def page_text() -> str:
    return "# Hook reference\n\n" + sections()


def main(argv: list[str]) -> int:
    check = "--check" in argv
    targets = [(CONTRIBUTING, contributing_text(CONTRIBUTING.read_text(encoding="utf-8"))), (PAGE, page_text())]
    stale = [path for path, text in targets if not path.is_file() or path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python scripts/hook_reference.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
