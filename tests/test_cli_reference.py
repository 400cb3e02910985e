"""The CLI reference (docs/reference/cli.md) is generated from the click commands (scripts/cli_reference.py) and
cannot drift: this regenerates it and compares, like tests/test_hooks.py does for hook docs."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_up_to_date():
    script = _script()
    for path, wanted in script.targets(script.build_group()):
        assert path.is_file() and path.read_text(encoding="utf-8") == wanted, f"{path} is stale: run python scripts/cli_reference.py"


def test_the_reference_lists_every_command_and_every_visible_evaluate_option():
    import click

    script = _script()
    group = script.build_group()
    block = script.reference(group)
    for path, command in script._commands(group):
        assert f"| `{path}" in block, path
    evaluate = group.commands["evaluate"]
    for param in evaluate.params:
        if isinstance(param, click.Option):
            assert (f"`{param.opts[0]}" in block) != param.hidden, param.opts[0]
    assert "`--dataset TEXT` | `synthetic`" in block  # the default dataset, from the plugins' entry metadata


def test_the_plugins_default_dataset_and_demo_models_reach_the_cli(register_plugin):
    from pagbench import DatasetEntry, hookimpl
    from pagbench.cli import build_cli
    from pagbench.errors import PagbenchError
    from pagbench.evaluation.options import EvaluationOptions, default_dataset, demo_models

    assert default_dataset() == "synthetic" and EvaluationOptions(model="bayes").dataset == "synthetic"
    assert demo_models()[0] == "bayes"
    demo = build_cli().commands["demo"]
    assert next(p for p in demo.params if p.name == "models").default == demo_models()

    class Second:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetEntry("second-default", lambda root: None, default=True))

    register_plugin(Second(), name="second-default")
    import pytest

    with pytest.raises(PagbenchError, match="exactly one registered dataset must be marked default=True.*second-default, synthetic do"):
        EvaluationOptions(model="bayes")
    assert EvaluationOptions(model="bayes", dataset="synthetic").dataset == "synthetic"  # naming one still works
