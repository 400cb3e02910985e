"""An example metric: the l_p norm of the input gradient (pixel units).

It declares one option (``--gradient-norm-order``, Python keyword ``gradient_norm_order``: the p
of the norm, default 2), which joins the leaderboard entry key through the setting it records,
and one board column (``‖∇x‖_p``) — no change to pagbench is needed for either.
"""

from pagbench.plugin import BoardColumn, Metric, MetricOption, MetricOutput


class GradientNorm(Metric):
    name = "gradient_norm"
    higher_is_better = None
    requires = frozenset({"gradient"})
    description = "‖∇x‖_p of the chosen gradient (descriptive)."
    options = (MetricOption("gradient_norm_order", "float", default=2.0, setting="order",
                            help="p of the gradient_norm metric's ‖∇x‖_p (default 2).",
                            board_text="gradient norm ‖∇x‖_p with p = {value}"),)
    board_columns = (BoardColumn("‖∇x‖_p", "gradient_norm"),)

    def _order(self, options) -> float:
        return float(self.option(options, "gradient_norm_order"))

    def check_available(self, setup) -> None:
        from pagbench.plugin import PagbenchError

        if not self._order(setup.options) >= 1:
            raise PagbenchError(f"--gradient-norm-order must be >= 1, got {self._order(setup.options)}")

    def describe(self, setup):
        return {"order": self._order(setup.options)}

    def compute(self, context):
        flat = context.gradient.reshape(context.gradient.shape[0], -1)
        norms = flat.norm(p=self._order(context.options), dim=1)
        return MetricOutput({self.name: context.masked(norms)})
