"""The plugin manager: loads the ``pagbench`` entry points (built-ins included) forgivingly.

* A plugin that fails to import is recorded in :func:`plugin_failures` and skipped;
  ``PAGBENCH_STRICT_PLUGINS=1`` makes the failure fatal.
* ``PAGBENCH_LOAD_PLUGINS`` restricts loading to a comma-separated list of entry-point names
  (an empty string loads none), which keeps installed third-party plugins out of test runs.
* A plugin implementing a hook that has no specification (a misspelt hook name) fails pluggy's
  validation: it is reported like a plugin that fails to import and unregistered (fatal with
  ``PAGBENCH_STRICT_PLUGINS=1``), so ``check_pending()`` after loading always passes.
* Built-in plugins (the ``pagbench`` distribution's entry points) are loaded first. When a
  plugin registers a name that is already registered, the first registration (the built-in)
  wins and the clash is recorded (:func:`plugin_clashes`, shown by ``pagbench plugins``), unless
  ``PAGBENCH_PLUGIN_OVERRIDES`` lists the later plugin by name (comma-separated): then its
  registration replaces the earlier one, and the override is recorded too.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from pagbench.extensions import hookspecs
from pagbench.errors import PagbenchError

ENTRY_POINT_GROUP = "pagbench"

BUILTIN_DISTRIBUTION = "pagbench"


@dataclass
class PluginState:
    """What loading the plugins found in this process: the manager (built on first use), broken
    plugins, each plugin's (distribution, version), the built-ins' names and registration clashes."""

    manager: pluggy.PluginManager | None = None
    failures: list = field(default_factory=list)
    distributions: dict = field(default_factory=dict)
    builtins: set = field(default_factory=set)
    clashes: list = field(default_factory=list)


_state = PluginState()


@contextlib.contextmanager
def fresh_plugin_state():
    """Load the plugins anew inside the block (e.g. under patched entry points or environment
    variables) and restore the process's plugin state afterwards; yields the new state."""
    global _state
    saved, _state = _state, PluginState()
    try:
        yield _state
    finally:
        _state = saved


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose registration hook raised."""

    name: str
    distribution: str | None
    error: str


@dataclass(frozen=True)
class PluginClash:
    """A name registered by two plugins: ``kept`` is the registration in use."""

    kind: str
    name: str
    kept: str
    ignored: str
    overridden: bool = False

    def describe(self) -> str:
        if self.overridden:
            return f"{self.kind} {self.name!r} of {self.ignored!r} replaced by {self.kept!r} (PAGBENCH_PLUGIN_OVERRIDES)"
        return (f"{self.kind} {self.name!r} is registered by {self.kept!r} and {self.ignored!r}: {self.kept!r} is used "
                f"(set PAGBENCH_PLUGIN_OVERRIDES={self.ignored} to use the other)")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


def _strict() -> bool:
    return os.environ.get("PAGBENCH_STRICT_PLUGINS", "") not in ("", "0", "false", "no")


def _wanted() -> set[str] | None:
    value = os.environ.get("PAGBENCH_LOAD_PLUGINS")
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def overrides() -> set[str]:
    """Plugins allowed to replace earlier registrations (``PAGBENCH_PLUGIN_OVERRIDES``)."""
    return {part.strip() for part in os.environ.get("PAGBENCH_PLUGIN_OVERRIDES", "").split(",") if part.strip()}


def bundled_plugin_names() -> list[str]:
    """The entry-point names of the plugins shipped in pagbench's own distribution (the built-ins),
    sorted; read from the installed metadata, so pyproject.toml is their only list."""
    names = {entry_point.name for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP)
             if entry_point.dist is not None and entry_point.dist.name == BUILTIN_DISTRIBUTION}
    return sorted(names)


def is_builtin(name: str) -> bool:
    """Whether plugin ``name`` is one of pagbench's built-in plugins."""
    return name in _state.builtins


def record_clash(clash: PluginClash) -> None:
    if clash not in _state.clashes:
        _state.clashes.append(clash)


def plugin_clashes() -> list[PluginClash]:
    """Names registered twice, as found by the registries built so far in this process."""
    return list(_state.clashes)


def _unknown_hooks(manager: pluggy.PluginManager, plugin) -> list[str]:
    return sorted(caller.name for caller in manager.get_hookcallers(plugin) or () if not caller.has_spec())


def record_failure(name: str, distribution: str | None, error: BaseException) -> None:
    """Remember a broken plugin (or raise, in strict mode)."""
    message = f"{type(error).__name__}: {error}"
    if _strict():
        raise PagbenchError(f"plugin {name!r} failed: {message}") from error
    failure = PluginFailure(name, distribution, message)
    if failure not in _state.failures:
        _state.failures.append(failure)


def call_hook(hook, value, builtins_first: bool = True, before=None) -> None:
    """Call every implementation of ``hook`` (a ``manager.hook.<name>`` caller) with ``value`` as
    each argument it names (every spec argument is a ``register``-like callback; an
    implementation receives only the arguments it names). A plugin whose implementation raises is
    reported (:func:`record_failure`) and the others still run.

    ``builtins_first``: the built-in plugins' implementations first, then the others, each in
    pluggy's order (else pluggy's order alone). ``before(plugin_name)`` is called before each call.
    """
    implementations = hook.get_hookimpls()
    if builtins_first:
        implementations = sorted(implementations, key=lambda impl: not is_builtin(impl.plugin_name))
    for implementation in implementations:
        if before is not None:
            before(implementation.plugin_name)
        try:
            implementation.function(**{name: value for name in implementation.argnames})
        except Exception as error:
            record_failure(implementation.plugin_name, None, error)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    if _state.manager is not None:
        return _state.manager
    manager = pluggy.PluginManager("pagbench")
    manager.add_hookspecs(hookspecs)
    wanted = _wanted()
    found = list(metadata.entry_points(group=ENTRY_POINT_GROUP))

    def builtin(entry_point) -> bool:
        distribution = entry_point.dist.name if entry_point.dist else None
        return distribution == BUILTIN_DISTRIBUTION

    found.sort(key=lambda entry_point: not builtin(entry_point))  # stable: built-ins first
    for entry_point in found:
        if wanted is not None and entry_point.name not in wanted:
            continue
        distribution = entry_point.dist.name if entry_point.dist else None
        if manager.has_plugin(entry_point.name):
            continue
        try:
            module = entry_point.load()
            manager.register(module, name=entry_point.name)
            unknown = _unknown_hooks(manager, module)
            if unknown:
                manager.unregister(module)
                known = ", ".join(sorted(name for name in dir(hookspecs) if name.startswith("register_")))
                raise pluggy.PluginValidationError(
                    module, f"unknown hook(s) {', '.join(unknown)} (misspelt? the hooks are {known})")
            version = entry_point.dist.version if entry_point.dist else None
            _state.distributions[entry_point.name] = (distribution, version)
            if builtin(entry_point):
                _state.builtins.add(entry_point.name)
        except Exception as error:  # a broken plugin must not take the others down
            record_failure(entry_point.name, distribution, error)
    manager.check_pending()
    _state.manager = manager
    return manager


def plugin_failures() -> list[PluginFailure]:
    get_plugin_manager()
    return list(_state.failures)


def plugin_infos() -> list[PluginInfo]:
    """Loaded plugins with their distribution, version and implemented hooks."""
    manager = get_plugin_manager()
    infos = []
    for name, plugin in sorted(manager.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        distribution, version = _state.distributions.get(name, (None, None))
        hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, distribution, version, hooks))
    return infos


def plugin_versions() -> dict[str, str | None]:
    """``{plugin name: version}`` for result files."""
    return {info.name: info.version for info in plugin_infos()}
