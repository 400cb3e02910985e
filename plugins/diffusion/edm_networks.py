"""pagbench's own implementation of the networks in NVlabs' published EDM pickles.

Written for pagbench from the architectures' descriptions (Karras et al., *Elucidating the Design
Space of Diffusion-Based Generative Models*, NeurIPS 2022, appendix: DDPM++ and NCSN++ after Song
et al. 2021, ADM after Dhariwal & Nichol 2021); no NVIDIA code is in this file. What must agree
with NVIDIA's networks is only what a pickle's tensors and a network's outputs pin down:

* the module tree — attribute names (``enc``/``dec`` ModuleDicts keyed ``'32x32_block0'`` …,
  ``map_noise``, ``norm0``, ``qkv`` …), parameter and buffer names and shapes — so a pickle's
  tensors load by name with strict checking (:mod:`.edm_restricted`);
* the arithmetic, op for op in the same order, so outputs agree to float32 rounding.

Everything is plain torch (attention is ``einsum`` + ``softmax``), so ``torch.func.jvp`` / ``vmap``
/ ``jacfwd`` work through every network. Heavy import: torch (import this module lazily).

Shapes: images (N, C, H, W); noise labels (N,); class labels (N, label_dim) one-hot or soft;
augment labels (N, augment_dim). Every class carries ``EDM_CLASS``, the class name its records
have in NVIDIA's pickles.
"""

from __future__ import annotations

import math

import torch
from torch.nn.functional import silu

SONG_EMBEDDINGS = ("positional", "fourier")
SONG_ENCODERS = ("standard", "skip", "residual")
SONG_DECODERS = ("standard", "skip")


def _random(shape, scale: float) -> torch.Tensor:
    """Placeholder weights: N(0, scale²) (a loaded network overwrites every parameter)."""
    return torch.randn(shape) * scale


class Linear(torch.nn.Module):
    """y = x Wᵀ + b; ``weight`` (out, in), ``bias`` (out,) or None."""

    EDM_CLASS = "Linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(_random([out_features, in_features], 1 / math.sqrt(max(in_features, 1))))
        self.bias = torch.nn.Parameter(torch.zeros([out_features])) if bias else None

    def forward(self, x):
        y = x @ self.weight.to(x.dtype).t()  # matmul then add, as the reference: not a fused addmm
        return y if self.bias is None else y + self.bias.to(x.dtype)


class Conv2d(torch.nn.Module):
    """Square 'same' convolution (``kernel`` may be 0: resampling only), optionally preceded by
    2× upsampling (transposed depthwise convolution with the separable ``resample_filter``) or
    followed/preceded by 2× downsampling with it. ``fused_resample`` changes the order and padding
    as NCSN++'s residual encoder does. ``resample_filter`` buffer (1, 1, F, F) when up or down."""

    EDM_CLASS = "Conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter=(1, 1), fused_resample: bool = False):
        if up and down:
            raise ValueError("Conv2d cannot both upsample and downsample")
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fan_in = max(in_channels * kernel * kernel, 1)
        self.weight = torch.nn.Parameter(_random([out_channels, in_channels, kernel, kernel], 1 / math.sqrt(fan_in))) if kernel else None
        self.bias = torch.nn.Parameter(torch.zeros([out_channels])) if kernel and bias else None
        taps = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        outer = torch.outer(taps, taps)[None, None] / taps.sum().square()
        self.register_buffer("resample_filter", outer if up or down else None)

    def forward(self, x):
        conv = torch.nn.functional.conv2d
        weight = None if self.weight is None else self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        taps = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        weight_pad = 0 if weight is None else weight.shape[-1] // 2
        taps_pad = 0 if taps is None else (taps.shape[-1] - 1) // 2
        if weight is not None and self.fused_resample and self.up:
            x = torch.nn.functional.conv_transpose2d(x, taps.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                                                     stride=2, padding=max(taps_pad - weight_pad, 0))
            x = conv(x, weight, padding=max(weight_pad - taps_pad, 0))
        elif weight is not None and self.fused_resample and self.down:
            x = conv(x, weight, padding=weight_pad + taps_pad)
            x = conv(x, taps.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = torch.nn.functional.conv_transpose2d(x, taps.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                                                         stride=2, padding=taps_pad)
            if self.down:
                x = conv(x, taps.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=taps_pad)
            if weight is not None:
                x = conv(x, weight, padding=weight_pad)
        return x if bias is None else x + bias.reshape(1, -1, 1, 1)


class GroupNorm(torch.nn.Module):
    """Group normalisation with min(num_groups, C // min_channels_per_group) groups."""

    EDM_CLASS = "GroupNorm"

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return torch.nn.functional.group_norm(x, num_groups=self.num_groups, weight=self.weight.to(x.dtype),
                                              bias=self.bias.to(x.dtype), eps=self.eps)


def attention(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Multi-head self-attention over pixels, plain torch ops (forward-mode AD and vmap work).
    ``qkv`` (N, 3C, H, W) with channels laid out head-major, then channel, then q/k/v; returns
    (N, C, H, W). Weights softmax(qᵀk/√c) are computed in float32."""
    batch, triple, height, width = qkv.shape
    channels = triple // 3
    q, k, v = qkv.reshape(batch * num_heads, channels // num_heads, 3, height * width).unbind(2)
    logits = torch.einsum("ncq,nck->nqk", q.to(torch.float32), (k / math.sqrt(k.shape[1])).to(torch.float32))
    weights = logits.softmax(dim=2).to(q.dtype)
    return torch.einsum("nqk,nck->ncq", weights, v).reshape(batch, channels, height, width)


class UNetBlock(torch.nn.Module):
    """Residual block of all three architectures: GroupNorm-SiLU-conv (with optional 2× up/down),
    embedding injected as a bias (``adaptive_scale=False``) or as scale and shift, GroupNorm-SiLU-
    dropout-conv, skip connection (a 1×1 or resampling-only conv when shapes change), × skip_scale;
    then optionally self-attention with ``num_heads`` heads (a residual too)."""

    EDM_CLASS = "UNetBlock"

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False, down: bool = False,
                 attention: bool = False, num_heads: int | None = None, channels_per_head: int = 64, dropout: float = 0.0,
                 skip_scale: float = 1.0, eps: float = 1e-5, resample_filter=(1, 1), resample_proj: bool = False,
                 adaptive_scale: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.emb_channels = in_channels, out_channels, emb_channels
        self.num_heads = 0 if not attention else num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, resample_filter=resample_filter)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = Conv2d(out_channels, out_channels, 1)

    def forward(self, x, emb):
        shortcut = x
        x = self.conv0(silu(self.norm0(x)))
        params = self.affine(emb).unsqueeze(2).unsqueeze(3).to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(chunks=2, dim=1)
            x = silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = silu(self.norm1(x + params))
        x = self.conv1(torch.nn.functional.dropout(x, p=self.dropout, training=self.training))
        x = (x + (shortcut if self.skip is None else self.skip(shortcut))) * self.skip_scale
        if self.num_heads:
            x = (self.proj(attention(self.qkv(self.norm2(x)), self.num_heads)) + x) * self.skip_scale
        return x


class PositionalEmbedding(torch.nn.Module):
    """[cos(t·ω_i), sin(t·ω_i)] with ω_i = (1/max_positions)^(i/(C/2 − endpoint)); (N,) → (N, C)."""

    EDM_CLASS = "PositionalEmbedding"

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x):
        half = self.num_channels // 2
        freqs = torch.arange(start=0, end=half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        angles = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class FourierEmbedding(torch.nn.Module):
    """[cos(2π t f_i), sin(2π t f_i)] with random frequencies ``freqs`` (C/2,) (a buffer); (N,) → (N, C)."""

    EDM_CLASS = "FourierEmbedding"

    def __init__(self, num_channels: int, scale: float = 16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x):
        angles = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


def _label_dropout(module, labels, batch: int):
    if module.training and module.label_dropout:
        keep = torch.rand([batch, 1], device=labels.device) >= module.label_dropout
        return labels * keep.to(labels.dtype)
    return labels


def _decoder_level(decoder, tag, lowest, channels, skips, out_channels, num_blocks, attention, block) -> int:
    """Add one decoder level's blocks to ``decoder`` (a ModuleDict): at the lowest resolution two
    blocks at constant width (``in0`` with attention, ``in1``), else a 2× ``up`` block; then
    ``num_blocks + 1`` blocks, each taking a skip connection (channel counts popped from
    ``skips``), with attention where ``attention(index)``. Returns the level's output channels."""
    if lowest:
        decoder[f"{tag}_in0"] = UNetBlock(channels, channels, attention=True, **block)
        decoder[f"{tag}_in1"] = UNetBlock(channels, channels, **block)
    else:
        decoder[f"{tag}_up"] = UNetBlock(channels, channels, up=True, **block)
    for index in range(num_blocks + 1):
        decoder[f"{tag}_block{index}"] = UNetBlock(channels + skips.pop(), out_channels, attention=attention(index), **block)
        channels = out_channels
    return channels


class SongUNet(torch.nn.Module):
    """DDPM++ (positional embedding, standard encoder, filter [1,1]) and NCSN++ (Fourier
    embedding, residual encoder, filter [1,3,3,1]) U-Nets; also the 'skip' encoder/decoder
    variants. F(x (N, C_in, R, R), noise labels (N,), class labels (N, label_dim) or None,
    augment labels (N, augment_dim) or None) → (N, C_out, R, R)."""

    EDM_CLASS = "SongUNet"

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, augment_dim=0, model_channels=128,
                 channel_mult=(1, 2, 2, 2), channel_mult_emb=4, num_blocks=4, attn_resolutions=(16,), dropout=0.10,
                 label_dropout=0, embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                 decoder_type="standard", resample_filter=(1, 1)):
        if embedding_type not in SONG_EMBEDDINGS or encoder_type not in SONG_ENCODERS or decoder_type not in SONG_DECODERS:
            raise ValueError("unknown SongUNet embedding, encoder or decoder type")
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        block = dict(emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                     resample_filter=resample_filter, resample_proj=True, adaptive_scale=False)
        self.map_noise = (PositionalEmbedding(noise_channels, endpoint=True) if embedding_type == "positional"
                          else FourierEmbedding(noise_channels))
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)

        self.enc = torch.nn.ModuleDict()
        channels = aux_channels = in_channels
        for level, mult in enumerate(channel_mult):
            size = img_resolution >> level
            tag = f"{size}x{size}"
            if level == 0:
                self.enc[f"{tag}_conv"] = Conv2d(channels, model_channels, 3)
                channels = model_channels
            else:
                self.enc[f"{tag}_down"] = UNetBlock(channels, channels, down=True, **block)
                if encoder_type == "skip":
                    self.enc[f"{tag}_aux_down"] = Conv2d(aux_channels, aux_channels, 0, down=True, resample_filter=resample_filter)
                    self.enc[f"{tag}_aux_skip"] = Conv2d(aux_channels, channels, 1)
                if encoder_type == "residual":
                    self.enc[f"{tag}_aux_residual"] = Conv2d(aux_channels, channels, 3, down=True, resample_filter=resample_filter,
                                                             fused_resample=True)
                    aux_channels = channels
            for index in range(num_blocks):
                self.enc[f"{tag}_block{index}"] = UNetBlock(channels, model_channels * mult, attention=size in attn_resolutions, **block)
                channels = model_channels * mult
        skips = [module.out_channels for name, module in self.enc.items() if "aux" not in name]

        self.dec = torch.nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            size = img_resolution >> level
            tag = f"{size}x{size}"
            attention = size in attn_resolutions  # DDPM++/NCSN++: only on the level's last block
            channels = _decoder_level(self.dec, tag, level == len(channel_mult) - 1, channels, skips, model_channels * mult,
                                      num_blocks, lambda index: attention and index == num_blocks, block)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{tag}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True, resample_filter=resample_filter)
                self.dec[f"{tag}_aux_norm"] = GroupNorm(channels, eps=1e-6)
                self.dec[f"{tag}_aux_conv"] = Conv2d(channels, out_channels, 3)

    def forward(self, x, noise_labels, class_labels, augment_labels=None):
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [sin, cos]
        if self.map_label is not None:
            labels = _label_dropout(self, class_labels, x.shape[0])
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = silu(self.map_layer1(silu(self.map_layer0(emb))))

        skips, aux = [], x
        for name, module in self.enc.items():
            if "aux_down" in name:
                aux = module(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + module(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + module(aux)) / math.sqrt(2)
            else:
                x = module(x, emb) if isinstance(module, UNetBlock) else module(x)
                skips.append(x)

        aux = normed = None
        for name, module in self.dec.items():
            if "aux_up" in name:
                aux = module(aux)
            elif "aux_norm" in name:
                normed = module(x)
            elif "aux_conv" in name:
                normed = module(silu(normed))
                aux = normed if aux is None else normed + aux
            else:
                if x.shape[1] != module.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = module(x, emb)
        return aux


class DhariwalUNet(torch.nn.Module):
    """The ADM U-Net (scale-and-shift embedding, attention heads of 64 channels). Same call as
    :class:`SongUNet`."""

    EDM_CLASS = "DhariwalUNet"

    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, augment_dim=0, model_channels=192,
                 channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.10,
                 label_dropout=0):
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        block = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout)
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        self.enc = torch.nn.ModuleDict()
        channels = in_channels
        for level, mult in enumerate(channel_mult):
            size = img_resolution >> level
            tag = f"{size}x{size}"
            if level == 0:
                self.enc[f"{tag}_conv"] = Conv2d(channels, model_channels * mult, 3)
                channels = model_channels * mult
            else:
                self.enc[f"{tag}_down"] = UNetBlock(channels, channels, down=True, **block)
            for index in range(num_blocks):
                self.enc[f"{tag}_block{index}"] = UNetBlock(channels, model_channels * mult, attention=size in attn_resolutions, **block)
                channels = model_channels * mult
        skips = [module.out_channels for module in self.enc.values()]

        self.dec = torch.nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            size = img_resolution >> level
            channels = _decoder_level(self.dec, f"{size}x{size}", level == len(channel_mult) - 1, channels, skips,
                                      model_channels * mult, num_blocks, lambda index, size=size: size in attn_resolutions, block)
        self.out_norm = GroupNorm(channels)
        self.out_conv = Conv2d(channels, out_channels, 3)

    def forward(self, x, noise_labels, class_labels, augment_labels=None):
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(silu(self.map_layer0(emb)))
        if self.map_label is not None:
            emb = emb + self.map_label(_label_dropout(self, class_labels, x.shape[0]))
        emb = silu(emb)
        skips = []
        for module in self.enc.values():
            x = module(x, emb) if isinstance(module, UNetBlock) else module(x)
            skips.append(x)
        for module in self.dec.values():
            if x.shape[1] != module.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = module(x, emb)
        return self.out_conv(silu(self.out_norm(x)))


#: NVIDIA's class name → pagbench's class, for every network class of the published pickles.
UNETS = {cls.EDM_CLASS: cls for cls in (SongUNet, DhariwalUNet)}
BLOCKS = {cls.EDM_CLASS: cls for cls in (Linear, Conv2d, GroupNorm, UNetBlock, PositionalEmbedding, FourierEmbedding)}
