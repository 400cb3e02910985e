"""Digits with a letter distractor (the paper's MNIST construction), from MNIST or from
scikit-learn's bundled digits.

Each image is 56×28 (H×W), one channel: the digit (28×28) fills the top or the bottom half at
random and a rendered capital letter, independent of the label, fills the other half. The signal
mask is the digit's half. Two distractor kinds:

- ``fixed`` (the paper's set; ``digits-distractor``, ``mnist-distractor``): the same letter "A"
  at the same size and place in every image, as in the reference's "simple word distractor"
  MNIST. The distractor half then has no variation at all, so any noise there is off-manifold;
  the paper expects a model that is not off-manifold robust to react to it about as much as to
  noise on the digit (how far that holds here: README, "Real datasets").
- ``varied`` (``*-distractor-varied``, an ablation): a random letter at a random size, position
  and ink per image. The distractor then varies along directions the label does not depend on,
  so even standard training teaches invariance to that half.

Letters come from a 5×7 bitmap font defined here, upsampled bilinearly, so rendering is identical
on every machine. All randomness comes from a fixed seed per split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from pagbench.plugin import Dataset

from . import DISTRACTOR_VERSION
from .splits import Uint8Split

# A 5×7 bitmap font of the capital letters ('#' = ink).
FONT = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#",
    "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.",
    "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",
    "E": "#####|#....|#....|####.|#....|#....|#####",
    "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####",
    "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.",
    "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
    "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####",
    "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
    "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....",
    "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
    "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.",
    "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.",
    "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
    "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    "Z": "#####|....#|...#.|..#..|.#...|#....|#####",
}
LETTERS = tuple(FONT)
HALF = 28  # each half is 28×28
CONSTRUCTION_VERSION = int(DISTRACTOR_VERSION)  # one source: the dataset entries' version
DISTRACTORS = ("fixed", "varied")
#: The fixed distractor: letter, height, width, top row and left column inside its 28×28 half.
FIXED_LETTER = ("A", 18, 14, 4, 7)


def glyph(letter: str) -> torch.Tensor:
    """The 7×5 bitmap of ``letter`` as float32 in {0, 1}."""
    rows = FONT[letter].split("|")
    return torch.tensor([[1.0 if char == "#" else 0.0 for char in row] for row in rows])


def render_letter(letter: str, height: int, width: int) -> torch.Tensor:
    """``letter`` drawn like the upsampled digits: the 7×5 bitmap on an 8×6 grid, upsampled
    bilinearly to (height, width) — soft strokes 2–3 pixels wide — values in [0,1]."""
    padded = functional.pad(glyph(letter), (0, 1, 0, 1))[None, None]
    scaled = functional.interpolate(padded, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return (scaled / scaled.max().clamp_min(1e-6)).clamp(0, 1)


def compose(digits: torch.Tensor, labels: torch.Tensor, seed: int, copies: int = 1,
            distractor: str = "fixed") -> Uint8Split:
    """digits (N, 28, 28) float in [0,1] → a split of ``copies``·N images (1, 56, 28) uint8.

    Copy c of digit i is image c·N + i; each copy draws its own half from ``seed`` and, for the
    ``varied`` distractor, its own letter, size, position and ink intensity.
    """
    if distractor not in DISTRACTORS:
        raise ValueError(f"distractor must be one of {DISTRACTORS}, not {distractor!r}")
    count = digits.shape[0]
    total = count * copies
    generator = torch.Generator().manual_seed(seed)
    top = torch.rand(total, generator=generator) < 0.5
    letters = torch.randint(0, len(LETTERS), (total,), generator=generator)
    heights = torch.randint(16, 24, (total,), generator=generator)
    aspect = 0.7 + 0.3 * torch.rand(total, generator=generator)
    rows_free = torch.rand(total, generator=generator)
    cols_free = torch.rand(total, generator=generator)
    ink = 0.6 + 0.4 * torch.rand(total, generator=generator)
    widths = (heights * aspect).round().long().clamp(6, HALF - 2)
    rows = 1 + (rows_free * (HALF - 2 - heights)).long()
    cols = 1 + (cols_free * (HALF - 2 - widths)).long()
    if distractor == "fixed":
        letter, height, width, row, col = FIXED_LETTER
        letters.fill_(LETTERS.index(letter))
        heights.fill_(height), widths.fill_(width), rows.fill_(row), cols.fill_(col), ink.fill_(1.0)
    canvas = torch.zeros(total, 1, 2 * HALF, HALF)
    rendered: dict[tuple[int, int, int], torch.Tensor] = {}
    for index in range(total):
        height, width, row, col = int(heights[index]), int(widths[index]), int(rows[index]), int(cols[index])
        key = (int(letters[index]), height, width)
        if key not in rendered:
            rendered[key] = render_letter(LETTERS[key[0]], height, width)
        digit_offset, letter_offset = (0, HALF) if top[index] else (HALF, 0)
        canvas[index, 0, digit_offset : digit_offset + HALF] = digits[index % count]
        canvas[index, 0, letter_offset + row : letter_offset + row + height, col : col + width] = ink[index] * rendered[key]
    images = (canvas.clamp(0, 1) * 255).round().to(torch.uint8)
    return Uint8Split(images, labels.repeat(copies), top)


def distractor_dataset(name: str, splits: dict, config: dict) -> Dataset:
    return Dataset(
        name=name,
        num_classes=10,
        image_shape=(1, 2 * HALF, HALF),
        splits=splits,
        class_names=tuple(str(d) for d in range(10)),
        config={"construction": CONSTRUCTION_VERSION, **config},
        robustness_epsilons=(0.5, 1.0, 2.0, 4.0),
        headline_epsilon=2.0,
        # σ of the Gaussian noise added to one half (pixel units); the headline is the middle one,
        # 0.03: in the first-order regime, where the ratio says where the model's sensitivity lies
        # (measured on digits-distractor: from σ ≈ 0.17 noise on the digit flips a standard
        # model's prediction while noise on the letter does not, and from σ ≈ 1 both saturate).
        noise_levels=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        has_signal_mask=True,
    )


# ----------------------------------------------------------------------------- digits (sklearn)
DIGITS_TEST = 397
DIGITS_COPIES = 4


def upsampled_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8×8 digits (0..16) upsampled to 20×20 and padded to 28×28 like MNIST,
    as float32 in [0,1]; labels int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    images = functional.interpolate(images, size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1)
    images = functional.pad(images, (4, 4, 4, 4))[:, 0]
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


def dataset_name(base: str, distractor: str) -> str:
    """``digits-distractor`` for the paper's fixed distractor, ``digits-distractor-varied`` else."""
    return base if distractor == "fixed" else f"{base}-{distractor}"


def build_digits_dataset(data_root, distractor: str = "fixed", copies: int = DIGITS_COPIES) -> Dataset:
    """1,400 training digits × ``copies`` draws (half, and letter for ``varied``); 397 test digits × 1."""

    def split(name: str):
        def load():
            images, labels = upsampled_digits()
            order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
            chosen = order[:DIGITS_TEST] if name == "test" else order[DIGITS_TEST:]
            return compose(images[chosen], labels[chosen], seed=11 if name == "test" else 12,
                           copies=1 if name == "test" else copies, distractor=distractor)

        return load

    return distractor_dataset(
        dataset_name("digits-distractor", distractor),
        {"test": split("test"), "train": split("train")},
        {"source": "sklearn.datasets.load_digits", "distractor": distractor, "copies": copies, "test_size": DIGITS_TEST},
    )


# ------------------------------------------------------------------------------------- MNIST
def build_mnist_dataset(data_root, distractor: str = "fixed") -> Dataset:
    from .mnist import load_split, locate

    directory = locate(data_root)

    def split(name: str):
        def load():
            images, labels = load_split(directory, name)
            return compose(images.float() / 255.0, labels, seed=21 if name == "test" else 22, distractor=distractor)

        return load

    return distractor_dataset(dataset_name("mnist-distractor", distractor), {"test": split("test"), "train": split("train")},
                              {"source": "mnist-idx", "distractor": distractor})
