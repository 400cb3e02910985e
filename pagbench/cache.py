"""A cache for model-independent geometry: scores and tangent bases.

Keys are built from everything the value depends on (dataset fingerprint, split, the batch's
image indices, provider fingerprint, σ, score kind), so a second model evaluated on the same
images reuses them. Values live in memory for the process and, for providers that allow it, on
disk under ``<cache dir>/geometry`` (float32, written atomically).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable

from .paths import cache_dir, write_atomic


class GeometryCache:
    """Memory + disk cache. ``hits``/``misses`` count lookups, for tests and benchmarks."""

    def __init__(self, directory: Path | None = None, use_disk: bool = True):
        self.directory = Path(directory) if directory is not None else cache_dir() / "geometry"
        self.use_disk = use_disk
        self._memory: dict[str, object] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(**parts) -> str:
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get_or_compute(self, key: str, compute: Callable[[], "object"], disk: bool = True, storage: str = "float64"):
        """The cached tensor for ``key`` (float64), computing (and storing) it on a miss.

        ``storage`` is the precision kept (``float32`` halves disk use for tangent bases); the
        value is rounded to it on a miss too, so cold and warm runs give identical numbers.
        """
        import torch

        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.directory / key[:2] / f"{key}.pt"
        if disk and self.use_disk and path.exists():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True).double()
                self._memory[key] = value
                self.hits += 1
                return value
            except Exception:
                pass  # a corrupt cache file is recomputed and overwritten
        self.misses += 1
        stored = compute().detach().cpu().to(getattr(torch, storage)).contiguous()
        value = stored.double()
        self._memory[key] = value
        if disk and self.use_disk:
            buffer = io.BytesIO()
            torch.save(stored, buffer)
            try:
                write_atomic(path, lambda stream: stream.write(buffer.getvalue()))
            except Exception:
                pass  # an unwritable cache only costs recomputation
        return value

    def clear_memory(self) -> None:
        self._memory.clear()
