"""The published JSON Schema (draft 2020-12) of result files, and a validator that reads it.

``pagbench schema`` prints :func:`result_schema`; :func:`validate_result` checks a document
against that same schema object (a small validator for the keywords it uses: ``type``,
``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``, ``minimum``,
``$ref`` into ``$defs``), so the schema and the check cannot drift. No jsonschema dependency;
where jsonschema is installed, tests check that it agrees. The layout is the one
:func:`pagbench.results.documents.build_result` writes (``schema_version`` 1).
"""

from __future__ import annotations

import re

from pagbench.errors import PagbenchError

#: Layout version of result documents (re-exported as :data:`pagbench.results.documents.SCHEMA_VERSION`).
SCHEMA_VERSION = 1
SCHEMA_ID = "https://github.com/pagbench/pagbench/schemas/result-1.json"

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_COUNT = {"type": "integer", "minimum": 0}


def result_schema() -> dict:
    """The JSON Schema of a schema-1 result document (a fresh dict each call)."""
    from pagbench.evaluation.gradients import GRADIENTS

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "pagbench result",
        "description": "One evaluation run of one model: configuration, per-metric mean ± standard error over images, "
                       "curves, timing. Every σ and ε is in [0,1] pixel units.",
        "type": "object",
        "required": ["schema_version", "pagbench_version", "plugins", "created", "config", "metrics", "curves",
                     "metric_settings", "unavailable", "degenerate", "timing", "warnings"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION, "description": "Layout version of this document."},
            "pagbench_version": {"type": "string"},
            "plugins": {"type": "object", "description": "Loaded plugin → its version (null: unknown).",
                        "additionalProperties": {"type": ["string", "null"]}},
            "created": {"type": "string", "description": "ISO-8601 UTC time the result was made."},
            "config": {"$ref": "#/$defs/config"},
            "metrics": {"type": "object", "additionalProperties": {"$ref": "#/$defs/metric"}},
            "curves": {"type": "object", "additionalProperties": {"$ref": "#/$defs/curve"}},
            "metric_settings": {"type": "object", "description": "Metric → the settings it resolved (ε grid, ...).",
                                "additionalProperties": {"type": "object"}},
            "unavailable": {"type": "object", "description": "Metric → why it could not run.",
                            "additionalProperties": {"type": "string"}},
            "degenerate": {"type": "object", "description": "Counts of images excluded from gradient metrics.",
                           "required": ["zero_gradient", "nonfinite_gradient", "nonfinite_logits"],
                           "additionalProperties": _COUNT},
            "sanity": {"type": "object", "description": "Sanity flags (pagbench.evaluation.sanity): per flag its value, threshold, "
                       "whether it is raised and a detail line; absent in results older than the flags.",
                       "required": ["flags", "raised"],
                       "properties": {"flags": {"type": "object", "additionalProperties": {"$ref": "#/$defs/sanity_flag"}},
                                      "raised": {"type": "array", "items": {"type": "string"}},
                                      "checked_images": _COUNT},
                       "additionalProperties": False},
            "timing": {"type": "object", "description": "Seconds (and images per second).",
                       "properties": {"total_seconds": {"type": "number", "minimum": 0},
                                      "per_metric_seconds": {"type": "object", "additionalProperties": {"type": "number"}}},
                       "additionalProperties": {"type": ["number", "object"]}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "per_image": {"type": "object", "description": "Optional (--per-image): index and one list per reported value.",
                          "required": ["index"],
                          "properties": {"index": {"type": "array", "items": _COUNT}},
                          "additionalProperties": {"type": "array", "items": _NUMBER_OR_NULL}},
            "entry_key": {"type": "object", "description": "Leaderboard entries only: the configuration that names the row."},
            "entry_id": {"type": "string", "description": "Leaderboard entries only."},
            "content_sha256": {"type": "string", "description": "Leaderboard entries only: SHA-256 of the entry's content."},
        },
        "additionalProperties": False,
        "$defs": _definitions(GRADIENTS),
    }


def _definitions(gradients) -> dict:
    """The schema's ``$defs``: config, metric, provider_file and curve records."""
    return {
        "config": {
            "type": "object",
            "description": "Every evaluation option, the model card, the resolved providers and σ; metric options at the top level.",
            "required": ["model", "dataset", "split", "num_images", "seed", "gradient"],
            "properties": {
                "model": {"type": "string"},
                "dataset": {"type": "string"},
                "split": {"type": "string"},
                "num_images": {"type": "integer", "minimum": 1},
                "batch_size": {"type": "integer", "minimum": 1},
                "seed": {"type": "integer"},
                "device": {"type": "string"},
                "gradient": {"enum": list(gradients)},
                "score": {"type": ["string", "null"]},
                "sigma": _NUMBER_OR_NULL,
                "sigma_used": _NUMBER_OR_NULL,
                "score_provider": {"type": ["string", "null"]},
                "manifold_provider": {"type": ["string", "null"]},
                "metrics": {"type": ["array", "null"], "items": {"type": "string"}},
                "provider_options": {"type": "object"},
                "model_options": {"type": "object"},
                "model_card": {"type": "object"},
                "score_provider_fingerprint": {"type": ["string", "null"],
                                               "description": "Identifies the score provider's weights and settings."},
                "manifold_provider_fingerprint": {"type": ["string", "null"]},
                "weights_sha256": {"type": ["string", "null"], "description": "SHA-256 of the evaluated model's "
                                   "state dict (names, dtypes, shapes, bytes); null when it could not be read."},
                "provider_files": {"type": "array", "description": "Every file a provider read (a downloaded URL too) "
                                   "with its SHA-256.", "items": {"$ref": "#/$defs/provider_file"}},
            },
            "additionalProperties": True,
        },
        "metric": {
            "type": "object",
            "description": "Mean ± standard error over the n images that were not excluded.",
            "required": ["value", "stderr", "n", "higher_is_better"],
            "properties": {
                "value": _NUMBER_OR_NULL,
                "stderr": _NUMBER_OR_NULL,
                "n": _COUNT,
                "excluded": _COUNT,
                "higher_is_better": {"type": ["boolean", "null"]},
                "reason": {"type": "string", "description": "Why n is 0, when it is."},
            },
            "additionalProperties": False,
        },
        "sanity_flag": {
            "type": "object",
            "required": ["value", "threshold", "raised"],
            "properties": {"value": _NUMBER_OR_NULL, "threshold": {"type": "number"}, "raised": {"type": "boolean"},
                           "detail": {"type": ["string", "null"]}},
            "additionalProperties": False,
        },
        "provider_file": {
            "type": "object",
            "required": ["location", "sha256"],
            "properties": {"location": {"type": "string"}, "path": {"type": ["string", "null"]},
                           "sha256": {"type": "string"},
                           "loaded_with": {"type": "string", "description": "How the file was loaded (own "
                                           "implementation, or its embedded code under a trust flag)."},
                           "class_name": {"type": "string"}, "module_src_sha256": {"type": "string"}},
            "additionalProperties": False,
        },
        "curve": {
            "type": "object",
            "required": ["x", "mean", "stderr", "n"],
            "properties": {
                "x": {"type": "array", "items": {"type": "number"}},
                "mean": {"type": "array", "items": _NUMBER_OR_NULL},
                "stderr": {"type": "array", "items": _NUMBER_OR_NULL},
                "n": {"type": "array", "items": _COUNT},
            },
            "additionalProperties": False,
        },
    }


def _type_matches(value, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"schema type {name!r} is not supported")


def _path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _check(value, schema: dict, root: dict, path: list) -> None:
    """Raise PagbenchError at the first place ``value`` breaks ``schema`` (iteration order)."""
    if "$ref" in schema:
        reference = schema["$ref"]
        if not reference.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {reference!r}")
        schema = root["$defs"][reference[len("#/$defs/"):]]
    where = _path(path)
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):  # true is not 1
        raise PagbenchError(f"{where} is {value!r}, expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise PagbenchError(f"{where} is {value!r}, expected one of {', '.join(map(str, schema['enum']))}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_matches(value, name) for name in names):
            shown = "a boolean" if isinstance(value, bool) else type(value).__name__ if value is not None else "null"
            raise PagbenchError(f"{where} must be {' or '.join(names)}, got {shown}")
    if "minimum" in schema and isinstance(value, (int, float)) and not isinstance(value, bool) and value < schema["minimum"]:
        raise PagbenchError(f"{where} must be >= {schema['minimum']}, got {value!r}")
    if isinstance(value, dict):
        missing = [key for key in schema.get("required", ()) if key not in value]
        if missing:
            raise PagbenchError(f"{where} lacks {', '.join(missing)}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], root, path + [key])
            elif extra is False:
                raise PagbenchError(f"{where} has an unknown field {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, root, path + [key])
    if isinstance(value, (list, tuple)) and "items" in schema:
        for index, item in enumerate(value):
            _check(item, schema["items"], root, path + [index])


def validate_result(document, source: str = "result") -> None:
    """Raise a one-line :class:`PagbenchError` naming ``source`` and the offending field when
    ``document`` does not follow :func:`result_schema`; return None when it does."""
    schema = result_schema()
    try:
        _check(document, schema, schema, [])
    except PagbenchError as error:
        raise PagbenchError(f"{source}: {error}") from None


# ------------------------------------------------------------------------ untrusted text fields
#: Characters no text in a result or entry may hold (keys included): C0 controls (NUL, TAB, LF,
#: CR, ...), DEL and C1 controls, the line and paragraph separators, and the bidirectional
#: marks, embeddings, overrides and isolates (U+200E/F, U+061C, U+202A–U+202E, U+2066–U+2069)
#: that can make a table row display other text than it holds.
FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: The longest text field (the committed results' longest is under 200 characters).
MAX_TEXT_LENGTH = 4096


def check_text(document, source: str = "result") -> None:
    """Raise a one-line :class:`PagbenchError` naming ``source`` and the field when any string in
    ``document`` (object keys too) holds a :data:`FORBIDDEN_TEXT` character or is longer than
    :data:`MAX_TEXT_LENGTH`. Iterative: no recursion limit."""
    pending = [(document, [])]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            found = FORBIDDEN_TEXT.search(value)
            if found:
                raise PagbenchError(f"{source}: {_path(path)} holds the control or bidi character U+{ord(found.group()):04X} "
                                    f"(not allowed in any text field)")
            if len(value) > MAX_TEXT_LENGTH:
                raise PagbenchError(f"{source}: {_path(path)} is {len(value)} characters long (at most {MAX_TEXT_LENGTH})")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    pending.append((key, path + [f"{key[:40]!r} (a key)"]))
                pending.append((item, path + [key]))
        elif isinstance(value, (list, tuple)):
            pending.extend((item, path + [index]) for index, item in enumerate(value))
