"""Where pagbench keeps things on disk, and atomic file writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import PagbenchError


def cache_dir() -> Path:
    """``$PAGBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/pagbench``, else ``~/.cache/pagbench``."""
    explicit = os.environ.get("PAGBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pagbench"


def offline() -> bool:
    """True when ``$PAGBENCH_OFFLINE`` is set to anything but "", "0", "false" or "no": nothing is downloaded."""
    return os.environ.get("PAGBENCH_OFFLINE", "") not in ("", "0", "false", "no")


def write_atomic(path: str | os.PathLike, write) -> Path:
    """Write a file through ``write(handle)`` into a temporary sibling, then rename it into place.

    Readers never see a partial file; on any error the temporary file is removed and a
    :class:`PagbenchError` names the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise PagbenchError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise PagbenchError(f"cannot write {path}: {error.strerror or error}") from error
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return write_atomic(path, lambda stream: stream.write(text.encode()))
