"""``gradient-x-input``: g ⊙ x (Shrikumar et al. 2016), x the [0,1] image, g the chosen gradient."""

from __future__ import annotations

from pagbench.plugin import Attribution

from .backend import resolve_backend


class GradientXInput(Attribution):
    name = "gradient-x-input"

    def __init__(self, options):
        super().__init__({"backend": resolve_backend(str(options.get("backend", "pagbench")))})

    def attribute(self, target):
        if self.settings["backend"] == "captum":
            from captum.attr import InputXGradient

            inputs = target.images.detach().clone().requires_grad_(True)
            return InputXGradient(target.objective).attribute(inputs).detach().double()
        return target.input_gradient * target.images.double()
