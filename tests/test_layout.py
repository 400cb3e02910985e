"""The layout rules of CONTRIBUTING.md's map, checked statically over ``pagbench/`` (the core):

- the core never imports a built-in plugin (``pagbench_plugins``) and no plugin imports the CLI;
- there are no import cycles inside the core (every import counts, lazy ones too);
- the core names no built-in plugin, dataset, metric, model or provider as a string literal: the
  names come from the registries at test time, so a new built-in is covered without editing this
  file. ``KNOWN`` lists the literals still to be removed (issue 11); it may only shrink.
"""

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "pagbench"
PLUGINS = ROOT / "plugins"

#: (core file, literal) pairs still to be replaced by hooks or entry metadata. Remove a pair when
#: its literal goes; the test fails both on a new literal and on a pair that no longer occurs.
KNOWN = {
    ('pagbench/extensions/records.py', 'standard'),
}


def _modules(folder: Path, package: str) -> dict[str, Path]:
    modules = {}
    for path in folder.rglob("*.py"):
        parts = (package,) + path.relative_to(folder).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules) -> set[str]:
    """Modules of ``modules`` that ``name`` imports anywhere in its body (lazy imports included);
    ``from . import x`` counts as importing the submodule ``x``, not the package."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return found


def _all_imports(folder: Path, package: str) -> dict[str, set[str]]:
    modules = _modules(folder, package)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_core_never_imports_a_built_in_plugin():
    offenders = {name: sorted(target for target in targets if target.split(".")[0] == "pagbench_plugins")
                 for name, targets in _all_imports(CORE, "pagbench").items()}
    assert {name: targets for name, targets in offenders.items() if targets} == {}
    mentions = [str(path.relative_to(ROOT)) for path in CORE.rglob("*.py") if "pagbench_plugins" in path.read_text()]
    assert mentions == []  # not even through importlib and a string


def test_plugins_never_import_the_cli():
    offenders = {name: sorted(target for target in targets if target in ("pagbench.cli", "pagbench.leaderboard.cli"))
                 for name, targets in _all_imports(PLUGINS, "pagbench_plugins").items()}
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_the_core():
    graph = {name: {target for target in targets if target != name} for name, targets in _all_imports(CORE, "pagbench").items()}
    assert _cycles(graph) == []


def _built_in_names() -> dict[str, str]:
    """name → what it is, for everything the built-in plugins register (families by name)."""
    from pagbench.extensions import registry
    from pagbench.extensions.manager import plugin_infos

    names = {}
    builtin = {info.name for info in plugin_infos() if (info.distribution or "") == "pagbench"}
    for kind in registry.KINDS:
        table = registry.build_registry(kind)
        for entry in table:
            if table._owners[entry.name] in builtin:
                names[entry.name] = kind
    return names  # plugin (entry-point) names are words like "metrics": the import test covers plugins


def _literals(path: Path) -> set[str]:
    """String constants of ``path`` that are not docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def test_the_core_names_no_built_in_as_a_string_literal():
    names = _built_in_names()
    assert {"synthetic", "bayes", "score_cosine", "analytic"} <= set(names)  # the registries were read
    found = set()
    for path in sorted(CORE.rglob("*.py")):
        for literal in _literals(path) & set(names):
            found.add((str(path.relative_to(ROOT)), literal))
    new = sorted(found - set(KNOWN))
    gone = sorted(set(KNOWN) - found)
    assert new == [], "the core names built-ins (take them from a hook or entry metadata): " + repr(new)
    assert gone == [], "remove these from KNOWN, they no longer occur: " + repr(gone)


# ------------------------------------------------------------------ the public API for plugins
EXAMPLE = ROOT / "examples" / "pagbench-example-plugin"


def _core_imports(folder: Path, base: Path = ROOT) -> list[tuple[str, int, str, tuple[str, ...]]]:
    """(file relative to ``base``, line, module, names) of every import of pagbench in ``folder``
    (lazy ones too)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "pagbench" or alias.name.startswith("pagbench."):
                        found.append((str(path.relative_to(base)), node.lineno, alias.name, ()))
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module and (
                    node.module == "pagbench" or node.module.startswith("pagbench.")):
                found.append((str(path.relative_to(base)), node.lineno, node.module, tuple(a.name for a in node.names)))
    return found


def test_plugins_and_the_example_import_only_the_public_api():
    import pagbench
    import pagbench.plugin as public

    offenders = []
    for folder in (PLUGINS, EXAMPLE):
        for where, line, module, names in _core_imports(folder):
            allowed = (public.__all__ if module == "pagbench.plugin" else pagbench.__all__ if module == "pagbench" else ())
            if not names or any(name not in allowed for name in names):
                offenders.append(f"{where}:{line}: {module} {names}")
    assert offenders == [], "plugins import pagbench only through pagbench.plugin (or the top-level API): " + repr(offenders)
    distinct = {module for folder in (PLUGINS, EXAMPLE) for _, _, module, _ in _core_imports(folder)}
    assert distinct <= {"pagbench", "pagbench.plugin"}


def _cross_plugin_imports(base: Path = PLUGINS) -> list[str]:
    """``file:line: target`` for each import in one built-in plugin package of another
    (``pagbench_plugins.X`` from outside X, or ``..X`` relative)."""
    found = []
    for path in sorted(base.rglob("*.py")):
        own = path.relative_to(base).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""] if not node.level else ([] if node.level == 1 else [f"..{node.module or ''}"])
            else:
                continue
            for target in targets:
                parts = target.lstrip(".").split(".") if target.startswith("..") else target.split(".")[1:2] if target.startswith("pagbench_plugins.") else []
                if parts and parts[0] and parts[0] != own:
                    found.append(f"{path.relative_to(base)}:{node.lineno}: {target}")
    return found


def test_a_plugin_reaches_another_only_through_the_registries(tmp_path):
    assert _cross_plugin_imports() == [], "built-in plugins import each other's modules (use the registries)"
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "training.py").write_text("def f():\n    from pagbench_plugins.datasets.splits import Uint8Split\n"
                                                  "    from pagbench_plugins.zoo.build import architecture\n")
    assert _cross_plugin_imports(tmp_path) == ["zoo/training.py:2: pagbench_plugins.datasets.splits"]


def test_the_import_check_catches_a_private_import(tmp_path):
    (tmp_path / "bad.py").write_text("def f():\n    from pagbench.evaluation.runner import evaluate_many\n")
    assert _core_imports(tmp_path, tmp_path) == [("bad.py", 2, "pagbench.evaluation.runner", ("evaluate_many",))]


def test_every_public_name_resolves_and_facades_expose_only_their_attributes():
    import pagbench.plugin as public

    for name in public.__all__:
        assert getattr(public, name) is not None, name
    assert public.assets.resolve is not None
    try:
        public.paths.write_atomic
    except AttributeError as error:
        assert "no public attribute 'write_atomic'" in str(error)
    else:
        raise AssertionError("a facade exposed an attribute it does not list")


def test_importing_the_public_api_imports_no_heavy_library():
    import subprocess
    import sys

    code = "import sys, pagbench.plugin; print([m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == "[]"


# --------------------------------------------------- built-in names inside strings and identifiers
#: Libraries that built-in plugins wrap: the core must not know them either.
LIBRARIES = ("timm", "torchvision", "robustbench", "robustness", "lpips", "alexnet", "diffusers", "edm", "captum",
             "submitit", "cifar", "imagenet", "mnist", "madry", "nvidia", "nvlabs")
#: Built-in names that are also the core's own plain words: searched in string literals only, not in
#: identifiers (``noise_levels``, ``robustness_epsilons`` and ``NOISE_STD`` are core concepts).
PLAIN_WORDS = {"noise", "robustness", "standard", "accuracy", "gradient", "denoiser", "analytic", "checkpoint"}
#: (core file, word) pairs still to be moved into the plugins that own them (issue 19). It may only
#: shrink: the test fails on a new pair and on a listed pair that no longer occurs.
KNOWN_MENTIONS = {
    ('pagbench/evaluation/options.py', 'noise'),
    ('pagbench/evaluation/runner.py', 'accuracy'),
    ('pagbench/evaluation/sanity.py', 'noise'),
    ('pagbench/evaluation/sanity.py', 'robustness'),
    ('pagbench/extensions/records.py', 'standard'),
    ('pagbench/leaderboard/cli.py', 'noise'),
    ('pagbench/leaderboard/cli.py', 'standard'),
    ('pagbench/leaderboard/cli.py', 'synthetic'),
    ('pagbench/leaderboard/gallery_cli.py', 'noise'),
    ('pagbench/leaderboard/render.py', 'standard'),
    ('pagbench/leaderboard/site.py', 'standard'),
    ('pagbench/results/schema.py', 'standard'),
}


def _mentions(path: Path, words: set[str]) -> set[str]:
    """Words of ``words`` found, case-insensitively and as whole words (``_`` and ``-`` separate words),
    in the non-docstring string literals of ``path`` and, but for PLAIN_WORDS, in its identifiers."""
    import re

    words = {word.lower().replace("_", " ") for word in words}
    pattern = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")(?![a-z0-9])")
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found |= set(pattern.findall(node.value.lower().replace("_", " ")))
        else:
            name = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else
                    node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else node.arg if isinstance(node, ast.arg)
                    else None)
            if name:
                found |= set(pattern.findall(name.lower().replace("_", " "))) - PLAIN_WORDS
    return found


def test_the_core_names_no_built_in_or_wrapped_library_inside_strings_and_identifiers():
    words = {name.lower() for name in _built_in_names()} | set(LIBRARIES)
    assert {"score_cosine", "synthetic", "timm", "lpips"} <= words
    found = {(str(path.relative_to(ROOT)), word) for path in sorted(CORE.rglob("*.py")) for word in _mentions(path, words)}
    new, gone = sorted(found - KNOWN_MENTIONS), sorted(KNOWN_MENTIONS - found)
    assert new == [], "the core names built-ins or the libraries plugins wrap (declare them in the plugin): " + repr(new)
    assert gone == [], "remove these from KNOWN_MENTIONS, they no longer occur: " + repr(gone)


def test_the_mention_scan_finds_names_inside_strings_and_identifiers(tmp_path):
    source = tmp_path / "core.py"
    source.write_text('"""A docstring may say timm."""\nheader = "ranked by score_cosine, then accuracy"\n'
                      'def load_timm_weights(noise_level):\n    return noise_level\n')
    assert _mentions(source, {"score_cosine", "accuracy", "timm", "noise"}) == {"score cosine", "accuracy", "timm"}
