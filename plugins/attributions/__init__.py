"""Built-in plugin: attribution methods, registered like a third-party package's.

``raw-gradient`` (the raw input gradient, the default), ``smoothgrad``, ``integrated-gradients`` and
``gradient-x-input``. Every method differentiates what ``--gradient`` chooses (with the same
float64 class weights as the raw gradient) and returns float64 maps in the gradient's units.
Captum (``backend=captum``) is imported only when a method runs with it.
"""

from pagbench.plugin import hookimpl
from pagbench.plugin import AttributionEntry


def _gradient(options):
    from .gradient import RawGradient

    return RawGradient(options)


def _smoothgrad(options):
    from .smoothgrad import SmoothGrad

    return SmoothGrad(options)


def _integrated_gradients(options):
    from .integrated_gradients import IntegratedGradients

    return IntegratedGradients(options)


def _gradient_x_input(options):
    from .gradient_x_input import GradientXInput

    return GradientXInput(options)


@hookimpl
def register_attributions(register):
    register(AttributionEntry("raw-gradient", _gradient, "The raw input gradient g = ∇x (default; what the paper scores).",
                              default=True))
    register(AttributionEntry(
        "smoothgrad", _smoothgrad,
        "Mean gradient over `samples` copies of x + N(0, noise²) (noise in [0,1] pixel units, seeded per image).",
        options=("samples", "noise")))
    register(AttributionEntry(
        "integrated-gradients", _integrated_gradients,
        "(x − x₀) ⊙ ∫₀¹ ∇F(x₀ + α(x − x₀)) dα by `steps`-point Gauss–Legendre; x₀ zero or a Gaussian blur of x.",
        options=("steps", "baseline", "blur", "backend")))
    register(AttributionEntry("gradient-x-input", _gradient_x_input, "g ⊙ x, the gradient times the input.",
                              options=("backend",)))
