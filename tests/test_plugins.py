"""Plugin loading: forgiving, observable, restrictable; registries answer with close matches."""

from importlib import metadata

import pytest
from click.testing import CliRunner

import pagbench.extensions.manager as plugins_module
from pagbench import DatasetEntry, hookimpl
from pagbench.errors import PagbenchError


@pytest.fixture
def fresh_manager(monkeypatch):
    """A plugin manager rebuilt from (patched) entry points; the real one is restored after."""
    real = metadata.entry_points

    def with_extra(*extra):
        from .conftest import BUILTINS

        monkeypatch.setenv("PAGBENCH_LOAD_PLUGINS", ",".join([BUILTINS] + [name for name, _ in extra]))

        def entry_points(group=None):
            found = list(real(group=group))
            return found + [metadata.EntryPoint(name=name, value=value, group="pagbench") for name, value in extra]

        monkeypatch.setattr(plugins_module.metadata, "entry_points", entry_points)

    with plugins_module.fresh_plugin_state():
        yield with_extra


def test_a_broken_plugin_is_reported_and_the_rest_keeps_working(fresh_manager, monkeypatch):
    fresh_manager(("broken", "pagbench_no_such_module_xyz"))
    from pagbench.extensions.registry import models

    assert "bayes" in models()  # built-ins still load
    failures = plugins_module.plugin_failures()
    assert [f.name for f in failures] == ["broken"]
    assert "ModuleNotFoundError" in failures[0].error
    from pagbench.cli import build_cli

    output = CliRunner().invoke(build_cli(), ["plugins"]).output
    assert "broken" in output and "pagbench_no_such_module_xyz" in output


def test_strict_mode_makes_a_broken_plugin_fatal(fresh_manager, monkeypatch):
    fresh_manager(("broken", "pagbench_no_such_module_xyz"))
    monkeypatch.setenv("PAGBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PagbenchError, match="plugin 'broken' failed"):
        plugins_module.get_plugin_manager()


def test_load_list_restricts_plugins(fresh_manager, monkeypatch):
    fresh_manager()
    monkeypatch.setenv("PAGBENCH_LOAD_PLUGINS", "synthetic")
    names = {info.name for info in plugins_module.plugin_infos()}
    assert names == {"synthetic"}


def test_plugin_infos_carry_distribution_and_version(fresh_manager):
    fresh_manager()
    infos = {info.name: info for info in plugins_module.plugin_infos()}
    assert infos["synthetic"].distribution == "pagbench"
    assert infos["synthetic"].version == "0.1.0"
    assert "register_datasets" in infos["synthetic"].hooks


def test_a_misspelt_hook_is_an_error(register_plugin):
    import pluggy

    class Misspelt:
        @hookimpl
        def register_model(self, register):  # missing "s"
            pass

    register_plugin(Misspelt(), name="misspelt")
    with pytest.raises(pluggy.PluginValidationError):
        plugins_module.get_plugin_manager().check_pending()


def test_duplicate_names_are_reported_not_silently_overwritten(register_plugin):
    class Duplicate:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetEntry(name="synthetic", factory=lambda data_root: None))

    register_plugin(Duplicate(), name="duplicate")
    from pagbench.extensions.registry import datasets

    registry = datasets()
    assert registry.owner("synthetic") == "synthetic"
    assert any(c.name == "synthetic" and c.kept == "synthetic" and c.ignored == "duplicate"
               for c in plugins_module.plugin_clashes())


def test_unknown_names_suggest_close_matches():
    from pagbench.extensions.registry import metrics, trainers

    with pytest.raises(PagbenchError, match="did you mean on_manifold_fraction"):
        metrics().get("on_manifold_fractoin")
    with pytest.raises(PagbenchError, match="did you mean gnorm"):
        trainers().get("gnrom")


def test_families_match_by_prefix_not_substring():
    from pagbench.extensions.registry import models

    registry = models()
    assert registry.get("resnet18-synthetic-noise-0.1").prefix == "resnet18-"
    with pytest.raises(PagbenchError):
        registry.get("my-resnet18-synthetic-noise-0.1")


def test_the_built_in_plugin_list_is_read_from_the_entry_points_of_pyproject():
    import tomllib
    from pathlib import Path

    from pagbench.extensions.manager import bundled_plugin_names

    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert bundled_plugin_names() == sorted(declared["project"]["entry-points"]["pagbench"])


def test_lazy_family_imports_its_build_module_on_first_use_and_passes_what_the_builder_names(monkeypatch):
    """``pagbench.plugin.lazy_family``: the six model plugins import their build module (and torch)
    only when a model is built; ``device`` / ``options`` reach a builder only when it names them."""
    import subprocess
    import sys
    import types

    from pagbench.models.loading import call_model_factory
    from pagbench.plugin import ModelCard, lazy_family

    code = ("import sys, pagbench_plugins.timm_models as p, pagbench_plugins.zoo as z; "
            "print('torch' in sys.modules, any(name.endswith('.build') for name in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]

    built = types.ModuleType("lazy_family_builders")
    built.with_options = lambda name, dataset, options: ("options", name, dataset, options)
    built.with_device = lambda name, dataset, device: ("device", name, dataset, device)
    monkeypatch.setitem(sys.modules, "lazy_family_builders", built)
    card = lambda name: ModelCard(architecture="a", dataset="d", regime="standard", source="s")  # noqa: E731
    family = lazy_family("lazy:", "lazy_family_builders", "with_options", card=card, architecture="with_device",
                         examples=["lazy:x"])
    assert family.name == "lazy:*" and family.examples == ("lazy:x",)
    assert call_model_factory(family.factory, "lazy:x", "ds", "cpu", {"k": "v"}) == ("options", "lazy:x", "ds", {"k": "v"})
    assert call_model_factory(family.architecture, "lazy:x", "ds", "cpu", None) == ("device", "lazy:x", "ds", "cpu")
    with pytest.raises(PagbenchError, match="takes no model options"):
        call_model_factory(family.architecture, "lazy:x", "ds", "cpu", {"k": "v"})
