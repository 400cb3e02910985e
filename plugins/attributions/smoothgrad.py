"""``smoothgrad`` (Smilkov et al. 2017): the mean gradient over noisy copies of the image.

SG(x) = (1/n) Σ_i ∇F(x + σ ε_i), ε_i ~ N(0, I), n = ``samples`` (default 20, at most
4096), σ = ``noise`` (default 0.1, [0,1] pixel units, at most 1e3; 0 gives the raw gradient back). The noise of sample i is drawn
from the image's own stream (seeded by the run's seed, the image index and i), so numbers do not
depend on the batch size. Always pagbench's implementation: Captum's NoiseTunnel draws from the
global random generator, which would tie the noise to the batch composition.
"""

from __future__ import annotations

from pagbench.plugin import Attribution, attribution_option_value as option_value

#: Most noisy copies per image (each costs one forward and backward pass of the model).
MAX_SAMPLES = 4096
#: Largest noise σ in [0,1] pixel units (beyond it the copies are noise, not the image).
MAX_NOISE = 1e3


class SmoothGrad(Attribution):
    name = "smoothgrad"

    def __init__(self, options):
        samples = option_value(options, "samples", int, 20, self.name, lambda v: 1 <= v <= MAX_SAMPLES,
                               f"a whole number in 1..{MAX_SAMPLES}")
        noise = option_value(options, "noise", float, 0.1, self.name, lambda v: 0 <= v <= MAX_NOISE,
                             f"in 0..{MAX_NOISE:g}")
        super().__init__({"samples": samples, "noise": noise, "noise_units": "[0,1] pixel units", "backend": "pagbench"})

    def attribute(self, target):
        import torch

        images = target.images.detach()
        shape = images.shape[1:]
        total = torch.zeros(images.shape, dtype=torch.float64, device=images.device)
        for sample in range(self.settings["samples"]):
            noise = target.randomness.randn(f"attribution.smoothgrad.{sample}", *shape)
            noisy = images + (self.settings["noise"] * noise).to(images.device, images.dtype)
            total += target.gradient_at(noisy)
        return total / self.settings["samples"]
