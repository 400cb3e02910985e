"""Registry entries: frozen metadata records with a lazy factory (no heavy imports here).

Plugins build these and pass them to the ``register`` callback of a ``register_*`` hook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset. ``factory(data_root)`` returns a :class:`pagbench.evaluation.data.Dataset`.

    ``default_score_provider`` / ``default_manifold_provider`` name the providers used when the
    user does not choose one (``None``: metrics that need them are reported unavailable).
    ``default``: this is the dataset used when none is named (exactly one registered dataset sets
    it); ``demo_models``: the models ``pagbench demo`` compares on it.
    ``default_gradient``: the ``--gradient`` used on this dataset when the user names none (None:
    ``logprob``); choose one whose paired score (:data:`pagbench.evaluation.scores.PAIRED_SCORE`) the default
    score provider can serve (e.g. ``logit-sum`` ↔ unconditional for an unconditional network).
    ``version``: bump it whenever the images a name stands for change (a new construction);
    models pagbench trains are stored under it, so a model of an older version is never reused.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    num_classes: int | None = None
    image_shape: tuple[int, int, int] | None = None
    source: str = ""
    licence: str = ""
    default_score_provider: str | None = None
    default_manifold_provider: str | None = None
    default_gradient: str | None = None
    version: str = ""
    default: bool = False  #: the dataset used when none is named (exactly one registered dataset sets it)
    demo_models: tuple[str, ...] = ()  #: the models ``pagbench demo`` compares on this dataset


@dataclass(frozen=True)
class ModelCard:
    """What a model is: it flows into result files and the leaderboard.

    ``strength`` is the training regime's strength in that regime's own units (0 = standard);
    ``seed`` the training seed where one applies.
    ``requires_finetuning`` marks a model whose classifier head was replaced by an untrained one
    (``--replace-head``): its numbers describe a model nobody trained for this dataset.
    ``provenance`` says how the weights were obtained (file, sha256, checkpoint layout,
    normalisation source, ...), for models loaded from outside pagbench.
    """

    architecture: str
    dataset: str
    regime: str = "standard"
    strength: float | None = None
    source: str = ""
    licence: str = ""
    description: str = ""
    seed: int | None = None
    requires_finetuning: bool = False
    provenance: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelEntry:
    """One named model. ``factory(name, dataset, device)`` returns a ``torch.nn.Module`` taking
    images (B, C, H, W) in [0,1] and returning logits (B, num_classes).

    A factory that also names an ``options`` argument receives the model options (``--weights``,
    ``--arch``, ``--model-option KEY=VALUE``, ...; see :mod:`pagbench.models.loading`); it may return a
    :class:`pagbench.models.loading.BuiltModel` to describe what it built with a more precise card.
    ``architecture(name, dataset, device[, options])``, when given, builds the same network with
    untrained weights: ``checkpoint:PATH --arch NAME`` loads weights into it (without it, the
    factory's model is used and its weights are replaced).
    """

    name: str
    factory: Callable[..., Any]
    card: ModelCard
    architecture: Callable[..., Any] | None = None


@dataclass(frozen=True)
class ModelFamily:
    """Every model name that starts with ``prefix`` (e.g. ``timm:``, ``resnet18-``).

    ``factory(name, dataset, device)`` builds the model; ``card(name)`` describes it.
    ``factory`` may name an ``options`` argument and ``architecture`` builds untrained networks,
    as for :class:`ModelEntry`. ``card_fields`` ``{provenance key: (field, ...)}``: what the
    family records under its cards' ``provenance`` that the leaderboard's model cards show beside
    the PAG metrics, in that order (e.g. a model zoo's own accuracies); a record is shown when one
    of these fields holds a finite number.
    """

    prefix: str
    factory: Callable[..., Any]
    card: Callable[[str], ModelCard]
    description: str = ""
    examples: tuple[str, ...] = ()
    architecture: Callable[..., Any] | None = None
    card_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.prefix + "*"


@dataclass(frozen=True)
class ScoreProviderEntry:
    """``factory(dataset, options)`` returns a :class:`pagbench.evaluation.scores.ScoreProvider`.

    ``options``: the ``--provider-option`` keys the provider reads; any other key is refused before
    compute (None: undeclared, every key accepted). ``trust_pickle`` is always accepted.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ManifoldProviderEntry:
    """``factory(dataset, options)`` returns a :class:`pagbench.evaluation.manifold.ManifoldProvider`.

    ``options``: the ``--provider-option`` keys the provider reads; any other key is refused before
    compute (None: undeclared, every key accepted). ``trust_pickle`` is always accepted.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TrainerEntry:
    """A training regime. ``loss(model, images, labels, strength, **options)`` → scalar loss.

    ``strength_name`` says what the strength means (e.g. "σ, noise std in [0,1] pixel units").
    """

    name: str
    loss: Callable[..., Any]
    description: str = ""
    strength_name: str = "strength"
    default_strengths: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AttributionEntry:
    """An attribution method (what the gradient metrics score instead of the raw input gradient).

    ``factory(options)`` returns a :class:`pagbench.evaluation.attributions.Attribution` from the method's
    options (``--attribution-option KEY=VALUE``: strings from the command line); it parses and
    checks them (one-line :class:`~pagbench.errors.PagbenchError`) and does no heavy work.
    ``options``: the keys the method accepts; any other key is refused before compute.
    ``default``: the method used when none is named (exactly one registered method sets it).
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    options: tuple[str, ...] = ()
    default: bool = False


@dataclass(frozen=True)
class EntryColumn:
    """A leaderboard column whose cells a plugin computes from all entries at once (the zoo's
    regime labels compare the entries of one sweep), shown after the metric columns.

    ``cells(results)`` takes the result documents of every entry (any datasets, regimes and
    configurations mixed) and returns one markdown cell per document, in the same order (``-``
    when undecided). ``description`` is the column's bullet in the board's column legend;
    ``rule`` a paragraph (markdown, may be "") appended to the board's introduction.
    """

    name: str
    cells: Callable[[list], list]
    description: str = ""
    rule: str = ""
