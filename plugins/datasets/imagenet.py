"""ImageNet at 64×64 (the downsampled release's npz batches) and ILSVRC2012 validation images
in torchvision's ImageNet / ImageFolder layout at 224×224.

* ``imagenet64``: ``train_data_batch_1.npz`` … ``train_data_batch_10.npz`` and ``val_data.npz``
  (Chrabaszcz et al., 2017), each with ``data`` (N, 12288) uint8 — the R, G and B planes of a
  64×64 image, row-major — and ``labels`` (N,) in 1..1000. Read with ``allow_pickle=False``.
  The release needs an image-net.org login, so nothing is downloaded.
* ``imagenet``: ``DIR/val/<wnid>/*.JPEG`` (or ``DIR/<wnid>/*``), one folder per class; the class
  index is the folder's position in sorted order (the standard wnid order when all 1,000 are
  present). Images are resized (shorter side 256) and centre-cropped to 224×224. Scores are
  taken at 64×64: the dataset carries ``score_image_shape = (3, 64, 64)`` and the gradient is
  resized the same way (area averaging) before it is compared with a score.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pagbench.plugin import Batch, Dataset, ImageSplit
from pagbench.plugin import PagbenchError

from .files import corrupt_error, default_root, missing_error
from .splits import Uint8Split

TRAIN_FILES = tuple(f"train_data_batch_{index}.npz" for index in range(1, 11))
VAL_FILES = ("val_data.npz",)
SUBDIRECTORIES = ("Imagenet64_val_npz", "Imagenet64_train_npz", "Imagenet64")
WHERE = "https://image-net.org/download-images.php (Downsampled ImageNet 64x64, npz)"


def read_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 64, 64) uint8, labels (N,) int64 in 0..999) of one npz batch."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            data, labels = archive["data"], np.asarray(archive["labels"])
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise corrupt_error(path, f"{type(error).__name__}: {error}") from None
    except Exception as error:  # zipfile.BadZipFile and friends
        raise corrupt_error(path, f"{type(error).__name__}: {error}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 64 * 64 or labels.shape != (data.shape[0],):
        raise corrupt_error(path, f"data {data.dtype} {data.shape}, labels {labels.shape}; expected (N, 12288) uint8 and (N,)")
    if labels.size and (labels.min() < 1 or labels.max() > 1000):
        raise corrupt_error(path, "labels outside 1..1000")
    return torch.from_numpy(data.reshape(-1, 3, 64, 64).copy()), torch.from_numpy(labels.astype(np.int64) - 1)


def _find_file(root: Path, name: str) -> Path | None:
    for directory in [root, *(root / sub for sub in SUBDIRECTORIES)]:
        if (directory / name).is_file():
            return directory / name
    return None


class NpzBatchesSplit(ImageSplit):
    """A split spread over npz batch files, each loaded on first use (one kept in memory)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self.sizes = []
        for path in self.paths:
            try:
                with np.load(path, allow_pickle=False) as archive:
                    self.sizes.append(int(archive["labels"].shape[0]))
            except Exception as error:
                raise corrupt_error(path, f"{type(error).__name__}: {error}") from None
        self.offsets = list(np.cumsum([0] + self.sizes))
        self._loaded: tuple[int, Uint8Split] | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _file(self, number: int) -> Uint8Split:
        if self._loaded is None or self._loaded[0] != number:
            self._loaded = (number, Uint8Split(*read_npz(self.paths[number])))
        return self._loaded[1]

    def batch(self, indices: Sequence[int]) -> Batch:
        images, labels = [], []
        for index in indices:
            number = bisect.bisect_right(self.offsets, int(index)) - 1
            part = self._file(number).batch([int(index) - int(self.offsets[number])])
            images.append(part.images)
            labels.append(part.labels)
        return Batch(torch.cat(images), torch.cat(labels), torch.as_tensor(list(indices), dtype=torch.long))


def build_imagenet64(data_root) -> Dataset:
    root = Path(data_root) if data_root is not None else default_root("imagenet64")
    val = _find_file(root, VAL_FILES[0])
    if val is None and data_root is None:  # the manual-only asset imagenet64-val (<asset root>/imagenet64/)
        from pagbench.plugin import assets

        asset_folder = assets.local_path(assets.get("imagenet64-val")).parent
        if _find_file(asset_folder, VAL_FILES[0]) is not None:
            root = asset_folder
            val = _find_file(root, VAL_FILES[0])
    if val is None:
        raise missing_error("imagenet64", data_root, VAL_FILES + ("train_data_batch_1.npz … train_data_batch_10.npz (for training)",),
                            "DIR or DIR/Imagenet64_val_npz", f"get them from {WHERE}; `pagbench assets manifest --dataset imagenet64` "
                            f"says where pagbench looks")
    train_paths = [path for path in (_find_file(root, name) for name in TRAIN_FILES) if path is not None]

    def train():
        if not train_paths:
            raise missing_error("imagenet64", data_root, TRAIN_FILES, "DIR or DIR/Imagenet64_train_npz", f"get them from {WHERE}")
        return NpzBatchesSplit(train_paths)

    return Dataset(
        name="imagenet64",
        num_classes=1000,
        image_shape=(3, 64, 64),
        splits={"test": lambda: Uint8Split(*read_npz(val)), "train": train},
        config={"source": "Imagenet64 npz", "version": 1},
        robustness_epsilons=(0.5, 1.0, 2.0, 4.0, 8.0),
        headline_epsilon=4.0,
    )


# ------------------------------------------------------------------------------ ImageNet 224
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
SCORE_SIZE = 64


class FolderSplit(ImageSplit):
    """Images read from files on demand: resize (shorter side 256), centre crop 224, [0,1]."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], size: int = 224):
        self.files, self.labels, self.size = list(files), torch.as_tensor(list(labels), dtype=torch.long), size

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms import functional as transforms

        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                image = transforms.resize(image, round(self.size * 256 / 224))
                image = transforms.center_crop(image, self.size)
                return transforms.to_tensor(image)
        except (OSError, UnidentifiedImageError) as error:
            raise corrupt_error(path, f"{type(error).__name__}: {error}") from None

    def batch(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Batch(torch.stack([self._load(self.files[i]) for i in index.tolist()]), self.labels[index], index)


def build_imagenet(data_root) -> Dataset:
    root = Path(data_root) if data_root is not None else default_root("imagenet")
    candidates = [root / "val", root]
    directory = next((c for c in candidates if c.is_dir() and any(p.is_dir() for p in c.iterdir())), None)
    if directory is None:
        raise missing_error("imagenet", data_root, ["val/<wnid>/*.JPEG"], "DIR (torchvision ImageNet or ImageFolder layout)",
                            "the ILSVRC2012 validation images sorted into one folder per class")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((directory / name).iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
                labels.append(label)
    if not files:
        raise PagbenchError(f"dataset 'imagenet': no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {directory}")
    dataset = Dataset(
        name="imagenet",
        num_classes=len(classes),
        image_shape=(3, 224, 224),
        splits={"test": FolderSplit(files, labels)},
        class_names=tuple(classes),
        config={"source": "ILSVRC2012 val folders", "root": str(directory.resolve()), "classes": len(classes), "images": len(files)},
        robustness_epsilons=(1.0, 2.0, 4.0, 8.0, 16.0),
        headline_epsilon=8.0,
    )
    dataset.score_image_shape = (3, SCORE_SIZE, SCORE_SIZE)
    return dataset
