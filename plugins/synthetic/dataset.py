"""The ``synthetic`` dataset object: splits sampled from :class:`SyntheticDistribution`."""

from __future__ import annotations

from pagbench.plugin import Dataset, TensorSplit

from .generator import SyntheticDistribution
from .settings import DEFAULT_CONFIG, TEST_SEED, TEST_SIZE, TRAIN_SEED, TRAIN_SIZE


class SyntheticDataset(Dataset):
    """A :class:`pagbench.evaluation.data.Dataset` that also exposes its exact ``distribution``."""

    distribution: SyntheticDistribution


def build_dataset(config=DEFAULT_CONFIG, train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE) -> SyntheticDataset:
    distribution = SyntheticDistribution(config)

    def split(count: int, seed: int):
        return lambda: TensorSplit(*distribution.sample(count, seed=seed))

    dataset = SyntheticDataset(
        name="synthetic",
        num_classes=config.num_classes,
        image_shape=(config.channels, config.size, config.size),
        splits={"test": split(test_size, TEST_SEED), "train": split(train_size, TRAIN_SEED)},
        class_names=tuple(f"class{index}" for index in range(config.num_classes)),
        config={**config.as_dict(), "train_size": train_size, "test_size": test_size, "train_seed": TRAIN_SEED, "test_seed": TEST_SEED},
        # ε is an l2 norm in pixel units; the class-specific directions have std `within_std`
        # along the manifold, so ε = 1 is a large but in-distribution step.
        robustness_epsilons=(1.0,),
        headline_epsilon=1.0,
    )
    dataset.distribution = distribution
    return dataset
