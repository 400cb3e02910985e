"""pagbench's own EDM preconditioners (written for pagbench, no NVIDIA code): the denoiser
D(x; σ, y) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ), y) of Karras et al. (2022, table 1)
for the EDM, VP, VE and iDDPM parameterisations, wrapping a :mod:`.edm_networks` U-Net ``model``.

Call: ``net(x (N, C, R, R), sigma (N,) or scalar, class_labels (N, label_dim) or None,
force_fp32=False, augment_labels=None)`` → D (N, C, R, R) float32, all in EDM's [−1,1] units.
With ``use_fp16`` the inner network runs in float16 only on CUDA, as NVIDIA's code does; on any
other device in float32. Heavy import: torch.
"""

from __future__ import annotations

import math

import torch

from .edm_networks import UNETS


class _Precond(torch.nn.Module):
    """Shared: the inner network built from ``model_type`` and its keyword arguments."""

    OUT_CHANNELS_FACTOR = 1

    def _build_model(self, img_resolution, img_channels, label_dim, model_type, model_kwargs):
        if model_type not in UNETS:
            raise ValueError(f"unknown model_type {model_type!r}")
        self.model = UNETS[model_type](img_resolution=img_resolution, in_channels=img_channels,
                                       out_channels=img_channels * self.OUT_CHANNELS_FACTOR, label_dim=label_dim, **model_kwargs)

    def _inputs(self, x, sigma, class_labels, force_fp32):
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:
            class_labels = torch.zeros([1, self.label_dim], device=x.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        return x, sigma, class_labels, torch.float16 if fp16 else torch.float32

    def _run(self, scaled, noise, class_labels, dtype, model_kwargs):
        output = self.model(scaled.to(dtype), noise.flatten(), class_labels=class_labels, **model_kwargs)
        if output.dtype != dtype:
            raise RuntimeError(f"the inner network returned {output.dtype}, expected {dtype}")
        return output

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)


class EDMPrecond(_Precond):
    """EDM: c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²), c_in = 1/√(σ²+σ_d²), c_noise = ln(σ)/4."""

    EDM_CLASS = "EDMPrecond"

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0, sigma_max=float("inf"),
                 sigma_data=0.5, model_type="DhariwalUNet", **model_kwargs):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim, self.use_fp16 = img_resolution, img_channels, label_dim, use_fp16
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data
        self._build_model(img_resolution, img_channels, label_dim, model_type, model_kwargs)

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        x, sigma, class_labels, dtype = self._inputs(x, sigma, class_labels, force_fp32)
        c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()
        c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        output = self._run(c_in * x, c_noise, class_labels, dtype, model_kwargs)
        return c_skip * x + c_out * output.to(torch.float32)


class VPPrecond(_Precond):
    """Variance preserving: σ(t) = √(exp(β_d t²/2 + β_min t) − 1), c_skip = 1, c_out = −σ,
    c_in = 1/√(σ²+1), c_noise = (M−1)·σ⁻¹(σ)."""

    EDM_CLASS = "VPPrecond"

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, beta_d=19.9, beta_min=0.1, M=1000,
                 epsilon_t=1e-5, model_type="SongUNet", **model_kwargs):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim, self.use_fp16 = img_resolution, img_channels, label_dim, use_fp16
        self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1))
        self._build_model(img_resolution, img_channels, label_dim, model_type, model_kwargs)

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        x, sigma, class_labels, dtype = self._inputs(x, sigma, class_labels, force_fp32)
        c_out = -sigma
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        output = self._run(c_in * x, c_noise, class_labels, dtype, model_kwargs)
        return x + c_out * output.to(torch.float32)

    def sigma(self, t):
        t = torch.as_tensor(t, device="cpu") if not torch.is_tensor(t) else t
        return ((0.5 * self.beta_d * (t ** 2) + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma):
        sigma = torch.as_tensor(sigma)
        return ((self.beta_min ** 2 + 2 * self.beta_d * (1 + sigma ** 2).log()).sqrt() - self.beta_min) / self.beta_d


class VEPrecond(_Precond):
    """Variance exploding: c_skip = 1, c_out = σ, c_in = 1, c_noise = ln(σ/2)."""

    EDM_CLASS = "VEPrecond"

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0.02, sigma_max=100,
                 model_type="SongUNet", **model_kwargs):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim, self.use_fp16 = img_resolution, img_channels, label_dim, use_fp16
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._build_model(img_resolution, img_channels, label_dim, model_type, model_kwargs)

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        x, sigma, class_labels, dtype = self._inputs(x, sigma, class_labels, force_fp32)
        c_noise = (0.5 * sigma).log()
        output = self._run(x, c_noise, class_labels, dtype, model_kwargs)
        return x + sigma * output.to(torch.float32)


class iDDPMPrecond(_Precond):  # noqa: N801 — NVIDIA's class name
    """Improved DDPM: σ rounded to the nearest of the M+1 levels ``u`` (buffer, descending);
    c_skip = 1, c_out = −σ, c_in = 1/√(σ²+1), c_noise = M − 1 − index; the inner network returns
    2·C channels (mean and variance), the first C are used."""

    EDM_CLASS = "iDDPMPrecond"
    OUT_CHANNELS_FACTOR = 2

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, C_1=0.001, C_2=0.008, M=1000,  # noqa: N803
                 model_type="DhariwalUNet", **model_kwargs):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim, self.use_fp16 = img_resolution, img_channels, label_dim, use_fp16
        self.C_1, self.C_2, self.M = C_1, C_2, M
        self._build_model(img_resolution, img_channels, label_dim, model_type, model_kwargs)
        levels = torch.zeros(M + 1, device="cpu")
        for j in range(M, 0, -1):
            ratio = (self.alpha_bar(j - 1) / self.alpha_bar(j)).clip(min=C_1)
            levels[j - 1] = ((levels[j] ** 2 + 1) / ratio - 1).sqrt()
        self.register_buffer("u", levels)
        self.sigma_min, self.sigma_max = float(levels[M - 1]), float(levels[0])

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **model_kwargs):
        x, sigma, class_labels, dtype = self._inputs(x, sigma, class_labels, force_fp32)
        c_out = -sigma
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        c_noise = self.M - 1 - self.round_sigma(sigma, return_index=True).to(torch.float32)
        output = self._run(c_in * x, c_noise, class_labels, dtype, model_kwargs)
        return x + c_out * output[:, :self.img_channels].to(torch.float32)

    def alpha_bar(self, j):
        return (0.5 * math.pi * torch.as_tensor(j, device="cpu") / self.M / (self.C_2 + 1)).sin() ** 2

    def round_sigma(self, sigma, return_index=False):
        sigma = torch.as_tensor(sigma)
        distances = torch.cdist(sigma.to(self.u.device).to(torch.float32).reshape(1, -1, 1), self.u.reshape(1, -1, 1))
        index = distances.argmin(2)
        result = index if return_index else self.u[index.flatten()].to(sigma.dtype)
        return result.reshape(sigma.shape).to(sigma.device)


PRECONDITIONERS = {cls.EDM_CLASS: cls for cls in (EDMPrecond, VPPrecond, VEPrecond, iDDPMPrecond)}
