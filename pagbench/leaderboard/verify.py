"""Verifying leaderboard entries: re-evaluate an entry and compare every metric it stores.

:func:`verify_entry` compares at tight tolerances when the model's weights digest equals the
entry's, against the recipe's seed spread when the weights were retrained (see there);
:func:`verify_all` does a whole board. Nothing here imports torch; :func:`verify_entry` does, lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pagbench.errors import PagbenchError
from pagbench.leaderboard.store import (DEFAULT_ROOT, Entry, check_leaderboard_result, entries_dir, load_entries,
                                        recipe_key)
from pagbench.results.documents import load_result

#: Absolute tolerance of :func:`verify_entry` when the weights are the same and so is the image set.
VERIFY_ABSOLUTE_TOLERANCE = 1e-3
#: Standard errors of the difference allowed when re-evaluating on a different number of images.
VERIFY_STDERRS = 3.0
#: Retrained weights: the tolerance adds the larger of this many times the seeds' range (max − min
#: of the metric over the recipe's training seeds on record, the entry's included) ...
VERIFY_SEED_RANGES = 2.0
#: ... and this fraction of the entry's |value| plus :data:`VERIFY_RETRAINED_ABSOLUTE`, the stated
#: default and floor (two seeds can agree by chance: docs/sweeps' noise-0.1 seeds differ by 0.003 in
#: on_manifold_gradient_norm, a retrained model here by 0.05). Set from the seed-0/seed-1 pairs of
#: the committed noise sweep's two seeds, whose largest differences away from the regime edge are
#: 0.06 (a fraction) and 0.03 (a cosine).
VERIFY_RETRAINED_RELATIVE = 0.1
VERIFY_RETRAINED_ABSOLUTE = 0.02

#: :attr:`VerifyReport.case`: the re-evaluated model's weights digest equals the entry's ...
SAME_WEIGHTS = "same weights"
#: ... or differs (weights retrained from the recipe on this machine) ...
RETRAINED = "retrained"
#: ... or the entry records no digest (made before entries carried one): compared as retrained.
UNKNOWN_WEIGHTS = "weights not recorded"


@dataclass(frozen=True)
class MetricCheck:
    name: str
    stored: float | None
    measured: float | None
    tolerance: float | None
    note: str = ""

    @property
    def difference(self) -> float | None:
        if self.stored is None or self.measured is None:
            return None
        return abs(self.measured - self.stored)

    @property
    def ok(self) -> bool | None:
        """True/False when compared, None when one side is missing."""
        if self.difference is None or self.tolerance is None:
            return None
        return self.difference <= self.tolerance


@dataclass
class VerifyReport:
    """``case`` is :data:`SAME_WEIGHTS`, :data:`RETRAINED` or :data:`UNKNOWN_WEIGHTS` (which
    tolerances applied, see :func:`verify_entry`); ``seeds``: how many other training seeds of the
    recipe set the retrained tolerances (0: the stated defaults)."""

    entry: Entry
    num_images: int
    checks: list[MetricCheck]
    notes: list[str]
    result: dict = field(repr=False)
    case: str = SAME_WEIGHTS
    seeds: int = 0

    @property
    def compared(self) -> list[MetricCheck]:
        return [check for check in self.checks if check.ok is not None]

    @property
    def reproduces(self) -> bool:
        return bool(self.compared) and all(check.ok for check in self.compared)

    @property
    def case_text(self) -> str:
        """One line saying which case applied and what the tolerances were."""
        if self.case == SAME_WEIGHTS:
            return "same weights (digest equal to the entry's): compared at tight tolerances"
        default = f"{VERIFY_RETRAINED_RELATIVE:g}·|value| + {VERIFY_RETRAINED_ABSOLUTE:g}"
        if self.seeds:
            spread = f"the larger of {VERIFY_SEED_RANGES:g}× the range over {self.seeds + 1} training seeds of the recipe and {default}"
        else:
            spread = f"no other training seed of the recipe on record: {default}"
        why = ("weights retrained from the recipe (digest differs from the entry's)" if self.case == RETRAINED
               else "the entry records no weights digest")
        return f"{why}: compared against the recipe's seed spread ({spread}, added to the same-weights tolerance)"


def tolerance_for(stored: dict, measured: dict, absolute: float = VERIFY_ABSOLUTE_TOLERANCE) -> float:
    """``absolute + 3·√|se_measured² − se_stored²|`` (the same weights).

    The second term is the standard error of the difference between a mean over the first N
    images and the mean over the first M images (nested sets): zero when N = M, so then only the
    absolute tolerance (float rounding across machines) remains.
    """
    se_stored = float(stored.get("stderr") or 0.0)
    se_measured = float(measured.get("stderr") or 0.0)
    return absolute + VERIFY_STDERRS * math.sqrt(abs(se_measured**2 - se_stored**2))


def retrained_spread(stored: dict, seed_values: list[float]) -> float:
    """What weights retrained from the recipe may add to the same-weights tolerance: the recipe's seed spread.

    ``seed_values``: the metric's values for *other* training seeds of the recipe. The spread is
    :data:`VERIFY_RETRAINED_RELATIVE` · |value| + :data:`VERIFY_RETRAINED_ABSOLUTE`, or
    :data:`VERIFY_SEED_RANGES` × (max − min over them and the entry's value) where that is larger
    (a recipe whose seeds disagree more, e.g. at a regime's edge)."""
    value = float(stored["value"])
    default = VERIFY_RETRAINED_RELATIVE * abs(value) + VERIFY_RETRAINED_ABSOLUTE
    if seed_values:
        values = [value, *seed_values]
        return max(default, VERIFY_SEED_RANGES * (max(values) - min(values)))
    return default


def options_from_config(config: dict, trust_checkpoint: bool = False, trust_pickle: bool = False, **overrides):
    """The :class:`~pagbench.evaluation.options.EvaluationOptions` that reproduce a result's configuration.

    The resolved score kind, σ and providers are passed explicitly, so a changed default cannot
    change the re-evaluation silently. Trust keys in the configuration are dropped: only
    ``trust_checkpoint`` / ``trust_pickle`` given here (typed on this command line) grant it.
    """
    from dataclasses import fields

    from pagbench.evaluation.options import DTYPES, EvaluationOptions, declared_metric_options, metric_options_from_config
    from pagbench.files.trust import grant

    names = {item.name for item in fields(EvaluationOptions)}
    values = {name: config[name] for name in names if name in config}
    values["metric_options"] = metric_options_from_config(config)
    if values.get("dtype") not in DTYPES:  # results made before --dtype described the precision in words
        described = str(values.get("dtype") or "")
        values["dtype"] = "float32" if described in ("", "float32 model, float64 gradient weights and metrics") else described
    for name in ("metrics", *(n for n, o in declared_metric_options().items() if o.type == "floats")):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    values["model_options"], values["provider_options"] = grant(
        config.get("model", ""), values.get("model_options") or {}, values.get("provider_options") or {},
        trust_checkpoint, trust_pickle)
    values.update({name: value for name, value in overrides.items() if value is not None})
    return EvaluationOptions(**values)


def other_seeds(entry: Entry, candidates: Iterable[Entry]) -> list[Entry]:
    """The ``candidates`` that are other training seeds of ``entry``'s recipe (same model card
    but for its ``seed``, same model options and evaluation configuration; see
    :func:`recipe_key`), one per seed, the entry's own seed excluded."""
    key = recipe_key(entry)
    if key is None:
        return []
    found: dict = {}
    for candidate in candidates:
        seed = candidate.card.get("seed")
        if seed != entry.card.get("seed") and seed not in found and recipe_key(candidate) == key:
            found[seed] = candidate
    return [found[seed] for seed in sorted(found, key=str)]


def load_seed_results(paths: Iterable[str | Path]) -> list[Entry]:
    """Result files (or folders of them, not recursive) as :class:`Entry` objects for
    :func:`other_seeds`; every file is validated as an entry would be, errors name it."""
    found = []
    for reference in paths:
        reference = Path(reference)
        files = sorted(reference.glob("*.json")) if reference.is_dir() else [reference]
        for path in files:
            found.append(Entry(path, check_leaderboard_result(load_result(path), str(path))))
    return found


def verify_entry(entry: Entry, num_images: int | None = None, device: str = "cpu", data_root: str | None = None,
                 absolute_tolerance: float = VERIFY_ABSOLUTE_TOLERANCE, progress: bool = False,
                 trust_checkpoint: bool = False, trust_pickle: bool = False,
                 seed_entries: Iterable[Entry] = ()) -> VerifyReport:
    """Re-evaluate ``entry`` (on its first ``num_images`` images, default all of them) and compare
    every metric it stores.

    Two cases (:attr:`VerifyReport.case`), told apart by the evaluated model's
    ``config.weights_sha256`` (:func:`pagbench.results.documents.weights_digest`):

    * the same weights (digest equal to the entry's): within ``absolute_tolerance`` on the
      entry's images, :func:`tolerance_for` on another number of them (tight);
    * weights retrained from the recipe (digest differs, or the entry records none): within that
      plus :func:`retrained_spread`, the seed spread of the recipe's other training seeds found in
      ``seed_entries`` (entries or results, e.g. the board's and ``docs/sweeps``), else a stated
      default.

    An entry whose run needed ``--trust-checkpoint`` / ``--trust-pickle`` is refused before
    anything is loaded unless the caller grants the same trust here (``trust_*``: typed by the
    user on this command line, never read from the entry)."""
    from pagbench.evaluation.runner import evaluate
    from pagbench.files.trust import check_granted, required_trust

    if num_images is not None and num_images <= 0:
        raise PagbenchError(f"--num-images must be positive, got {num_images}")
    check_granted(required_trust(entry.config), trust_checkpoint, trust_pickle, f"entry {entry.path}", "pagbench leaderboard verify")
    from dataclasses import replace

    # the entry's data root names a folder on the machine that made it: use this machine's
    options = replace(options_from_config(entry.config, trust_checkpoint=trust_checkpoint, trust_pickle=trust_pickle,
                                          num_images=num_images, device=device), data_root=data_root)
    result = evaluate(options, progress=progress)
    notes = []
    stored_fingerprint = entry.config.get("dataset_fingerprint")
    if stored_fingerprint and stored_fingerprint != result["config"].get("dataset_fingerprint"):
        notes.append(f"dataset {entry.dataset!r} changed since the entry was made "
                     f"(fingerprint {stored_fingerprint} → {result['config'].get('dataset_fingerprint')})")
    stored_digest, measured_digest = entry.config.get("weights_sha256"), result["config"].get("weights_sha256")
    if stored_digest and stored_digest == measured_digest:
        case = SAME_WEIGHTS
    else:
        case = RETRAINED if stored_digest else UNKNOWN_WEIGHTS
    seeds = other_seeds(entry, seed_entries) if case != SAME_WEIGHTS else []
    nested = options.num_images != entry.config.get("num_images")
    checks = []
    tight = 0
    for name, stored in entry.result["metrics"].items():
        measured = result["metrics"].get(name)
        if stored.get("value") is None:
            continue
        if measured is None or measured.get("value") is None:
            unavailable = result.get("unavailable", {})
            reason = next((why for metric, why in unavailable.items() if name.startswith(metric)), "not computed")
            checks.append(MetricCheck(name, float(stored["value"]), None, None, f"not measured here: {reason}"))
            continue
        # nested image sets add the standard error of their difference; the same images add nothing
        tolerance = tolerance_for(stored, measured, absolute_tolerance) if nested else absolute_tolerance
        difference = abs(float(measured["value"]) - float(stored["value"]))
        tight += difference <= tolerance
        if case != SAME_WEIGHTS:
            values = [float(other.result["metrics"][name]["value"]) for other in seeds
                      if isinstance(other.result["metrics"].get(name), dict) and other.result["metrics"][name].get("value") is not None]
            tolerance += retrained_spread(stored, values)
        checks.append(MetricCheck(name, float(stored["value"]), float(measured["value"]), tolerance))
    if case != SAME_WEIGHTS:
        compared = sum(check.ok is not None for check in checks)
        notes.append(f"{tight} of {compared} metric(s) also agree at the tight (same-weights) tolerance")
    return VerifyReport(entry, options.num_images, checks, notes, result, case, len(seeds))


@dataclass
class VerifyOutcome:
    """One entry of :func:`verify_all`: its report, or why it could not be verified (``error``)."""

    entry: Entry
    report: VerifyReport | None
    error: str | None
    seconds: float

    @property
    def reproduces(self) -> bool:
        return self.report is not None and self.report.reproduces


def verify_all(root: str | Path = DEFAULT_ROOT, seed_paths: Iterable[str | Path] = (), on_done=None, **options) -> list[VerifyOutcome]:
    """:func:`verify_entry` for every entry of the board at ``root`` (in path order).

    The board's entries and the results under ``seed_paths`` supply the other training seeds of
    each recipe. An entry that cannot be re-evaluated (a one-line :class:`PagbenchError`, e.g. a
    trust flag not granted, a dataset not on this machine) is reported with ``error`` and the
    rest still run. ``on_done(outcome)`` is called after each entry (progress)."""
    import time

    entries = load_entries(root)
    if not entries:
        raise PagbenchError(f"{entries_dir(root)}: no entries to verify")
    pool = entries + load_seed_results(seed_paths)
    outcomes = []
    for entry in entries:
        started = time.perf_counter()
        try:
            report, error = verify_entry(entry, seed_entries=pool, **options), None
        except PagbenchError as failure:
            report, error = None, str(failure)
        outcome = VerifyOutcome(entry, report, error, time.perf_counter() - started)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes
