"""Finding dataset files on disk, one-line errors naming what is missing, and safe readers.

Every loader looks in ``--data-root DIR`` when given, else in ``<cache dir>/data/<dataset>``
(``$PAGBENCH_CACHE_DIR``). Missing files raise a :class:`~pagbench.errors.PagbenchError` that
names the files expected and the directory searched; downloads are attempted only where the
dataset's licence allows one and ``PAGBENCH_OFFLINE`` is unset.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Iterable, Sequence

from pagbench.errors import PagbenchError


from pagbench.paths import offline  # noqa: E402  (one definition of PAGBENCH_OFFLINE)


def default_root(dataset: str) -> Path:
    from pagbench.paths import cache_dir

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


__all__ = ["offline", "default_root", "find_directory", "missing_error", "corrupt_error", "load_data_pickle", "read_maybe_gzip", "download", "io"]
