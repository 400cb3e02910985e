"""Trust comes only from the command line of the current invocation.

Some options let pagbench run code stored in a file: ``model_options.trust_checkpoint``
(``--trust-checkpoint``: whole pickled modules, TorchScript) and ``provider_options.trust_pickle``
(``--trust-pickle``: EDM network pickles). A result, leaderboard entry, recipe or cache file
records the configuration of a run, but it never grants that permission again: entries arrive
from other people, and a file must not be able to decide that the code it names gets run.

* :func:`strip_trust` removes every trust key (any option key containing ``trust``) from an
  options dict read from a file.
* :func:`required_trust` lists the command-line flags an entry's run needed (the stripped keys,
  the ``trust_required`` list a leaderboard entry records, a card whose provenance says the
  weights needed a trusted load).
* :func:`grant` puts back the trust the user typed on *this* command line, and
  :func:`check_granted` refuses (one line, nothing run) when a needed flag is missing.
"""

from __future__ import annotations

from pagbench.errors import PagbenchError

#: (options field, key) → the command-line flag that grants it.
TRUST_FLAGS = {
    ("model_options", "trust_checkpoint"): "--trust-checkpoint",
    ("provider_options", "trust_pickle"): "--trust-pickle",
}
#: Option fields of a configuration that may carry trust keys.
OPTION_FIELDS = ("model_options", "provider_options")
#: The field of a leaderboard entry's configuration that lists the flags its run needed.
REQUIRED_FIELD = "trust_required"

_FALSE = ("", "0", "false", "no", "off", "none", "null")


def is_trust_key(key) -> bool:
    """Whether an option key means trust (``trust_pickle``, ``trust_checkpoint``, ``TRUST``, ...)."""
    return "trust" in str(key).lower()


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


def flag_for(field: str, key: str) -> str:
    """The flag that grants trust key ``key`` of ``field`` (unknown keys: the flag of the field)."""
    if (field, key) in TRUST_FLAGS:
        return TRUST_FLAGS[(field, key)]
    return "--trust-checkpoint" if field == "model_options" else "--trust-pickle"


def strip_trust(options) -> dict:
    """A copy of ``options`` without trust keys (``{}`` for None or a non-dict)."""
    if not isinstance(options, dict):
        return {}
    return {key: value for key, value in options.items() if not is_trust_key(key)}


def trust_in(config: dict) -> list[str]:
    """Flags implied by trust keys with a true value in ``config``'s option fields."""
    flags = set()
    for field in OPTION_FIELDS:
        options = config.get(field)
        if isinstance(options, dict):
            for key, value in options.items():
                if is_trust_key(key) and _truthy(value):
                    flags.add(flag_for(field, key))
    return sorted(flags)


def required_trust(config: dict) -> list[str]:
    """Every flag the run recorded in ``config`` needed (see the module docstring)."""
    flags = set(trust_in(config))
    recorded = config.get(REQUIRED_FIELD)
    if isinstance(recorded, list):
        flags.update(flag for flag in recorded if flag in TRUST_FLAGS.values())
    card = config.get("model_card")
    provenance = card.get("provenance") if isinstance(card, dict) else None
    if isinstance(provenance, dict) and _truthy(provenance.get("trusted_load", False)):
        flags.add("--trust-checkpoint")
    return sorted(flags)


def strip_config(config: dict) -> dict:
    """A copy of ``config`` with trust keys removed from its option fields and the flags they
    implied recorded under ``trust_required`` (so a later command can ask for them)."""
    needed = required_trust(config)
    stripped = dict(config)
    for field in OPTION_FIELDS:
        if field in stripped and isinstance(stripped[field], dict):
            stripped[field] = strip_trust(stripped[field])
    if needed:
        stripped[REQUIRED_FIELD] = needed
    else:
        stripped.pop(REQUIRED_FIELD, None)
    return stripped


def check_granted(needed, trust_checkpoint: bool, trust_pickle: bool, what: str, command: str) -> None:
    """Refuse (one line, before anything is loaded) when a flag in ``needed`` was not typed."""
    granted = {"--trust-checkpoint": trust_checkpoint, "--trust-pickle": trust_pickle}
    missing = [flag for flag in needed if not granted.get(flag, False)]
    if missing:
        flags = " and ".join(missing)
        raise PagbenchError(
            f"{what} was made with {flags} (loading its files runs code stored in them); nothing was run: "
            f"pass {flags} to `{command}` only if you trust those files"
        )


def grant(model: str, model_options: dict, provider_options: dict, trust_checkpoint: bool, trust_pickle: bool) -> tuple[dict, dict]:
    """Options read from a file, stripped of trust, plus the trust typed on this command line.

    ``--trust-checkpoint`` reaches only models that load a weights file (``checkpoint:PATH`` or a
    ``weights`` option), since other factories take no such option; ``--trust-pickle`` reaches
    the providers (each accepts it, as ``pagbench evaluate --trust-pickle`` passes it to all)."""
    model_options, provider_options = strip_trust(model_options), strip_trust(provider_options)
    if trust_checkpoint and (str(model).startswith("checkpoint:") or "weights" in model_options):
        model_options["trust_checkpoint"] = True
    if trust_pickle:
        provider_options["trust_pickle"] = "1"
    return model_options, provider_options
