"""Finding dataset files on disk, one-line errors naming what is missing, and safe readers.

Every loader looks in ``--data-root DIR`` when given, else in ``<cache dir>/data/<dataset>``
(``$PAGBENCH_CACHE_DIR``). Missing files raise a :class:`~pagbench.errors.PagbenchError` that
names the files expected and the directory searched; downloads are attempted only where the
dataset's licence allows one and ``PAGBENCH_OFFLINE`` is unset.

**Pinned downloads.** Downloads go through torchvision's downloader, which checks the archive's
(or file's) published MD5 and fails on a mismatch. Files pagbench keeps in its own data folder
(``<cache dir>/data/<dataset>``: what it downloaded) are checked again every time the dataset is
opened, against the published per-file MD5s (:func:`check_downloaded`; each file is hashed once
per size and mtime, :func:`pagbench.files.pinned.file_digest`), and refused in one line when one
differs. Files under a user's ``--data-root`` are not compared with any hash (users may keep
their own copies, e.g. re-encoded); they get the format checks of the readers (headers, shapes,
dtypes, label ranges, a pickle that cannot run code).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Iterable, Sequence

from pagbench.plugin import PagbenchError


from pagbench.plugin import offline  # noqa: E402  (one definition of PAGBENCH_OFFLINE)


def default_root(dataset: str) -> Path:
    from pagbench.plugin import cache_dir

    return cache_dir() / "data" / dataset


def find_directory(data_root, dataset: str, required: Sequence[str], subdirectories: Iterable[str] = ()) -> Path | None:
    """The first of ``data_root`` (or the default root) and its ``subdirectories`` holding every
    file in ``required`` (each name may list alternatives separated by ``|``); None if none does."""
    root = Path(data_root) if data_root is not None else default_root(dataset)
    for directory in [root, *(root / sub for sub in subdirectories)]:
        if all(any((directory / name).is_file() for name in alternatives.split("|")) for alternatives in required):
            return directory
    return None


def existing(directory: Path, alternatives: str) -> Path:
    """The first existing file among ``a|b|c`` in ``directory``."""
    for name in alternatives.split("|"):
        if (directory / name).is_file():
            return directory / name
    raise PagbenchError(f"{directory / alternatives.split('|')[0]} is missing")


def missing_error(dataset: str, data_root, required: Sequence[str], where: str, hint: str = "") -> PagbenchError:
    """The one-line error for a dataset whose files are not found."""
    root = Path(data_root) if data_root is not None else default_root(dataset)
    names = ", ".join(name.replace("|", " or ") for name in required)
    return PagbenchError(
        f"dataset {dataset!r}: files not found under {root}: expected {names} in {where}"
        + (f"; {hint}" if hint else "")
        + " (pass --data-root DIR)"
    )


def corrupt_error(path: Path, problem: str) -> PagbenchError:
    return PagbenchError(f"{path} is truncated or not a valid file: {problem}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused, so a data
    file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")


def load_data_pickle(path: Path):
    """A python-pickled data batch (CIFAR-10 layout), loaded without running code."""
    try:
        with open(path, "rb") as stream:
            return _NumpyOnlyUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise corrupt_error(path, f"{type(error).__name__}: {error}") from None


def read_maybe_gzip(path: Path) -> bytes:
    import gzip

    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise corrupt_error(path, str(error)) from None


def is_downloaded_copy(directory: Path, dataset: str) -> bool:
    """Whether ``directory`` lies in pagbench's own data folder for ``dataset`` (where it downloads)."""
    try:
        Path(directory).resolve().relative_to(default_root(dataset).resolve())
    except ValueError:
        return False
    return True


def check_downloaded(directory: Path, pins: dict, dataset: str, storage: str | None = None) -> None:
    """In pagbench's data folder (``storage``: the dataset folder the files are kept under; default
    ``dataset``), refuse in one line any file of ``pins`` (file name → published MD5) whose MD5
    differs. Files that are absent and every file outside the data folder are left alone."""
    from pagbench.plugin import check_pinned

    if not is_downloaded_copy(directory, storage or dataset):
        return
    for name, md5 in pins.items():
        path = Path(directory) / name
        if path.is_file():
            check_pinned(path, md5, algorithm="md5", what=f"dataset {dataset!r}: downloaded file",
                         remedy=f"delete {path.parent} and run again to download it afresh")


def download(url: str, directory: Path, md5: str | None, extract: bool, dataset: str) -> None:
    """Download (and extract) ``url`` into ``directory`` with torchvision's verified downloader."""
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    directory.mkdir(parents=True, exist_ok=True)
    try:
        if extract:
            download_and_extract_archive(url, str(directory), md5=md5)
        else:
            download_url(url, str(directory), md5=md5)
    except Exception as error:  # network down, proxy, checksum: one line
        raise PagbenchError(f"dataset {dataset!r}: download of {url} failed ({type(error).__name__}: {error})") from None


__all__ = ["offline", "default_root", "find_directory", "missing_error", "corrupt_error", "load_data_pickle", "read_maybe_gzip", "download", "check_downloaded",
           "is_downloaded_copy", "io"]
