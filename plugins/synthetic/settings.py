"""The default parameters of the embedded dataset (light: no torch import)."""

from .config import SyntheticConfig

DEFAULT_CONFIG = SyntheticConfig()
TRAIN_SIZE = 20000
TEST_SIZE = 1000
TRAIN_SEED, TEST_SEED = 1, 2
