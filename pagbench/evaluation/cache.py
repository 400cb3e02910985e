"""A cache for model-independent geometry: scores and tangent bases.

Keys are built from everything the value depends on (dataset fingerprint, split, the batch's
image indices, provider fingerprint, σ, score kind), so a second model evaluated on the same
images reuses them. Values live in memory for the process (least recently used first out beyond
``PAGBENCH_MEMORY_CACHE_MB``, default 2048) and, for providers that allow it, on disk under
``<cache dir>/geometry`` (written atomically, with the SHA-256 of the tensor inside the file: a
damaged file is reported once as a warning and recomputed, see :mod:`pagbench.files.integrity`).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from pagbench.files.fingerprint import fingerprint
from pagbench.files.paths import cache_dir, write_atomic

_UNWRITABLE: set[str] = set()  # cache folders already reported unwritable in this process


def _warn_unwritable(directory: Path, error: Exception) -> None:
    """Warn once per cache folder that cached scores/tangent bases cannot be stored there."""
    import warnings

    folder = str(directory)
    if folder in _UNWRITABLE:
        return
    _UNWRITABLE.add(folder)
    warnings.warn(f"cannot write the geometry cache in {folder} ({type(error).__name__}: {error}); scores and tangent "
                  f"bases are recomputed on every run: make it writable or set PAGBENCH_CACHE_DIR", stacklevel=3)


class GeometryCache:
    """Memory + disk cache. ``hits``/``misses`` count lookups, for tests and benchmarks."""

    def __init__(self, directory: Path | None = None, use_disk: bool = True, memory_bytes: int | None = None):
        self.directory = Path(directory) if directory is not None else cache_dir() / "geometry"
        self.use_disk = use_disk
        from pagbench.evaluation.checks import memory_cache_bytes

        default = memory_cache_bytes()
        self.memory_bytes = default if memory_bytes is None else memory_bytes
        self._memory: OrderedDict[str, object] = OrderedDict()
        self._used = 0
        self.hits = 0
        self.misses = 0

    def _remember(self, key: str, value) -> None:
        """Keep ``value`` in memory, evicting the least recently used beyond the byte budget."""
        size = value.untyped_storage().nbytes()
        if size > self.memory_bytes:
            return
        self._memory[key] = value
        self._used += size
        while self._used > self.memory_bytes:
            _, old = self._memory.popitem(last=False)
            self._used -= old.untyped_storage().nbytes()

    @staticmethod
    def key(**parts) -> str:
        return fingerprint(parts)

    def get_or_compute(self, key: str, compute: Callable[[], "object"], disk: bool = True, storage: str = "float64"):
        """The cached tensor for ``key`` (float64), computing (and storing) it on a miss.

        ``storage`` is the precision kept on disk (``float32`` halves disk use for tangent bases);
        a disk-cached value is rounded to it on a miss too, so cold and warm runs give identical
        numbers. Memory-only values are kept as computed.
        """
        import torch

        if key in self._memory:
            self.hits += 1
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.directory / key[:2] / f"{key}.pt"
        if disk and self.use_disk and path.exists():
            from pagbench.files.integrity import DamagedFile, unseal, warn_damaged

            try:
                payload = unseal(path.read_bytes(), path)
                if payload is not None:  # files without the seal (older pagbench) are recomputed
                    value = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True).double()
                    self._remember(key, value)
                    self.hits += 1
                    return value
            except DamagedFile as error:
                warn_damaged(error, "recomputing it")
            except Exception as error:  # unreadable despite a valid digest: recompute too
                warn_damaged(DamagedFile(f"{path}: cannot be read ({type(error).__name__})"), "recomputing it")
        self.misses += 1
        value = compute().detach().cpu()
        if not (disk and self.use_disk):
            value = value.double()  # memory only: no rounding, no copy of expanded views
            self._remember(key, value)
            return value
        stored = value.to(getattr(torch, storage))
        value = stored.double()
        self._remember(key, value)
        from pagbench.files.integrity import seal

        buffer = io.BytesIO()
        torch.save(stored.contiguous(), buffer)
        sealed = seal(buffer.getvalue())  # SHA-256 inside the file: one atomic write, checked on read
        try:
            write_atomic(path, lambda stream: stream.write(sealed))
        except Exception as error:  # an unwritable cache costs recomputation on every run: say so, once per folder
            _warn_unwritable(self.directory, error)
        return value

    def clear_memory(self) -> None:
        self._memory.clear()
        self._used = 0
