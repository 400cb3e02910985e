"""Pinned files: every file pagbench downloads is checked against a known hash before use.

:func:`file_digest` hashes a file once and remembers the digest by (path, size, mtime) in
memory and in ``<cache dir>/digests.json``, so a large file that does not change is read once
(a file that changes gets a new size or mtime and is hashed again). :func:`check_pinned` compares
a file with its pinned digest (a full hex digest, or a prefix of at least 8 hex digits, as
torch.hub's ``hash_prefix``) and refuses a mismatch in one line naming the file and the way out.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pagbench.errors import PagbenchError

ALGORITHMS = ("sha256", "md5")
_SHOWN = {"sha256": "SHA-256", "md5": "MD5"}
_MEMORY: dict[tuple, str] = {}
_HEX = re.compile(r"^[0-9a-f]+$")


def _store() -> Path:
    from pagbench.files.paths import cache_dir

    return cache_dir() / "digests.json"


def _read_store() -> dict:
    try:
        data = json.loads(_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(key: str, digest: str) -> None:
    from pagbench.files.paths import write_json_atomic

    data = _read_store()
    data[key] = digest
    if len(data) > 1000:  # keep the file small: the newest entries win
        data = dict(list(data.items())[-1000:])
    try:
        write_json_atomic(_store(), data)
    except OSError:
        pass  # the digest is only a shortcut: an unwritable cache costs a re-hash, nothing more


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, data).hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of the file at ``path``, hashed once per (path, size, mtime)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported hash {algorithm!r}")
    path = Path(path)
    stat = path.stat()
    key = f"{algorithm}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if key in _MEMORY:
        return _MEMORY[key]
    stored = _read_store().get(key)
    if isinstance(stored, str) and _HEX.match(stored):
        _MEMORY[key] = stored
        return stored
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    _MEMORY[key] = value
    _remember(key, value)
    return value


def normalise_pin(pin: str, what: str = "sha256", algorithm: str = "sha256") -> str:
    """``pin`` as lower-case hex, at least 8 digits and at most the digest's length; else a one-line error."""
    text = str(pin).strip().lower()
    if text.startswith(f"{algorithm}:"):
        text = text[len(algorithm) + 1:]
    length = hashlib.new(algorithm).digest_size * 2
    if not _HEX.match(text or "-") or not 8 <= len(text) <= length:
        raise PagbenchError(f"{what}={pin!r}: expected the file's {algorithm.upper()} as 8 to {length} hex digits")
    return text


def matches(digest: str, pin: str) -> bool:
    return digest.lower().startswith(pin.lower())


def check_pinned(path: str | Path, pin: str, *, what: str, algorithm: str = "sha256", remedy: str = "") -> str:
    """Return the file's digest when it starts with ``pin``; else raise a one-line
    :class:`PagbenchError` naming ``what`` (e.g. "the metric's backbone weights"), the file, both
    digests and ``remedy``."""
    digest = file_digest(path, algorithm)
    if not matches(digest, pin):
        raise PagbenchError(f"{what} {path} has {_SHOWN[algorithm]} {digest[:16]}…, not the pinned {pin[:16]}…: refusing to use "
                            f"it (damaged or a different file)" + (f"; {remedy}" if remedy else ""))
    return digest


def forget(path: str | Path | None = None) -> None:
    """Drop remembered digests (of ``path``, or all) from memory; for tests."""
    if path is None:
        _MEMORY.clear()
        return
    resolved = str(Path(path).resolve())
    for key in [key for key in _MEMORY if f":{resolved}:" in key]:
        del _MEMORY[key]


__all__ = ["check_pinned", "digest_bytes", "file_digest", "forget", "matches", "normalise_pin"]
