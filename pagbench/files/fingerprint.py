"""One canonical fingerprint: the SHA-256 of a value written as canonical JSON.

Every identifier pagbench derives from a configuration (model-store ids, cache keys, dataset and
provider fingerprints, leaderboard entry ids and content hashes) goes through
:func:`canonical_json` and :func:`fingerprint`. Keys are sorted; floats are written by Python's
``repr`` (shortest round-trip form: ``0.1``, ``1e-05``), integers as integers, so ``1`` and
``1.0`` differ. Two spellings exist because stored identifiers were made with both and must not
change:

* ``compact=False`` (default): ``json.dumps``' default separators ``", "`` and ``": "`` — model
  store ids, geometry-cache keys, dataset and provider fingerprints;
* ``compact=True``: separators ``","`` and ``":"`` — leaderboard entry ids and content hashes.

``strict=True`` refuses what JSON cannot hold exactly (NaN, ±inf, non-JSON objects: ValueError /
TypeError); otherwise non-JSON objects are written as ``str(value)`` and non-finite floats as
``NaN`` / ``Infinity``. ``ascii=False`` keeps non-ASCII characters as UTF-8 instead of ``\\uXXXX``
escapes (the leaderboard's content hash). Neither option changes the text of a value both accept.
"""

from __future__ import annotations

import hashlib
import json

COMPACT = (",", ":")


def canonical_json(value, *, compact: bool = False, strict: bool = False, ascii: bool = True) -> str:
    """``value`` as canonical JSON text (see the module docstring)."""
    return json.dumps(value, sort_keys=True, separators=COMPACT if compact else None, ensure_ascii=ascii,
                      allow_nan=not strict, default=None if strict else str)


def fingerprint(value, length: int | None = None, *, compact: bool = False, strict: bool = False, ascii: bool = True) -> str:
    """SHA-256 (hex, the first ``length`` digits; all 64 by default) of :func:`canonical_json`."""
    text = canonical_json(value, compact=compact, strict=strict, ascii=ascii)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
