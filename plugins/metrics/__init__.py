"""Built-in plugin: the PAG metrics, one file each, registered like a third-party package's.

Each metric subclasses :class:`pagbench.evaluation.metrics.Metric`: it declares its name, direction, what it
reads from the batch context, its options (``manifold_robustness``: ``--epsilons`` and
``--headline-epsilon``; ``signal_distractor_ratio``: ``--noise-levels``) and its board columns.
Heavy libraries (``lpips``) are imported on first use, never here.
"""

from pagbench.plugin import hookimpl


@hookimpl
def register_metrics(register):
    from .accuracy import Accuracy
    from .lpips_alignment import LpipsAlignment
    from .manifold_robustness import ManifoldRobustness
    from .on_manifold import OnManifoldFraction
    from .score_cosine import ScoreCosine
    from .signal_distractor import SignalDistractorRatio

    for metric in (Accuracy(), ScoreCosine(), LpipsAlignment(), OnManifoldFraction(), ManifoldRobustness(), SignalDistractorRatio()):
        register(metric)


@hookimpl
def register_assets(register):
    from .lpips_alignment import backbone_asset

    register(backbone_asset())
