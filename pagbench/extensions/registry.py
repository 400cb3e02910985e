"""Typed registries, one per plugin kind, built from the ``register_*`` hooks.

Registries are rebuilt on every call (registering is cheap: factories are lazy), so plugins
added to or removed from the plugin manager at run time are seen at once.
"""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from pagbench.errors import UnknownNameError
from pagbench.extensions.manager import call_hook, get_plugin_manager

E = TypeVar("E")

KINDS = {
    "datasets": "register_datasets",
    "models": "register_models",
    "score_providers": "register_score_providers",
    "manifold_providers": "register_manifold_providers",
    "trainers": "register_trainers",
    "metrics": "register_metrics",
    "attributions": "register_attributions",
    "assets": "register_assets",
}
_SINGULAR = {
    "datasets": "dataset",
    "models": "model",
    "score_providers": "score provider",
    "manifold_providers": "manifold provider",
    "trainers": "training regime",
    "metrics": "metric",
    "attributions": "attribution method",
    "assets": "asset",
}


class Registry(Generic[E]):
    """Name → entry. Entries with a ``prefix`` attribute match every name starting with it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, E] = {}
        self._owners: dict[str, str] = {}
        self._families: list[E] = []
        self._current_plugin = "?"

    def register(self, entry: E) -> None:
        """Add ``entry``; a name registered before keeps its first registration (the clash is
        recorded, see :func:`pagbench.extensions.manager.plugin_clashes`) unless the registering plugin is
        listed in ``PAGBENCH_PLUGIN_OVERRIDES``."""
        from pagbench.extensions.manager import PluginClash, overrides, record_clash

        name = entry.name
        if name in self._entries:
            first = self._owners[name]
            if self._current_plugin not in overrides():
                record_clash(PluginClash(_SINGULAR[self.kind], name, first, self._current_plugin))
                return
            record_clash(PluginClash(_SINGULAR[self.kind], name, self._current_plugin, first, overridden=True))
            old = self._entries[name]
            self._families = [family for family in self._families if family is not old]
        self._entries[name] = entry
        self._owners[name] = self._current_plugin
        if getattr(entry, "prefix", None):
            self._families.append(entry)

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._owners[self.get_entry_name(name)]

    def get_entry_name(self, name: str) -> str:
        return self._lookup(name).name

    def _lookup(self, name: str) -> E:
        if name in self._entries and not getattr(self._entries[name], "prefix", None):
            return self._entries[name]
        for family in sorted(self._families, key=lambda f: -len(f.prefix)):
            if name.startswith(family.prefix):
                return family
        candidates = list(self._entries) + [f.prefix for f in self._families]
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(candidates)) or 'none'}"
        raise UnknownNameError(f"unknown {_SINGULAR[self.kind]} {name!r}{hint}")

    def get(self, name: str) -> E:
        """The entry for ``name`` (exact name first, then the longest matching prefix)."""
        return self._lookup(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        try:
            self._lookup(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)


def build_registry(kind: str) -> Registry:
    """Call every plugin's ``register_<kind>`` hook; a plugin whose hook raises is reported."""
    registry: Registry = Registry(kind)
    hook = getattr(get_plugin_manager().hook, KINDS[kind])

    def calling(plugin_name: str) -> None:
        registry._current_plugin = plugin_name

    # built-ins first whatever pluggy's order (tryfirst/trylast), then in registration order
    call_hook(hook, registry.register, before=calling)
    return registry


def datasets() -> Registry:
    return build_registry("datasets")


def models() -> Registry:
    return build_registry("models")


def score_providers() -> Registry:
    return build_registry("score_providers")


def manifold_providers() -> Registry:
    return build_registry("manifold_providers")


def trainers() -> Registry:
    return build_registry("trainers")


def metrics() -> Registry:
    return build_registry("metrics")


def attributions() -> Registry:
    return build_registry("attributions")


def assets() -> Registry:
    return build_registry("assets")
