"""Parameters of the embedded distribution (no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the embedded distribution (all lengths in [0,1] pixel units)."""

    num_classes: int = 10
    channels: int = 3
    size: int = 16
    max_frequency: int = 4
    noise_std: float = 0.02
    class_rank: int = 6
    within_std: float = 0.6
    floor_std: float = 0.4
    mean_std: float = 0.15
    seed: int = 0

    @property
    def dim(self) -> int:
        return self.channels * self.size * self.size

    def as_dict(self) -> dict:
        return asdict(self)
