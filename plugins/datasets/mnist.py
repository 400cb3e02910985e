"""MNIST from its IDX files (``train-images-idx3-ubyte`` etc., raw or ``.gz``).

IDX: a big-endian header — two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions — then one big-endian uint32 per dimension, then the values. Files are looked for in
``DIR``, ``DIR/MNIST/raw`` (torchvision's layout) or ``DIR/raw``; without ``--data-root`` they
are the ``mnist-*`` assets (``pagbench assets fetch --dataset mnist-distractor``), downloaded
from torchvision's first MNIST mirror when the network allows.
"""

from __future__ import annotations

from pathlib import Path

from pagbench.plugin import PagbenchError

from .files import check_downloaded, corrupt_error, existing, find_directory, missing_error, read_maybe_gzip

FILES = {
    "train_images": "train-images-idx3-ubyte|train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte|train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte|t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte|t10k-labels-idx1-ubyte.gz",
}
SUBDIRECTORIES = ("MNIST/raw", "raw")
#: Published MD5 of the gzipped IDX files (torchvision's ``MNIST.resources``); pagbench downloads
#: these, and checks the copies in its data folder on every use. Uncompressed files have no
#: published hash and are not checked.
FILE_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def read_idx(path: Path) -> "numpy.ndarray":  # numpy and torch load with the dataset, not with the plugin
    """An IDX ubyte file as a numpy array; truncation and bad headers raise a one-line error."""
    import numpy as np

    data = read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise corrupt_error(path, "no IDX header")
    if data[2] != 0x08:
        raise corrupt_error(path, f"IDX type code 0x{data[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt_error(path, "header cut short")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise corrupt_error(path, f"{len(data)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def locate(data_root) -> Path:
    """``--data-root`` (format checks only), else pagbench's data folder, else the four MNIST
    assets (``<asset root>/mnist/``; fetched when online, MD5-checked; offline: the error names
    ``pagbench assets fetch``)."""
    required = list(FILES.values())
    directory = find_directory(data_root, "mnist", required, SUBDIRECTORIES)
    if directory is None and data_root is None:
        from pagbench.plugin import assets

        from . import MNIST_ASSETS

        command = assets.fetch_command("--dataset", "mnist-distractor")
        paths = [assets.resolve(assets.get(name), who="dataset 'mnist-distractor'", command=command) for name, _, _ in MNIST_ASSETS.values()]
        directory = paths[0].parent
    if directory is None:
        raise missing_error("mnist-distractor", data_root, required, "DIR, DIR/MNIST/raw or DIR/raw",
                            "the four MNIST IDX files from https://yann.lecun.com/exdb/mnist/ or a torchvision mirror")
    check_downloaded(directory, FILE_MD5, "mnist-distractor", storage="mnist")
    return directory


def load_split(directory: Path, split: str) -> tuple:
    """(images (N, 28, 28) uint8, labels (N,) int64) of ``train`` or ``test``."""
    import numpy as np
    import torch

    images = read_idx(existing(directory, FILES[f"{split}_images"]))
    labels = read_idx(existing(directory, FILES[f"{split}_labels"]))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise PagbenchError(f"MNIST {split} files disagree: images {images.shape}, labels {labels.shape}")
    if tuple(images.shape[1:]) != (28, 28):
        raise PagbenchError(f"MNIST {split} images in {directory} are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if labels.size and labels.max() > 9:
        raise PagbenchError(f"MNIST {split} labels outside 0..9")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
