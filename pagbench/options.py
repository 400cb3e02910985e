"""The full configuration of one evaluation run (recorded verbatim in the result file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class EvaluationOptions:
    """What to evaluate and how.

    ``sigma`` (None: the score provider's default) and every ε / noise level are in [0,1] pixel
    units. ``score="auto"`` pairs the score with the gradient (see :data:`pagbench.scores.PAIRED_SCORE`).
    ``score_provider`` / ``manifold_provider`` of None use the dataset's defaults. ``metrics`` of
    None runs every registered metric that applies. ``model_options`` reach the model factory
    (``weights``, ``arch``, ``trust_checkpoint``, ``replace_head``, ``--model-option KEY=VALUE``;
    see :func:`pagbench.models.load_model`).
    """

    model: str
    dataset: str = "synthetic"
    split: str = "test"
    num_images: int = 500
    batch_size: int = 100
    seed: int = 0
    device: str = "cpu"
    gradient: str = "logprob"
    score: str = "auto"
    sigma: float | None = None
    score_provider: str | None = None
    manifold_provider: str | None = None
    metrics: tuple[str, ...] | None = None
    robustness_epsilons: tuple[float, ...] | None = None
    headline_epsilon: float | None = None
    noise_levels: tuple[float, ...] | None = None
    data_root: str | None = None
    lpips_random_backbone: bool = False
    provider_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    #: values of options declared by metrics (:class:`pagbench.metrics.MetricOption`) that are not
    #: fields above; recorded in the configuration at the top level, like the fields
    metric_options: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The configuration as recorded in a result: the fields, with ``metric_options`` spread
        to the top level (absent when empty, so results of runs without them keep their layout)."""
        config = asdict(self)
        extra = config.pop("metric_options")
        for name, value in extra.items():
            config[name] = list(value) if isinstance(value, tuple) else value
        return config

    def metric_option(self, name: str, default=None):
        """A metric option's value: the field ``name`` if there is one, else ``metric_options[name]``;
        ``default`` when it is unset (None)."""
        value = getattr(self, name) if name in _FIELD_NAMES else self.metric_options.get(name)
        return default if value is None else value

    @classmethod
    def create(cls, **values) -> "EvaluationOptions":
        """Build options from keywords, routing names declared by a registered metric that are not
        fields into ``metric_options``; an unknown name is a one-line :class:`PagbenchError`."""
        from .errors import PagbenchError

        declared = declared_metric_options()
        extra = dict(values.pop("metric_options", None) or {})
        for name in list(values):
            if name not in _FIELD_NAMES:
                if name not in declared:
                    raise PagbenchError(f"unknown option {name!r}; options are {', '.join(sorted(_FIELD_NAMES | set(declared)))}")
                extra[name] = values.pop(name)
        extra = {name: tuple(value) if isinstance(value, list) else value for name, value in extra.items() if value is not None}
        return cls(**values, metric_options=extra)


def declared_metric_options() -> dict:
    """name → :class:`~pagbench.metrics.MetricOption` over every registered metric."""
    from . import registry
    from .metrics import metric_option_declarations

    return metric_option_declarations(registry.metrics())


def metric_options_from_config(config: dict) -> dict:
    """The ``metric_options`` of the run that recorded ``config`` (the declared metric options
    that are not :class:`EvaluationOptions` fields), for re-evaluating it."""
    return {name: tuple(config[name]) if isinstance(config[name], list) else config[name]
            for name in declared_metric_options() if name not in _FIELD_NAMES and config.get(name) is not None}


_FIELD_NAMES = frozenset(item.name for item in fields(EvaluationOptions))
