"""The full configuration of one evaluation run (recorded verbatim in the result file), declared once.

Each :class:`EvaluationOptions` field carries its schema in dataclass ``metadata`` (see
:func:`option`): its command-line flags (:class:`Flag`: flag, help, type or choices), how the
flags' values become the field's value, how a Python keyword is coerced, and its validation.
The ``evaluate`` / ``demo`` click options (:func:`click_options`), the Python keywords of
:meth:`EvaluationOptions.create` / ``pagbench.evaluate`` and :meth:`EvaluationOptions.validate`
are all generated from those declarations. Dataclass metadata rather than pydantic: no new
dependency, frozen dataclasses stay the configuration's type, and nothing heavy is imported.
Options that metrics declare (:class:`pagbench.evaluation.metrics.MetricOption`) are added by the CLI next
to ``--metric``. Defaults that name a built-in come from plugins: the dataset whose
:class:`~pagbench.extensions.records.DatasetEntry` sets ``default=True`` (see :func:`default_dataset`).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable

from pagbench.errors import PagbenchError
from pagbench.evaluation.gradients import GRADIENTS
from pagbench.evaluation.scores import PAIRED_SCORE, SCORE_KINDS

#: ``--score`` choices: ``auto`` (paired with the gradient, :data:`pagbench.evaluation.scores.PAIRED_SCORE`) and the score kinds.
SCORES = ("auto", *SCORE_KINDS)
#: Flag types: click's ``str``, ``int``, ``float``, ``path`` (click.Path) and ``choice`` (click.Choice of ``choices``).
FLAG_TYPES = ("str", "int", "float", "path", "choice")


@dataclass(frozen=True)
class Flag:
    """One command-line flag of an option. ``name`` is the click parameter's name (default: the
    field's for a field's only flag, else the flag's: ``--trust-pickle`` → ``trust_pickle``);
    ``show_default`` shows the field's default in ``--help``."""

    flag: str
    name: str | None = None
    type: str = "str"
    choices: tuple[str, ...] = ()
    help: str | None = None
    multiple: bool = False
    is_flag: bool = False
    hidden: bool = False
    show_default: bool = False

    def __post_init__(self):
        if self.type not in FLAG_TYPES:
            raise ValueError(f"flag {self.flag}: type must be one of {', '.join(FLAG_TYPES)}, got {self.type!r}")

    def param_name(self, field_name: str, only: bool) -> str:
        """The click parameter's name for this flag of field ``field_name`` (``only``: its only flag)."""
        return self.name or (field_name if only else self.flag.lstrip("-").replace("-", "_"))


def option(default: Any = MISSING, *flags: Flag, group: str = "evaluation", check: Callable | None = None,
           coerce: Callable | None = None, collect: Callable | None = None, default_factory: Any = MISSING):
    """A field with its schema. ``flags`` are its command-line flags (none: set from Python only,
    or declared by a metric); ``group`` is ``evaluation`` (``evaluate`` and ``demo``) or ``model``
    (``evaluate`` only: options reaching the model factory); ``check(value)`` raises a one-line
    :class:`PagbenchError`; ``coerce(value)`` turns a Python keyword's value into the field's
    (e.g. a list into a tuple); ``collect(params)`` builds the value from the click parameters
    (default: the single flag's value, a tuple or None for a repeatable flag)."""
    metadata = {"flags": tuple(flags), "group": group, "check": check, "coerce": coerce, "collect": collect}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ------------------------------------------------------------------------------ value helpers
def _positive(flag: str):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PagbenchError(f"{flag} must be a whole number, got {value!r}")
        if value <= 0:
            raise PagbenchError(f"{flag} must be positive, got {value}")
    return check


def _whole(flag: str):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PagbenchError(f"{flag} must be a whole number, got {value!r}")
    return check


def _one_of(what: str, choices: tuple[str, ...]):
    def check(value):
        if value not in choices:
            raise PagbenchError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
    return check


def _check_sigma(value):
    if value is None:
        return
    from pagbench.evaluation.checks import pixel_scale

    pixel_scale(value, "--sigma", strict=False)


def _check_sigmas(value):
    from pagbench.evaluation.checks import check_grid

    check_grid(value, "--sigmas", strict=False)


def _sigmas(value):
    """A Python ``sigmas=``: ``"a,b,c"`` / ``"lo:hi:n"`` text, or numbers → a tuple of floats."""
    if value is None:
        return None
    if isinstance(value, str):
        from pagbench.console import parse_floats

        return parse_floats(value, "--sigmas")
    if isinstance(value, (int, float)):
        return (value,)
    return tuple(value)


def _sigmas_from(params: dict):
    from pagbench.console import parse_floats

    return parse_floats(params.get("sigmas"), "--sigmas")


def _check_attribution(value):
    if not isinstance(value, str):
        raise PagbenchError(f"--attribution expects a method name, got {value!r}")
    from pagbench.extensions import registry

    registry.attributions().get(value)  # unknown: one line with the closest names


def _check_sanity_thresholds(value):
    from pagbench.evaluation.sanity import resolve_thresholds

    resolve_thresholds(value)


def _attribution_options_from(params: dict) -> dict:
    return key_values(params.get("attribution_option"), "--attribution-option")


#: ``--dtype`` choices: the precision of the model and the inputs in the gradient pass.
DTYPES = ("float32", "float64", "bfloat16")


def _check_device(value):
    from pagbench.evaluation.checks import check_device

    check_device(value)


def _tuple_or_none(value):
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def key_values(items, flag: str) -> dict:
    """``("KEY=VALUE", ...)`` → ``{KEY: VALUE}``; an item without ``=`` is a one-line error."""
    values = {}
    for item in items or ():
        if "=" not in item:
            raise PagbenchError(f"{flag} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        values[key.strip()] = value
    return values


def _provider_options_from(params: dict) -> dict:
    values = key_values(params.get("provider_option"), "--provider-option")
    if params.get("trust_pickle"):
        values["trust_pickle"] = "1"
    return values


def _model_options_from(params: dict) -> dict:
    values = key_values(params.get("model_option"), "--model-option")
    for key in ("weights", "arch"):
        if params.get(key) is not None:
            values[key] = params[key]
    for key in ("trust_checkpoint", "replace_head"):
        if params.get(key):
            values[key] = True
    return values


def _dict_option(value):
    if not isinstance(value, dict):
        raise PagbenchError(f"expected a dict of options, got {type(value).__name__}")
    return dict(value)


def _score_help() -> str:
    pairs: dict[str, list[str]] = {}
    for gradient, score in PAIRED_SCORE.items():
        pairs.setdefault(score, []).append(gradient)
    pairing = ", ".join(f"{'/'.join(gradients)}↔{score}" for score, gradients in pairs.items())
    return f"Score to compare with; auto pairs it with --gradient ({pairing})."


@dataclass(frozen=True)
class EvaluationOptions:
    """What to evaluate and how.

    ``dataset`` of None is the plugins' default dataset (:func:`default_dataset`), resolved on
    construction. ``gradient`` of None is the dataset's ``default_gradient`` (else ``logprob``). ``sigma`` (None: the score provider's default) is in
    [0,1] pixel units. ``score="auto"`` pairs the score with the gradient (see
    :data:`pagbench.evaluation.scores.PAIRED_SCORE`). ``score_provider`` / ``manifold_provider`` of None use
    the dataset's defaults. ``metrics`` of None runs every registered metric that applies.
    ``sigmas`` (None: no σ curves) is the σ grid of the metrics' σ curves
    (:attr:`pagbench.evaluation.metrics.MetricContext.sigmas`); the headline σ is added to it when absent. ``attribution`` names the attribution method
    the gradient metrics score (None: the plugins' default, the raw input gradient) and
    ``attribution_options`` its settings. ``dtype`` is the precision of the model and inputs in
    the gradient pass. ``model_options`` reach the model factory (``weights``, ``arch``, ``trust_checkpoint``,
    ``replace_head``, ``--model-option KEY=VALUE``; see :func:`pagbench.models.loading.load_model`).
    ``metric_options`` holds the values of the options metrics declare (their grids, flags, ...).
    """

    model: str
    dataset: str | None = option(None, Flag("--dataset", help="Registered dataset name.", show_default=True))
    split: str = option("test", Flag("--split", show_default=True))
    num_images: int = option(500, Flag("--num-images", type="int", help="Evaluate the first N images of the split.", show_default=True),
                             check=_positive("--num-images"))
    batch_size: int = option(100, Flag("--batch-size", type="int", show_default=True), check=_positive("--batch-size"))
    seed: int = option(0, Flag("--seed", type="int", help="Seeds the random directions and noise.", show_default=True),
                       check=_whole("--seed"))
    device: str = option("cpu", Flag("--device", help="cpu, cuda or cuda:N.", show_default=True), check=_check_device)
    dtype: str = option("float32", Flag("--dtype", type="choice", choices=DTYPES, show_default=True,
                                        help="Precision of the model and inputs in the gradient pass (class weights and "
                                             "metrics stay float64)."),
                        check=_one_of("dtype", DTYPES))
    gradient: str | None = option(None, Flag("--gradient", type="choice", choices=GRADIENTS,
                                             help="What is differentiated: log-probability of the label, its logit, "
                                                  "log-sum-exp or sum of logits (default: the dataset's, else logprob)."),
                                  check=_one_of("gradient", GRADIENTS))
    attribution: str | None = option(None, Flag("--attribution",
                                                help="Attribution method the gradient metrics score (default: the raw "
                                                     "input gradient; an unknown name is answered with the registered ones)."),
                                     check=_check_attribution)
    attribution_options: dict = option(
        None, Flag("--attribution-option", name="attribution_option", multiple=True,
                   help="KEY=VALUE for the attribution method (one of the keys the method declares)."),
        collect=_attribution_options_from, coerce=_dict_option, default_factory=dict)
    sanity_thresholds: dict = option(
        None, Flag("--sanity-threshold", name="sanity_threshold", multiple=True,
                   help="NAME=VALUE: a sanity flag's threshold (e.g. vanishing_gradient=0.05)."),
        collect=lambda params: key_values(params.get("sanity_threshold"), "--sanity-threshold"),
        coerce=_dict_option, check=_check_sanity_thresholds, default_factory=dict)
    score: str = option("auto", Flag("--score", type="choice", choices=SCORES, show_default=True, help=_score_help()),
                        check=_one_of("score", SCORES))
    sigma: float | None = option(None, Flag("--sigma", type="float",
                                            help="Noise level of the score in [0,1] pixel units (default: the provider's)."),
                                 check=_check_sigma)
    sigmas: tuple[float, ...] | None = option(
        None, Flag("--sigmas", help="σ grid for the score metrics' curves over σ: a,b,c or lo:hi:n (log-spaced); "
                                    "the headline --sigma joins the grid."),
        check=_check_sigmas, coerce=_sigmas, collect=_sigmas_from)
    score_provider: str | None = option(None, Flag("--score-provider", help="Score provider (default: the dataset's)."))
    manifold_provider: str | None = option(None, Flag("--manifold-provider", help="Manifold provider (default: the dataset's)."))
    metrics: tuple[str, ...] | None = option(None, Flag("--metric", name="metric_names", multiple=True,
                                                        help="Only these metrics (repeatable)."), coerce=_tuple_or_none)
    data_root: str | None = option(None, Flag("--data-root", type="path", help="Directory holding local dataset copies."))
    provider_options: dict = option(
        None,
        Flag("--provider-option", name="provider_option", multiple=True, help="KEY=VALUE passed to score/manifold providers."),
        Flag("--trust-pickle", is_flag=True, help="Allow score providers to run code stored in a model pickle (needed only for network classes pagbench does not implement itself)."),
        collect=_provider_options_from, coerce=_dict_option, default_factory=dict)
    model_options: dict = option(
        None,
        Flag("--weights", help="Weights file for the model (e.g. for a model family's NAME offline)."),
        Flag("--arch", help="Architecture of a checkpoint:PATH model: any registered model name or family name."),
        Flag("--trust-checkpoint", is_flag=True, help="Allow whole pickled modules and TorchScript (loading them runs code from the file)."),
        Flag("--replace-head", is_flag=True,
             help="Put an untrained head on weights trained for another class count (result marked requires_finetuning)."),
        Flag("--model-option", name="model_option", multiple=True,
             help="KEY=VALUE for the model factory (e.g. input_size=64, card.regime=NAME)."),
        group="model", collect=_model_options_from, coerce=_dict_option, default_factory=dict)
    #: values of the options metrics declare (:class:`pagbench.evaluation.metrics.MetricOption`), by name;
    #: recorded in the configuration at the top level, like the fields (see :meth:`as_dict`), and
    #: readable as attributes (``options.NAME``)
    metric_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.dataset is None:
            object.__setattr__(self, "dataset", default_dataset())
        if self.gradient is None:
            object.__setattr__(self, "gradient", default_gradient(self.dataset))
        if self.attribution is None:
            from pagbench.evaluation.attributions import default_attribution

            object.__setattr__(self, "attribution", default_attribution())

    def __getattr__(self, name: str):
        """A metric-declared option read as an attribute (``options.NAME``): its value, None when
        unset (false for a flag); any other missing name is an AttributeError."""
        if name.startswith("_") or name == "metric_options":
            raise AttributeError(name)
        declared = declared_metric_options()
        if name not in declared:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return _recorded_value(declared[name], self.__dict__.get("metric_options", {}).get(name))

    def as_dict(self) -> dict:
        """The configuration as recorded in a result: the fields, with ``metric_options`` spread
        to the top level. An option declared with ``recorded_after`` is always recorded (None, or
        false for a flag, when unset) right after the key it names, as the field it once was; the
        other metric options follow at the end, only when set (lists), so results of runs without
        them keep their layout."""
        config = asdict(self)
        extra = config.pop("metric_options")
        declared = declared_metric_options()
        following: dict[str, list[str]] = {}
        for name, declaration in declared.items():
            if declaration.recorded_after is not None:
                following.setdefault(declaration.recorded_after, []).append(name)
        recorded: dict = {}

        def place(key, value):
            recorded[key] = value
            for name in following.get(key, ()):
                if name not in recorded and name not in config:
                    place(name, _recorded_value(declared[name], extra.get(name)))

        for key, value in config.items():
            place(key, value)
        for names in following.values():
            for name in names:
                if name not in recorded:
                    place(name, _recorded_value(declared[name], extra.get(name)))
        for name, value in extra.items():
            if name not in recorded:
                recorded[name] = list(value) if isinstance(value, tuple) else value
        return recorded

    def metric_option(self, name: str, default=None):
        """A metric option's value: the field ``name`` if there is one, else ``metric_options[name]``;
        ``default`` when it is unset (None)."""
        value = getattr(self, name) if name in _FIELD_NAMES else self.metric_options.get(name)
        return default if value is None else value

    def validate(self) -> None:
        """Every field's declared check, then the checks across fields and the environment
        (:func:`pagbench.evaluation.checks.check_evaluation_options`); one-line :class:`PagbenchError`."""
        for item in fields(self):
            check = item.metadata.get("check")
            if check is not None:
                check(getattr(self, item.name))
        from pagbench.evaluation.checks import check_evaluation_options

        check_evaluation_options(self)

    @classmethod
    def create(cls, **values) -> "EvaluationOptions":
        """Build options from Python keywords: each field's declared ``coerce`` applies (a list
        becomes a tuple, a metric name a one-element tuple), names declared by a registered metric
        that are not fields go into ``metric_options``; an unknown name is a one-line :class:`PagbenchError`."""
        declared = declared_metric_options()
        extra = dict(values.pop("metric_options", None) or {})
        for name in list(values):
            if name not in _FIELD_NAMES:
                if name not in declared:
                    raise PagbenchError(f"unknown option {name!r}; options are {', '.join(sorted(_FIELD_NAMES | set(declared)))}")
                extra[name] = values.pop(name)
            elif values[name] is not None and _FIELDS[name].metadata.get("coerce") is not None:
                values[name] = _FIELDS[name].metadata["coerce"](values[name])
        extra = {name: _option_value(declared.get(name), value) for name, value in extra.items() if value is not None}
        return cls(**values, metric_options=extra)


def _option_value(declaration, value):
    """A metric option's Python value as stored: a list (any iterable for ``floats``) as a tuple."""
    if isinstance(value, list) or (getattr(declaration, "type", None) == "floats" and not isinstance(value, (str, bytes, tuple))
                                   and hasattr(value, "__iter__")):
        return tuple(value)
    return value


def _recorded_value(declaration, value):
    """The value recorded for a declared option: false for an unset flag, else the value (None when unset)."""
    return False if value is None and declaration.type == "flag" else value


def option_names() -> frozenset[str]:
    """Every Python keyword an evaluation takes: the fields (but ``model`` and ``metric_options``)
    and the options registered metrics declare."""
    return (_FIELD_NAMES - {"model", "metric_options"}) | set(declared_metric_options())


def click_options(group: str) -> list:
    """The click options of the fields in ``group`` (``evaluation`` or ``model``), in field order."""
    import click

    types = {"str": None, "int": int, "float": float, "path": click.Path()}
    params = []
    for item in fields(EvaluationOptions):
        if item.metadata.get("group") != group:
            continue
        flags = item.metadata.get("flags", ())
        for flag in flags:
            name = flag.param_name(item.name, len(flags) == 1)
            kwargs: dict[str, Any] = {"help": flag.help, "hidden": flag.hidden}
            if flag.is_flag:
                kwargs["is_flag"] = True
            elif flag.multiple:
                kwargs["multiple"] = True
            else:
                kwargs["type"] = click.Choice(list(flag.choices)) if flag.type == "choice" else types[flag.type]
                kwargs["default"] = None if item.default is MISSING else item.default
                kwargs["show_default"] = flag.show_default
            params.append(click.Option([flag.flag, name], **kwargs))
    return params


def values_from_cli(params: dict) -> dict:
    """The field values (keywords of :meth:`EvaluationOptions.create`) given by the click
    parameters ``params`` of :func:`click_options`; fields whose flags are absent are left out."""
    values = {}
    for item in fields(EvaluationOptions):
        flags = item.metadata.get("flags", ())
        names = [flag.param_name(item.name, len(flags) == 1) for flag in flags]
        if not flags or not any(name in params for name in names):
            continue
        collect = item.metadata.get("collect")
        if collect is not None:
            values[item.name] = collect(params)
        elif flags[0].multiple:
            values[item.name] = tuple(params[names[0]]) or None
        else:
            values[item.name] = params[names[0]]
    return values


def default_dataset() -> str:
    """The name of the one registered dataset whose entry sets ``default=True``."""
    from pagbench.extensions import registry

    marked = [entry.name for entry in registry.datasets() if getattr(entry, "default", False)]
    if len(marked) != 1:
        which = "none does" if not marked else f"{', '.join(marked)} do"
        raise PagbenchError(f"exactly one registered dataset must be marked default=True (DatasetEntry); {which}")
    return marked[0]


def default_gradient(dataset: str) -> str:
    """The ``--gradient`` used when none is named: ``default_gradient`` of ``dataset``'s entry,
    else ``logprob`` (also for a name no plugin registers: that error comes later, in one line)."""
    from pagbench.extensions import registry

    try:
        entry = registry.datasets().get(dataset)
    except PagbenchError:
        return "logprob"
    return getattr(entry, "default_gradient", None) or "logprob"


def demo_models(dataset: str | None = None) -> tuple[str, ...]:
    """The models ``pagbench demo`` compares: ``demo_models`` of ``dataset``'s entry (default: the default dataset)."""
    from pagbench.extensions import registry

    entry = registry.datasets().get(dataset or default_dataset())
    if not entry.demo_models:
        raise PagbenchError(f"dataset {entry.name!r} declares no demo models; name them with --model")
    return tuple(entry.demo_models)


def declared_metric_options() -> dict:
    """name → :class:`~pagbench.evaluation.metrics.MetricOption` over every registered metric."""
    from pagbench.extensions import registry
    from pagbench.evaluation.metrics import metric_option_declarations

    return metric_option_declarations(registry.metrics())


def metric_options_from_config(config: dict) -> dict:
    """The ``metric_options`` of the run that recorded ``config`` (the declared metric options
    that are not :class:`EvaluationOptions` fields), for re-evaluating it."""
    return {name: tuple(config[name]) if isinstance(config[name], list) else config[name]
            for name in declared_metric_options() if name not in _FIELD_NAMES and config.get(name) is not None}


_FIELDS = {item.name: item for item in fields(EvaluationOptions)}
_FIELD_NAMES = frozenset(_FIELDS)
_dataclass_init = EvaluationOptions.__init__


def _init(self, *args, metric_options=None, **values):
    """``EvaluationOptions(...)`` also takes the options registered metrics declare as keywords
    (``EvaluationOptions(model=..., NAME=VALUE)``): they join ``metric_options``
    (None left out, lists as tuples); another unknown keyword is a TypeError, as for any dataclass."""
    extra = dict(metric_options or {})
    unknown = [name for name in values if name not in _FIELD_NAMES]
    if unknown:
        declared = declared_metric_options()
        for name in unknown:
            if name not in declared:
                raise TypeError(f"EvaluationOptions.__init__() got an unexpected keyword argument {name!r}")
            value = values.pop(name)
            if value is not None:
                extra[name] = _option_value(declared[name], value)
    _dataclass_init(self, *args, metric_options=extra, **values)


_init.__doc__ = _init.__doc__
EvaluationOptions.__init__ = _init
