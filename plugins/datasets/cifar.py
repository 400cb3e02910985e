"""CIFAR-10 from its published python pickle batches (``cifar-10-batches-py/``).

Files: ``data_batch_1`` … ``data_batch_5`` (train) and ``test_batch``, each a pickled dict with
``b'data'`` (N, 3072) uint8 (R, G, B planes of 32×32, row-major) and ``b'labels'`` (N ints in
0..9). Read with a numpy-only unpickler (no code runs). Downloaded with torchvision's verified
downloader (the archive torchvision's ``CIFAR10`` uses, MD5-checked) when the network allows;
batches in pagbench's data folder are checked against their published MD5s on every use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pagbench.data import Dataset

from .files import check_downloaded, default_root, download, find_directory, load_data_pickle, missing_error, offline, corrupt_error
from .splits import Uint8Split

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # the archive's published MD5 (torchvision's CIFAR10.tgz_md5)
#: Published MD5 of every extracted batch (torchvision's ``CIFAR10.train_list`` / ``test_list``).
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_FILES = ("test_batch",)
FILES = TRAIN_FILES + TEST_FILES
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def locate(data_root) -> Path:
    """The directory holding the batches, downloading them into the default root if allowed
    (the archive's MD5 is checked by the downloader; batches kept in pagbench's data folder are
    checked against :data:`FILE_MD5` every time, :func:`.files.check_downloaded`)."""
    directory = find_directory(data_root, "cifar10", FILES, ["cifar-10-batches-py"])
    if directory is None and data_root is None and not offline():
        download(URL, default_root("cifar10"), MD5, extract=True, dataset="cifar10")
        directory = find_directory(data_root, "cifar10", FILES, ["cifar-10-batches-py"])
    if directory is None:
        raise missing_error("cifar10", data_root, FILES, "DIR or DIR/cifar-10-batches-py",
                            f"get {URL} and extract it there")
    check_downloaded(directory, FILE_MD5, "cifar10")
    return directory


def read_batches(paths) -> Uint8Split:
    images, labels = [], []
    for path in paths:
        entry = load_data_pickle(path)
        if not isinstance(entry, dict):
            raise corrupt_error(path, "not a CIFAR-10 batch dict")
        entry = {key.decode() if isinstance(key, bytes) else key: value for key, value in entry.items()}
        if "data" not in entry or "labels" not in entry:
            raise corrupt_error(path, "no 'data' / 'labels' entries")
        data = np.asarray(entry["data"])
        label = np.asarray(entry["labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != label.shape[0]:
            raise corrupt_error(path, f"data {data.dtype} {data.shape} with {label.shape[0]} labels, expected (N, 3072) uint8")
        if label.size and (label.min() < 0 or label.max() > 9):
            raise corrupt_error(path, "labels outside 0..9")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(label))
    return Uint8Split(torch.cat(images), torch.cat(labels))


def build_dataset(data_root) -> Dataset:
    directory = locate(data_root)
    return Dataset(
        name="cifar10",
        num_classes=10,
        image_shape=(3, 32, 32),
        splits={
            "test": lambda: read_batches([directory / name for name in TEST_FILES]),
            "train": lambda: read_batches([directory / name for name in TRAIN_FILES]),
        },
        class_names=CLASSES,
        config={"source": "cifar-10-python", "version": 1},
        # The paper's figure: logspace(-3, 2, 20) with the headline ε ≈ 2.64 (l2, pixel units).
        robustness_epsilons=tuple(float(v) for v in np.logspace(-3, 2, 20)),
        headline_epsilon=float(np.logspace(-3, 2, 20)[13]),
    )
