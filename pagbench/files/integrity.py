"""Integrity of files pagbench writes and later reads, and of users' torch zip checkpoints.

* :func:`write_verified` writes a file atomically and, beside it, ``<name>.sha256`` holding the
  SHA-256 of its content (written atomically too, after the file). :func:`read_verified` reads
  the file back and compares: a mismatch (a flipped bit, a truncated file, a file replaced
  without its digest) raises :class:`DamagedFile`, which callers turn into a recomputation
  (caches), a retraining (model store) or a one-line refusal. The file itself stays what it was
  (``weights.pt`` is still loadable with ``torch.load(weights_only=True)``).
* :func:`verify_archive` checks every member CRC of a torch zip archive (what ``torch.save``
  writes) before ``torch.load`` reads it: ``torch.load`` does not check them, so a flipped bit
  in a weights file would otherwise load as other weights.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

from pagbench.errors import PagbenchError
from pagbench.files.paths import write_atomic

SUFFIX = ".sha256"


class DamagedFile(PagbenchError):
    """A file whose content does not match its recorded SHA-256 (or cannot be read)."""


def digest_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_verified(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, then its SHA-256 to ``<path>.sha256``.

    A crash between the two leaves a file whose digest is the old one (or missing): the next
    :func:`read_verified` reports it damaged, so it is recomputed, never trusted."""
    path = Path(path)
    sidecar = digest_path(path)
    try:
        sidecar.unlink()  # while the new file is going in, no digest vouches for it
    except FileNotFoundError:
        pass
    except OSError as error:
        raise PagbenchError(f"cannot write {sidecar}: {error.strerror or error}") from error
    write_atomic(path, lambda stream: stream.write(data))
    text = f"{sha256_bytes(data)}  {path.name}\n".encode()
    write_atomic(sidecar, lambda stream: stream.write(text))
    return path


def read_verified(path: str | os.PathLike, require_digest: bool = True) -> bytes:
    """The content of ``path`` after checking it against ``<path>.sha256``.

    Raises :class:`DamagedFile` (one line naming the file) when the content does not match, the
    digest is unreadable, or — with ``require_digest`` — the digest is missing. Files written
    before digests existed pass with ``require_digest=False``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DamagedFile(f"{path}: cannot read ({error.strerror or error})") from None
    sidecar = digest_path(path)
    if not sidecar.exists():
        if require_digest:
            raise DamagedFile(f"{path}: no {sidecar.name} beside it (written incompletely?)")
        return data
    try:
        expected = sidecar.read_text(encoding="ascii").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        raise DamagedFile(f"{path}: its digest {sidecar.name} is unreadable") from None
    actual = sha256_bytes(data)
    if actual != expected:
        raise DamagedFile(f"{path}: content does not match its SHA-256 (damaged or truncated: "
                          f"{len(data)} bytes, sha256 {actual[:12]}…, expected {expected[:12]}…)")
    return data


#: Header of a sealed file: the magic line, then the SHA-256 (hex) of the payload, then the payload.
SEAL = b"PAGBENCH-SHA256\n"


def seal(data: bytes) -> bytes:
    """``data`` prefixed with its SHA-256, for files that must be one atomic write (cache entries
    that several processes may write at once)."""
    return SEAL + sha256_bytes(data).encode() + b"\n" + data


def unseal(blob: bytes, path) -> bytes | None:
    """The payload of a sealed file; None for a file without the seal (written by an older
    pagbench); :class:`DamagedFile` when the payload does not match its digest."""
    if not blob.startswith(SEAL):
        return None
    header = len(SEAL) + 65
    expected, data = blob[len(SEAL) : header - 1].decode("ascii", "replace"), blob[header:]
    if len(blob) < header or blob[header - 1 : header] != b"\n" or sha256_bytes(data) != expected:
        raise DamagedFile(f"{path}: content does not match its SHA-256 (damaged or truncated, {len(blob)} bytes)")
    return data


_warned: set[str] = set()


def warn_damaged(error: Exception, action: str) -> None:
    """Report a damaged file once per process (a warning), saying what is done about it."""
    message = f"{error}; {action}"
    if message in _warned:
        return
    _warned.add(message)
    warnings.warn(message, stacklevel=3)


def verify_archive(path: str | os.PathLike) -> None:
    """Check every member CRC of the torch zip archive at ``path``; one-line error when damaged.

    Files that are not zip archives (legacy ``torch.save`` pickles, safetensors, TorchScript is a
    zip too) are left to their loaders: only a file that *is* a zip archive is checked. A zip
    archive that cannot be opened (truncated central directory), or a member whose data does not
    match its CRC-32 or cannot be decompressed, raises :class:`DamagedFile`:
    ``"<path>: damaged zip archive (CRC mismatch in archive/data/3); re-download or re-save it"``.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            magic = stream.read(4)
    except OSError as error:
        raise PagbenchError(f"{path}: cannot read ({error.strerror or error})") from None
    if magic[:2] != b"PK":
        if path.stat().st_size > 22 and _has_zip_end(path):
            raise DamagedFile(f"{path}: damaged zip archive (its start is overwritten); re-download or re-save it")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                with archive.open(member) as stream:
                    while stream.read(1 << 20):
                        pass
    except zipfile.BadZipFile as error:
        detail = str(error)
        if "CRC" in detail:
            detail = f"CRC mismatch in {detail.rsplit(' ', 1)[-1]}"
        raise DamagedFile(f"{path}: damaged zip archive ({detail}); re-download or re-save it") from None
    except Exception as error:  # EOFError, zlib.error, OSError ... on cut or corrupted member data
        raise DamagedFile(f"{path}: damaged zip archive ({type(error).__name__}: {error}); re-download or re-save it") from None


def _has_zip_end(path: Path) -> bool:
    """Whether the file ends like a zip archive (end-of-central-directory record near the end)."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        stream.seek(max(0, size - 65557))
        tail = stream.read()
    return b"PK\x05\x06" in tail
