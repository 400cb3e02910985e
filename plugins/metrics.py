"""Built-in plugin: registers the core PAG metrics (DESIGN §3)."""

from pagbench import hookimpl


@hookimpl
def register_metrics(register):
    from pagbench.metrics.accuracy import Accuracy
    from pagbench.metrics.lpips_alignment import LpipsAlignment
    from pagbench.metrics.manifold_robustness import ManifoldRobustness
    from pagbench.metrics.on_manifold import OnManifoldFraction
    from pagbench.metrics.score_cosine import ScoreCosine
    from pagbench.metrics.signal_distractor import SignalDistractorRatio

    for metric in (Accuracy(), ScoreCosine(), LpipsAlignment(), OnManifoldFraction(), ManifoldRobustness(), SignalDistractorRatio()):
        register(metric)
