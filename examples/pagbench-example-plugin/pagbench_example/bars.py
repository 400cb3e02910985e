"""The example dataset and a hand-made model for it."""

import torch

from pagbench.plugin import Dataset, TensorSplit


def _bars(count, seed):
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(count, 1, 16, 16, generator=generator)
    labels = torch.randint(0, 2, (count,), generator=generator)
    positions = torch.randint(2, 6, (count,), generator=generator)
    for index in range(count):
        p = int(positions[index])
        if labels[index] == 0:
            images[index, 0, 1:7, 2 * p] += 0.8  # vertical bar, top half
        else:
            images[index, 0, p, 2:14] += 0.8  # horizontal bar, top half
        row, col = torch.randint(9, 15, (2,), generator=generator).tolist()
        images[index, 0, row, 1:15] += 0.5 * torch.rand(1, generator=generator).item()  # clutter, bottom
        images[index, 0, 8:16, col] += 0.5 * torch.rand(1, generator=generator).item()
    mask = torch.zeros(count, 1, 16, 16, dtype=torch.bool)
    mask[:, :, :8] = True
    return TensorSplit(images.clamp(0, 1), labels, mask)


def build_dataset():
    return Dataset(
        name="example-bars",
        num_classes=2,
        image_shape=(1, 16, 16),
        splits={"train": lambda: _bars(400, 1), "test": lambda: _bars(200, 2)},
        config={"version": 1},
        robustness_epsilons=(0.5, 1.0, 2.0),
        headline_epsilon=1.0,
        noise_levels=(0.1, 0.3, 1.0),
        has_signal_mask=True,
    )


class TemplateModel(torch.nn.Module):
    """Compares bright rows with bright columns in the top half; glances at the bottom half."""

    def forward(self, images):
        top, bottom = images[:, 0, :8], images[:, 0, 8:]
        vertical = top.amax(2).sum(1) - top.amax(1).sum(1)  # a vertical bar lights many rows
        glance = 0.1 * (bottom.mean((1, 2)) - 0.2)
        return torch.stack([vertical + glance, -vertical - glance], dim=1)
