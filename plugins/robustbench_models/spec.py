"""Parsing ``robustbench:[DATASET/][THREAT/]NAME`` (pure Python: no torch, no robustbench)."""

from __future__ import annotations

from dataclasses import dataclass

from pagbench.plugin import PagbenchError

from . import DATASETS, PREFIX, THREAT_MODELS

_DATASETS = {name.lower(): name for name in DATASETS}
_THREATS = {name.lower(): name for name in THREAT_MODELS}


@dataclass(frozen=True)
class Spec:
    model: str  # RobustBench's model name, e.g. Carmon2019Unlabeled
    dataset: str  # cifar10 | cifar100 | imagenet
    threat_model: str  # Linf | L2 | corruptions
    dataset_source: str  # where the dataset came from (name, option, evaluation dataset, default)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.threat_model}/{self.model}"

    @property
    def regime(self) -> str:
        if self.model.startswith("Standard"):
            return "standard"
        return "adversarial" if self.threat_model in ("Linf", "L2") else "corruption-robust"


def _pick(kind: str, value: str, choices: dict) -> str:
    found = choices.get(str(value).strip().lower())
    if found is None:
        raise PagbenchError(f"RobustBench {kind} {value!r} is not one of {', '.join(choices.values())}")
    return found


def parse_name(name: str, options: dict, evaluation_dataset: str | None) -> Spec:
    """The RobustBench model a pagbench name stands for; ``options`` may give ``dataset`` and
    ``threat_model`` (they must agree with the name)."""
    body = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    parts = [part for part in body.split("/")]
    if not parts or not parts[-1] or any(not part for part in parts) or len(parts) > 3:
        raise PagbenchError(
            f"RobustBench models are named robustbench:NAME, robustbench:DATASET/NAME or robustbench:DATASET/THREAT/NAME "
            f"(e.g. robustbench:cifar10/Linf/Carmon2019Unlabeled), got {name!r}"
        )
    model, found = parts[-1], {}
    for part in parts[:-1]:
        kind = "dataset" if part.lower() in _DATASETS else "threat_model" if part.lower() in _THREATS else None
        if kind is None or kind in found:
            raise PagbenchError(
                f"{name!r}: {part!r} is not a RobustBench dataset ({', '.join(DATASETS)}) or threat model "
                f"({', '.join(THREAT_MODELS)}); write robustbench:DATASET/THREAT/NAME"
            )
        found[kind] = _DATASETS.get(part.lower()) or _THREATS[part.lower()]
    for kind, choices in (("dataset", _DATASETS), ("threat_model", _THREATS)):
        if options.get(kind) not in (None, ""):
            given = _pick(kind.replace("_", " "), options[kind], choices)
            if kind in found and found[kind] != given:
                raise PagbenchError(f"{name!r} names {kind.replace('_', ' ')} {found[kind]} but --model-option {kind}={options[kind]}")
            found.setdefault(kind, given)
            found.setdefault(kind + "_source", f"--model-option {kind}")
    if "dataset" in found:
        source = found.get("dataset_source", "the model name")
    elif evaluation_dataset in DATASETS:
        found["dataset"], source = evaluation_dataset, f"the evaluation dataset {evaluation_dataset!r}"
    else:
        what = f"the evaluation dataset {evaluation_dataset!r} is not one of RobustBench's" if evaluation_dataset else "none given"
        found["dataset"], source = "cifar10", f"RobustBench's default ({what})"
    return Spec(model, found["dataset"], found.get("threat_model", "Linf"), source)

