"""An example metric: the l2 norm of the input gradient (pixel units)."""

from pagbench.metrics import Metric, MetricOutput


class GradientNorm(Metric):
    name = "gradient_norm"
    higher_is_better = None
    requires = frozenset({"gradient"})
    description = "‖∇x‖₂ of the chosen gradient (descriptive)."

    def compute(self, context):
        norms = context.gradient.reshape(context.gradient.shape[0], -1).norm(dim=1)
        return MetricOutput({self.name: context.masked(norms)})
