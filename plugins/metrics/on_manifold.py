"""``on_manifold_fraction``: ‖P_T g‖² / ‖g‖², the share of the gradient's energy on the manifold.

Also reports ‖P_T g‖ and ‖P_⊥ g‖ (pixel units of the gradient) and the random baseline k/D:
a random direction puts k/D of its energy into a k-dimensional tangent space of R^D. ``g`` is the
chosen attribution (``--attribution``; the raw input gradient by default), on the tangent basis's
device (the evaluation device, or the CPU when the basis is too large for the device's memory).
"""

from __future__ import annotations

from pagbench.plugin import BoardColumn, Metric, MetricContext, MetricOutput


class OnManifoldFraction(Metric):
    name = "on_manifold_fraction"
    board_columns = (BoardColumn(
        "on_manifold_fraction", "on_manifold_fraction", position=40, always=True,
        legend="‖P_T g‖²/‖g‖², the share of the gradient's energy in the tangent\n"
               "  space (a random direction scores k/D, given above each table). Higher is better.",
        baseline="on_manifold_fraction_random", baseline_label="Random on-manifold fraction k/D"),)
    higher_is_better = True
    requires = frozenset({"gradient", "tangent_basis"})
    description = "Fraction of the squared gradient norm inside the tangent space (random = k/D)."
    value_ranges = {"on_manifold_fraction": (0.0, 1.0), "on_manifold_fraction_random": (0.0, 1.0),
                    "on_manifold_gradient_norm": (0.0, float("inf")), "off_manifold_gradient_norm": (0.0, float("inf"))}

    @property
    def outputs(self):
        return {
            self.name: True,
            "on_manifold_fraction_random": None,
            "on_manifold_gradient_norm": None,
            "off_manifold_gradient_norm": None,
        }

    def compute(self, context: MetricContext) -> MetricOutput:
        import torch

        basis = context.tangent_basis.double()
        gradient = context.gradient.reshape(context.gradient.shape[0], -1).double().to(basis.device)
        coordinates = torch.einsum("bkd,bd->bk", basis, gradient)
        on_squared = (coordinates**2).sum(1)
        residual = gradient - torch.einsum("bkd,bk->bd", basis, coordinates)
        off_squared = (residual**2).sum(1)
        fraction = on_squared / (on_squared + off_squared)
        rank = basis.shape[1] * torch.ones_like(on_squared)
        return MetricOutput(
            {
                self.name: context.masked(fraction),
                "on_manifold_fraction_random": rank / gradient.shape[1],
                "on_manifold_gradient_norm": context.masked(on_squared.sqrt()),
                "off_manifold_gradient_norm": context.masked(off_squared.sqrt()),
            }
        )
