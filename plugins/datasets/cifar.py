"""CIFAR-10 from its published python pickle batches (``cifar-10-batches-py/``).

Files: ``data_batch_1`` … ``data_batch_5`` (train) and ``test_batch``, each a pickled dict with
``b'data'`` (N, 3072) uint8 (R, G, B planes of 32×32, row-major) and ``b'labels'`` (N ints in
0..9). Read with a numpy-only unpickler (no code runs). The archive (torchvision's ``CIFAR10``
one, MD5-checked) is the ``cifar10-python`` asset (``pagbench assets fetch cifar10-python``),
downloaded when the network allows and extracted atomically; batches pagbench keeps are checked
against their published MD5s on every use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pagbench.plugin import Dataset

from .files import check_downloaded, find_directory, load_data_pickle, missing_error, corrupt_error
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
    """The directory holding the batches: ``--data-root`` (format checks only), else pagbench's
    data folder, else the batches extracted from the ``cifar10-python`` asset (fetched when online,
    its published MD5 checked; :func:`extract_archive`). Batches pagbench keeps are checked
    against :data:`FILE_MD5` every time (:func:`.files.check_downloaded`)."""
    directory = find_directory(data_root, "cifar10", FILES, ["cifar-10-batches-py"])
    if directory is None and data_root is None:
        directory = asset_batches()
    if directory is None:
        from . import CIFAR10_ASSET

        raise missing_error("cifar10", data_root, FILES, "DIR or DIR/cifar-10-batches-py",
                            f"run `pagbench assets fetch {CIFAR10_ASSET}` or get {URL} and extract it there")
    check_downloaded(directory, FILE_MD5, "cifar10")
    return directory


def asset_batches() -> Path:
    """The batches extracted from the archive asset (fetching the archive if missing and online;
    offline: :class:`pagbench.files.assets.AssetUnavailable` naming the fetch command). Under the
    test-only asset table the archive's per-file MD5s are not the published ones: they are then
    not compared (the archive's own hash, from that table, is)."""
    from pagbench.plugin import assets

    from . import CIFAR10_ASSET

    entry = assets.get(CIFAR10_ASSET)
    extracted = assets.local_path(entry).parent / "cifar-10-batches-py"
    if not all((extracted / name).is_file() for name in FILES):
        archive = assets.resolve(entry, who="dataset 'cifar10'")
        extract_archive(archive, extracted)
    if not assets.overridden(entry):
        check_pins(extracted)
    return extracted


def check_pins(directory: Path) -> None:
    from pagbench.plugin import check_pinned

    for name, md5 in FILE_MD5.items():
        check_pinned(directory / name, md5, algorithm="md5", what="dataset 'cifar10': extracted file",
                     remedy=f"delete {directory} and run again to extract it afresh")


def extract_archive(archive: Path, destination: Path) -> None:
    """Extract the batches of ``cifar-10-python.tar.gz`` into ``destination`` atomically: only
    regular files named in :data:`FILES` (and ``batches.meta``) under ``cifar-10-batches-py/`` are
    read, into a temporary sibling that is renamed into place; anything else in the archive is
    ignored, and a damaged archive is a one-line error that leaves nothing behind."""
    import os
    import shutil
    import tarfile
    import tempfile

    from pagbench.plugin import PagbenchError

    wanted = {f"cifar-10-batches-py/{name}" for name in (*FILES, "batches.meta")}
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".cifar-10-batches-py.", dir=destination.parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    if member.name not in wanted or not member.isfile():
                        continue
                    source = tar.extractfile(member)
                    with open(temporary / member.name.split("/", 1)[1], "wb") as stream:
                        shutil.copyfileobj(source, stream)
        except (tarfile.TarError, EOFError, OSError, ValueError) as error:
            raise PagbenchError(f"{archive} is not a readable CIFAR-10 archive ({type(error).__name__}: {error}); "
                                f"delete it and run `pagbench assets fetch cifar10-python`") from None
        missing = [name for name in FILES if not (temporary / name).is_file()]
        if missing:
            raise PagbenchError(f"{archive} lacks cifar-10-batches-py/{', '.join(missing)}; delete it and fetch it again")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(temporary, destination)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


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
    from pagbench.plugin import assets

    directory = locate(data_root)
    config = {"source": "cifar-10-python", "version": 1}
    if data_root is None and assets.OVERRIDE_FOLDER in Path(directory).parts:
        # images from the test-only asset table: other content, so other cache keys, and the result says so
        config["asset_table"] = f"TEST-ONLY override {assets.override_table_path()}"
    return Dataset(
        name="cifar10",
        num_classes=10,
        image_shape=(3, 32, 32),
        splits={
            "test": lambda: read_batches([directory / name for name in TEST_FILES]),
            "train": lambda: read_batches([directory / name for name in TRAIN_FILES]),
        },
        class_names=CLASSES,
        config=config,
        # The paper's figure: logspace(-3, 2, 20) with the headline ε ≈ 2.64 (l2, pixel units).
        robustness_epsilons=tuple(float(v) for v in np.logspace(-3, 2, 20)),
        headline_epsilon=float(np.logspace(-3, 2, 20)[13]),
    )
