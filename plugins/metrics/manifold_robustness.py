"""``manifold_robustness``: how much the prediction moves along vs. off the data manifold.

For each image, one random unit direction u_T in the tangent space and one u_⊥ orthogonal to
it (drawn from the run's seed); for every ε in the dataset's grid (l2 norm in [0,1] pixel units):

    on(ε)  = ‖softmax f(x + ε u_T) − softmax f(x)‖₁
    off(ε) = ‖softmax f(x + ε u_⊥) − softmax f(x)‖₁

Both lie in [0, 2]. Inputs are not clipped to [0,1] (clipping would bend u_⊥ back towards the
manifold). The headline numbers are on, off and the ratio of means off/on at the headline ε; an
off-manifold-robust model has a ratio well below 1. The curves over the whole grid are reported
too. Cost: one extra forward pass per grid point and direction, so the default grids are short.
"""

from __future__ import annotations

from pagbench.plugin import BoardColumn, Metric, MetricOption, MetricContext, MetricOutput, PagbenchError
from pagbench.plugin import check_grid, in_grid, pixel_scale


def random_directions(basis, randomness):
    """Unit directions (B, D) float64: one in the row space of ``basis`` (B, k, D), one orthogonal."""
    import torch

    batch, rank, dim = basis.shape
    tangent_coordinates = randomness.randn("manifold_robustness.on", rank)
    along = torch.einsum("bk,bkd->bd", tangent_coordinates, basis)
    ambient = randomness.randn("manifold_robustness.off", dim)
    across = ambient - torch.einsum("bk,bkd->bd", torch.einsum("bkd,bd->bk", basis, ambient), basis)
    return along / along.norm(dim=1, keepdim=True), across / across.norm(dim=1, keepdim=True)


def epsilon_grid(setup) -> list[float]:
    options_grid = getattr(setup.options, "robustness_epsilons", None)
    grid = list(options_grid or setup.dataset.robustness_epsilons or (setup.dataset.headline_epsilon or 1.0,))
    return [float(value) for value in grid]


def headline_epsilon(setup) -> float:
    """The headline ε: the user's ``--headline-epsilon``, which must be a point of the grid (else a
    one-line error, never silently another ε), or the dataset's (its nearest grid point)."""
    from pagbench.plugin import PagbenchError
    from pagbench.plugin import in_grid

    grid = epsilon_grid(setup)
    requested = getattr(setup.options, "headline_epsilon", None)
    if requested is not None:
        matches = [value for value in grid if in_grid(requested, [value])]
        if not matches:
            raise PagbenchError(f"--headline-epsilon {requested:g} is not in the ε grid "
                                f"({','.join(f'{value:g}' for value in grid)}); add it to --epsilons")
        return float(matches[0])
    chosen = setup.dataset.headline_epsilon
    if chosen is None or chosen not in grid:
        chosen = min(grid, key=lambda value: abs(value - (chosen or grid[len(grid) // 2])))
    return float(chosen)


class ManifoldRobustness(Metric):
    name = "manifold_robustness"
    higher_is_better = None
    requires = frozenset({"tangent_basis"})
    description = "Softmax-L1 change under random on- vs off-manifold perturbations of norm ε."
    # the L1 distance of two probability vectors is at most 2
    value_ranges = {"manifold_robustness_on": (0.0, 2.0), "manifold_robustness_off": (0.0, 2.0),
                    "manifold_robustness_off_on_ratio": (0.0, float("inf"))}
    options = (
        MetricOption("robustness_epsilons", "floats", flag="--epsilons", setting="epsilons", recorded_after="metrics",
                     help="ε grid for manifold_robustness: a,b,c or lo:hi:n (log-spaced).", board_text="ε grid {value}"),
        MetricOption("headline_epsilon", "float", setting="headline_epsilon", recorded_after="robustness_epsilons",
                     help="ε reported as a number (must be in the grid).", board_text="off/on ratio at ε = {value}"),
    )
    board_columns = (BoardColumn(
        "off/on ratio", "manifold_robustness_off_on_ratio", unavailable_as="manifold_robustness", position=50, always=True,
        legend="mean softmax-L1 change under a random off-manifold perturbation of norm ε over\n"
               "  the same along the manifold, at the headline ε given above each table. Lower is better; below 1\n"
               "  means off-manifold robust."),)

    def __init__(self):
        self._grid: list[float] = []
        self._headline = 0

    @property
    def outputs(self):
        return {"manifold_robustness_on": None, "manifold_robustness_off": False}

    def derived_outputs(self):
        return {"manifold_robustness_off_on_ratio": False}

    def check_options(self, options) -> None:
        """Each ε > 0 and at most the largest pixel scale, a grid of 1 to the most grid points, and
        a headline ε given with a grid one of its points."""
        grid, headline = self.option(options, "robustness_epsilons"), self.option(options, "headline_epsilon")
        check_grid(grid, "--epsilons")
        if headline is not None:
            pixel_scale(headline, "--headline-epsilon")
            if grid is not None and not in_grid(headline, grid):
                text = ",".join(f"{value:g}" for value in grid)
                raise PagbenchError(f"--headline-epsilon {headline:g} is not in the ε grid ({text}); add it to --epsilons")

    def check_available(self, setup) -> None:
        self._grid = epsilon_grid(setup)
        self._headline = self._grid.index(headline_epsilon(setup))

    def curve_grid(self, setup):
        return {"manifold_robustness_on": self._grid, "manifold_robustness_off": self._grid}

    def describe(self, setup):
        return {"epsilons": self._grid, "headline_epsilon": self._grid[self._headline], "norm": "l2, [0,1] pixel units"}

    def compute(self, context: MetricContext) -> MetricOutput:
        import torch

        images = context.images
        batch = images.shape[0]
        along, across = random_directions(context.tangent_basis, context.randomness)
        reference = context.reference_probabilities()
        directions = [d.reshape(images.shape).to(images.device, images.dtype) for d in (along, across)]
        # one forward per ε for both directions (2B images): fewer, larger passes
        changes = {"manifold_robustness_on": [], "manifold_robustness_off": []}
        for epsilon in self._grid:
            moved = context.probabilities(torch.cat([images + epsilon * directions[0], images + epsilon * directions[1]]))
            change = (moved - reference.repeat(2, 1)).abs().sum(1).cpu()
            changes["manifold_robustness_on"].append(change[:batch])
            changes["manifold_robustness_off"].append(change[batch:])
        curves = {name: torch.stack(values, dim=1) for name, values in changes.items()}
        values = {name: curve[:, self._headline] for name, curve in curves.items()}
        return MetricOutput(values, curves)

    def derived(self, per_image):
        from pagbench.plugin import summarize_ratio

        return {
            "manifold_robustness_off_on_ratio": summarize_ratio(
                per_image["manifold_robustness_off"], per_image["manifold_robustness_on"]
            )
        }
