"""Shared fixtures: an isolated cache, offline mode, only the built-in plugins, and helpers to
register throwaway plugins on the plugin manager."""

from __future__ import annotations

import contextlib
import os

import pytest

from pagbench.extensions.manager import bundled_plugin_names  # noqa: E402 (light: pluggy and importlib.metadata)

BUILTINS = ",".join(bundled_plugin_names())  # the entry points of pyproject.toml, as installed
os.environ["PAGBENCH_LOAD_PLUGINS"] = BUILTINS  # keep installed third-party plugins out
os.environ["PAGBENCH_OFFLINE"] = "1"
os.environ.pop("PAGBENCH_STRICT_PLUGINS", None)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    directory = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PAGBENCH_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def register_plugin():
    """``register_plugin(obj)`` registers a throwaway plugin for the duration of the test."""
    from pagbench.extensions.manager import get_plugin_manager

    manager = get_plugin_manager()
    names = []

    def register(plugin, name=None):
        name = manager.register(plugin, name=name)
        names.append(name)
        return name

    yield register
    for name in names:
        manager.unregister(name=name)


@pytest.fixture(scope="session")
def synthetic():
    from pagbench.extensions.registry import datasets

    return datasets().get("synthetic").factory(None)


@contextlib.contextmanager
def env(**values):
    old = {key: os.environ.get(key) for key in values}
    os.environ.update({key: value for key, value in values.items()})
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def counting_model(register_plugin):
    """A registered model ``counting`` whose forward passes are recorded (batch sizes; empty: nothing ran)."""
    import torch

    from pagbench import ModelCard, ModelEntry, hookimpl

    calls = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 16 * 16, 10)

        def forward(self, images):
            calls.append(images.shape[0])
            return self.linear(images.flatten(1))

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelEntry("counting", lambda name, dataset, device: Net(), ModelCard(architecture="Net", dataset="synthetic")))

    register_plugin(Plugin(), name="counting-model")
    return calls
