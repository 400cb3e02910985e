"""CIFAR-style ResNet18 (3×3 stem, no max-pool) with a width multiplier, taking [0,1] images.

``width`` is the number of channels of the first stage (64 = the paper's ResNet18); stages have
width, 2·width, 4·width, 8·width channels. Normalisation ((x − mean)/std per channel) is the
model's first layer, so gradients are w.r.t. [0,1] pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from pagbench.plugin import normalize_module


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Images (B, C, H, W) in [0,1] → logits (B, num_classes)."""

    def __init__(self, num_classes: int, channels: int = 3, width: int = 64, mean=(0.5,), std=(0.25,)):
        super().__init__()
        mean = tuple(mean) * (channels if len(mean) == 1 else 1)
        std = tuple(std) * (channels if len(std) == 1 else 1)
        self.normalize = normalize_module(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, inputs = [], width
        for index, outputs in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)))
            inputs = outputs
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, images):
        features = self.stages(self.stem(self.normalize(images)))
        return self.head(features.mean(dim=(2, 3)))
