"""pagbench: which image classifiers have perceptually-aligned gradients, and why.

Python entry points mirror the CLI: ``pagbench.evaluate(model="bayes")`` returns the result
document that ``pagbench evaluate --model bayes`` writes. Heavy libraries load lazily.
"""

__version__ = "0.1.0"

from .entries import (  # noqa: E402
    DatasetEntry,
    ManifoldProviderEntry,
    ModelCard,
    ModelEntry,
    ModelFamily,
    ScoreProviderEntry,
    TrainerEntry,
)
from .hookspecs import hookimpl  # noqa: E402


def evaluate(model: str, **options):
    """Evaluate ``model``; keyword arguments are :class:`pagbench.options.EvaluationOptions` fields
    plus ``cache``, ``progress`` (default False here) and ``per_image``. Returns the result dict."""
    from .options import EvaluationOptions
    from .runner import evaluate as run

    extra = {key: options.pop(key) for key in ("cache", "progress", "per_image") if key in options}
    extra.setdefault("progress", False)
    return run(EvaluationOptions(model=model, **options), **extra)


__all__ = [
    "__version__",
    "evaluate",
    "hookimpl",
    "DatasetEntry",
    "ManifoldProviderEntry",
    "ModelCard",
    "ModelEntry",
    "ModelFamily",
    "ScoreProviderEntry",
    "TrainerEntry",
]
