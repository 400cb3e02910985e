"""pagbench: which image classifiers have perceptually-aligned gradients, and why.

Python entry points mirror the CLI: ``pagbench.evaluate("bayes")`` returns the result document
that ``pagbench evaluate --model bayes`` writes; ``pagbench.evaluate(my_module)`` evaluates a
``torch.nn.Module`` directly, and ``pagbench.register_model(...)`` registers a model in-process.
Heavy libraries load lazily.
"""

from pagbench.numerics import pin_cpu_numerics as _pin_cpu_numerics

# Before torch starts: CPU kernels capped at AVX2, so training gives the same weights on any
# x86-64 machine (pagbench/numerics.py; PAGBENCH_CPU_NUMERICS=native opts out).
_pin_cpu_numerics()

from pagbench.version import __version__  # noqa: F401, E402

from pagbench.extensions.records import (  # noqa: E402
    DatasetEntry,
    ManifoldProviderEntry,
    ModelCard,
    ModelEntry,
    ModelFamily,
    ScoreProviderEntry,
    TrainerEntry,
)
from pagbench.extensions.hookspecs import hookimpl  # noqa: E402


def evaluate(model, **options):
    """Evaluate a registered model name, a ``torch.nn.Module`` or a list of them; see
    :func:`pagbench.api.evaluate`. Returns the result document (a list for a list)."""
    from pagbench.api import evaluate as run

    return run(model, **options)


def register_model(model, factory=None, **kwargs) -> str:
    """Register a model for this process (a ModelEntry/ModelFamily, or a name with a factory
    or a module); see :func:`pagbench.api.register_model`. Returns the plugin name."""
    from pagbench.api import register_model as register

    return register(model, factory, **kwargs)


def unregister_model(plugin_name: str) -> None:
    """Undo :func:`register_model`."""
    from pagbench.api import unregister_model as unregister

    unregister(plugin_name)


__all__ = [
    "__version__",
    "evaluate",
    "hookimpl",
    "register_model",
    "unregister_model",
    "DatasetEntry",
    "ManifoldProviderEntry",
    "ModelCard",
    "ModelEntry",
    "ModelFamily",
    "ScoreProviderEntry",
    "TrainerEntry",
]
