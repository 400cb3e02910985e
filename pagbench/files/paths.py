"""Where pagbench keeps things on disk, and atomic file writes."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from pathlib import Path

from pagbench.errors import PagbenchError


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


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's
    ``/proc/self/status``); elsewhere set and restored at once under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse (one line) a ``path`` that exists and is not a regular file: pagbench replaces only
    regular files, never a folder, device node (``/dev/null``), pipe or socket. A symbolic link
    is judged by what it points to (replacing it replaces the link, never its target)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (a file in the way is the folder check's to report)
        return
    except OSError as error:
        raise PagbenchError(f"cannot write {path}: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise PagbenchError(f"cannot write {path}: it is a folder")
    if not stat.S_ISREG(mode):
        raise PagbenchError(f"cannot write {path}: it exists and is not a regular file "
                            "(a device, pipe or socket); pagbench only replaces regular files")


def _probe(folder: Path, what: str) -> None:
    """Create and remove a temporary file in the existing ``folder``: a one-line error if it cannot
    be done (permissions, a read-only or virtual file system such as /proc)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".pagbench-probe.", dir=folder)
    except OSError as error:
        raise PagbenchError(f"{what}: cannot create files in {folder}: {error.strerror or error}") from None
    os.close(handle)
    try:
        os.unlink(name)
    except OSError:
        pass


def _existing_ancestor(path: Path) -> Path:
    ancestor = path
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def check_writable_folder(path: str | os.PathLike, what: str) -> None:
    """``path`` is a folder files can be created in, or one that can be created (its nearest
    existing ancestor is a folder files can be created in). Creates nothing that stays."""
    path = Path(path)
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        where = "it is" if ancestor == path else f"{ancestor} is"
        raise PagbenchError(f"{what} {path} cannot be used: {where} a file, not a folder")
    _probe(ancestor, f"{what} {path}")


def check_writable_file(path: str | os.PathLike, what: str = "output") -> None:
    """Before any work: ``path`` can be written by :func:`write_atomic` (it is absent or a regular
    file, and its folder exists or can be created and accepts new files)."""
    path = Path(path)
    check_replaceable(path)
    check_writable_folder(path.parent, f"{what} {path}: folder")


def write_atomic(path: str | os.PathLike, write) -> Path:
    """Write a file through ``write(handle)`` into a temporary sibling, then rename it into place.

    Readers never see a partial file; on any error the temporary file is removed and a
    :class:`PagbenchError` names the path. Only a regular file is ever replaced (see
    :func:`check_replaceable`); the file gets mode ``0o666 & ~umask``, as ``open`` would give
    a new file, not ``mkstemp``'s 0600.
    """
    path = Path(path)
    check_replaceable(path)
    mode = 0o666 & ~current_umask()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise PagbenchError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        check_replaceable(path)  # a device node put there while writing is still not replaced
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
