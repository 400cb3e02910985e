"""The model store: weights that pagbench trains or fits itself, kept under the cache directory.

Each stored model is one folder ``<cache dir>/models/<identifier>/`` holding

* ``weights.pt``: a state dict saved by ``torch.save`` (loadable with
  ``torch.load(weights_only=True)``), with ``weights.pt.sha256`` beside it;
* a JSON record (its recipe, training summary, ...) under the name its owner chooses: the zoo
  writes ``recipe.json``, the fitted denoisers and autoencoders ``record.json``.

Every file is written atomically; tensors files are checked on reading against their digest
(files from before digests existed have none) and their zip CRCs (:mod:`pagbench.files.integrity`), so a
damaged file is a one-line :class:`~pagbench.files.integrity.DamagedFile`, never other weights. Plugins
choose the identifiers (usually a readable prefix and :func:`pagbench.files.fingerprint.fingerprint` of
the recipe) and what to do about damage (retrain, or tell the user).

Processes that may train the same model at once (two sweeps, two Slurm arrays on one shared
cache) take :func:`model_lock` around "train unless stored": the first trains, the others wait,
then find it stored and reuse it.
"""

from __future__ import annotations

import io
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from pagbench.files.integrity import DamagedFile
from pagbench.files.paths import cache_dir, write_json_atomic

WEIGHTS = "weights.pt"


def store_dir() -> Path:
    """``<cache dir>/models``."""
    return cache_dir() / "models"


def model_dir(identifier: str) -> Path:
    """The folder of the stored model ``identifier``."""
    return store_dir() / identifier


_held: dict[str, int] = {}  # identifier → depth of the locks this process holds on it
_held_guard = threading.Lock()


def lock_path(identifier: str) -> Path:
    """``<cache dir>/models/<identifier>.lock``, the lock file of :func:`model_lock`."""
    return store_dir() / f"{identifier}.lock"


@contextmanager
def model_lock(identifier: str, on_wait=None):
    """Hold the exclusive lock of the stored model ``identifier`` (``fcntl.flock`` on
    :func:`lock_path`; works across processes and machines on a local or NFSv4 file system).
    Blocks while another process holds it, calling ``on_wait(path)`` once first. Re-entrant
    within a process (a nested ``model_lock`` of the same identifier does not wait for itself)."""
    import fcntl

    from pagbench.errors import PagbenchError

    with _held_guard:
        nested = _held.get(identifier, 0) > 0
        if nested:
            _held[identifier] += 1
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[identifier] -= 1
        return
    path = lock_path(identifier)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise PagbenchError(f"cannot lock {path}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(path)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        with _held_guard:
            _held[identifier] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(identifier, None)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def save_tensors(path: Path, payload) -> None:
    """``torch.save(payload)`` to ``path`` atomically, with its ``.sha256`` digest beside it."""
    import torch

    from pagbench.files.integrity import write_verified

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_verified(path, buffer.getvalue())


def load_tensors(path: Path, map_location="cpu"):
    """A file of :func:`save_tensors`, checked first (digest when present, zip CRCs); always
    ``weights_only`` loading. :class:`DamagedFile` (one line) when damaged or unreadable."""
    import torch

    from pagbench.files.integrity import read_verified, verify_archive

    data = read_verified(path, require_digest=False)
    verify_archive(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:
        raise DamagedFile(f"{path}: cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def is_stored(directory: Path, record_name: str) -> bool:
    """Whether ``directory`` holds both the weights and the record."""
    return (directory / WEIGHTS).exists() and (directory / record_name).exists()


def save_model(directory: Path, model, record: dict, record_name: str) -> None:
    """Store ``model``'s state dict (detached, on the CPU) and then ``record``."""
    save_tensors(directory / WEIGHTS, {key: value.detach().cpu() for key, value in model.state_dict().items()})
    write_json_atomic(directory / record_name, record)


def load_record(directory: Path, record_name: str) -> dict:
    """The JSON record of a stored model; :class:`DamagedFile` when unreadable."""
    path = directory / record_name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DamagedFile(f"{path}: unreadable ({type(error).__name__})") from None


def load_weights(directory: Path, model) -> None:
    """Load the stored weights into ``model`` strictly; :class:`DamagedFile` when the file is
    damaged or does not fit the network."""
    path = directory / WEIGHTS
    state = load_tensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except Exception as error:
        raise DamagedFile(f"{path}: does not fit the network ({type(error).__name__})") from None


def records(pattern: str, record_name: str) -> list[tuple[float, Path, dict]]:
    """(modification time, folder, record) of every stored model whose folder name matches the
    glob ``pattern`` and that holds readable weights and record; unreadable records are skipped."""
    root = store_dir()
    found = []
    for path in sorted(root.glob(f"{pattern}/{record_name}")) if root.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and (path.parent / WEIGHTS).is_file():
            found.append((path.stat().st_mtime, path.parent, record))
    return found
