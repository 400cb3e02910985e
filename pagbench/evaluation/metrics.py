"""The metric interface: the per-batch context every metric reads, and what a metric declares.

A metric is a small class (a plugin registers an instance through ``register_metrics``): its
``name``, ``higher_is_better``, what it ``requires`` from the batch (``gradient``, ``score``,
``tangent_basis``, ``signal_mask``) and one batched computation returning per-image values; means,
standard errors and degenerate-image counts are computed in one place (:mod:`pagbench.evaluation.aggregate`).
It also declares its ``options`` (:class:`MetricOption`: the CLI flags and Python keywords are
generated from them, and the ones marked ``key`` join the leaderboard entry key) and its
``board_columns`` (:class:`BoardColumn`). The built-in metrics live in the ``metrics`` plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from pagbench.evaluation.aggregate import Summary


#: Option types a metric can declare: the CLI parses the text, Python callers pass the value.
OPTION_TYPES = ("float", "int", "str", "floats", "flag")


@dataclass(frozen=True)
class MetricOption:
    """One option of a metric.

    ``name`` is the Python keyword and the configuration key (``pagbench.evaluate(name=...)``,
    ``result["config"][name]``); ``flag`` the CLI flag (default ``--`` + name with ``-`` for ``_``).
    ``type``: one of :data:`OPTION_TYPES` (``floats`` is a tuple of floats, given on the command
    line as ``a,b,c`` or ``lo:hi:n`` for n log-spaced values). ``default`` of None means "the
    metric's (or the dataset's) own choice". ``key``: the option changes the numbers, so two results
    that differ in it are different leaderboard rows; ``setting`` names the key in the metric's
    recorded settings (``result["metric_settings"][metric]``) holding the value the run resolved,
    which the entry key prefers over the raw option (None: the raw option only). A ``flag`` joins
    the key as true or false. ``hidden`` keeps the flag out of ``--help`` (e.g. a test-only switch).
    ``recorded_after`` names the configuration key this option follows: the option is then recorded
    in every run's configuration, None (false for a flag) when unset, right after that key (at the
    end when the key is absent), so results keep the layout they had when the option was a field
    of the core's options; without it the option is recorded, at the end, only when set.
    Values are checked before any compute by the metric's :meth:`Metric.check_options`.
    ``board_text``: how the leaderboard's configuration line shows the recorded value, a format
    with ``{value}`` (the value escaped; a flag's text is shown when it is true), "" to leave it out.
    """

    name: str
    type: str = "float"
    default: Any = None
    help: str = ""
    flag: str | None = None
    key: bool = True
    setting: str | None = None
    hidden: bool = False
    recorded_after: str | None = None
    board_text: str = ""

    def __post_init__(self):
        if self.type not in OPTION_TYPES:
            raise ValueError(f"metric option {self.name!r}: type must be one of {', '.join(OPTION_TYPES)}, got {self.type!r}")
        try:
            self.board_text.format(value="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"metric option {self.name!r}: board_text must be a format with {{value}} only, got "
                             f"{self.board_text!r} ({type(error).__name__}: {error})") from None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class BoardColumn:
    """A leaderboard column: the header and the reported metric value (``output``) it shows.

    ``unavailable_as`` is the metric name whose ``unavailable`` reason a footnote gives when the
    value is missing (default: the metric's name). ``with_stderr`` appends "± se". Columns are
    ordered by ``position`` (then header); a column appears in a dataset's table when ``always``
    or when at least one of its rows reports the output or a reason for it. ``rank`` (1 first)
    makes the column a sort key of the board, best value first (the leaderboard ranks by the
    rank-1 output, ties broken by the next), and puts it on every model card's entry table.

    Texts of the board's header: ``legend`` explains the column in the list of columns (markdown;
    continuation lines indented by two spaces; empty: not listed); ``note``, on a ranking column,
    says why it ranks (markdown, after the sorting rule). ``baseline``, with ``baseline_label``:
    an output whose distinct values over a table's rows are given above it (e.g. what a random
    direction scores).
    """

    header: str
    output: str
    unavailable_as: str | None = None
    with_stderr: bool = False
    position: int = 100
    always: bool = False
    rank: int | None = None
    legend: str = ""
    note: str = ""
    baseline: str | None = None
    baseline_label: str = ""


@dataclass
class MetricContext:
    """Everything computed once per batch and shared by all metrics.

    images (B, C, H, W) in [0,1] on the evaluation device, in the ``--dtype`` precision (float32 by
    default); labels (B,) int64; logits (B, Y) detached; gradient (B, C, H, W) float64 on the
    evaluation device: the chosen attribution (``--attribution``; by default the raw input
    gradient); gradient_ok (B,) bool on that device, False for zero or non-finite gradients; score
    (B, C, H, W) float64 at the headline σ, or None; ``sigmas`` the σ grid of ``--sigmas`` (None
    without it) and ``sigma_scores`` the scores at each of its points (a list aligned with
    ``sigmas``; the headline σ's entry is ``score`` itself); tangent_basis (B, k, D) float64 with
    orthonormal rows, or None (on the evaluation device, or on the CPU when it would not fit);
    signal_mask (B, 1, H, W) bool or None. Per-image values a metric returns may stay on the
    device: the runner moves them to the CPU for aggregation. ``probabilities(x)`` runs the model without gradients and returns
    softmax probabilities (B, Y) float64. ``randomness.randn(stream, *shape)`` draws (B, *shape)
    float64 standard normals from per-image streams seeded by the run's seed, the image index and
    the stream name, so numbers do not depend on the batch size.
    """

    images: "torch.Tensor"
    labels: "torch.Tensor"
    logits: "torch.Tensor"
    gradient: "torch.Tensor"
    gradient_ok: "torch.Tensor"
    probabilities: Callable[["torch.Tensor"], "torch.Tensor"]
    randomness: Any
    dataset: Any
    options: Any
    score: "torch.Tensor | None" = None
    tangent_basis: "torch.Tensor | None" = None
    signal_mask: "torch.Tensor | None" = None
    sigmas: "list[float] | None" = None
    sigma_scores: "list[torch.Tensor] | None" = None

    def reference_probabilities(self) -> "torch.Tensor":
        """softmax of the batch's logits (B, Y) float64, from the gradient pass: no extra forward."""
        import torch

        return torch.softmax(self.logits.double(), dim=1)

    def gradient_for_score(self) -> "torch.Tensor":
        """The gradient resized like the images were for the score when the score is taken at
        another resolution (``Dataset.score_image_shape``), else the gradient itself."""
        return self.gradient_like(self.score)

    def gradient_like(self, score: "torch.Tensor | None") -> "torch.Tensor":
        """The gradient resized to ``score``'s resolution when it differs (else the gradient)."""
        from pagbench.evaluation.scores import resize_images

        if score is None or score.shape == self.gradient.shape:
            return self.gradient
        return resize_images(self.gradient, score.shape[-2:])

    def masked(self, values: "torch.Tensor") -> "torch.Tensor":
        """``values`` with NaN where the gradient is degenerate (excluded from means)."""
        import torch

        values = values.double().to(self.gradient_ok.device)
        return torch.where(self.gradient_ok, values, torch.full_like(values, float("nan")))


@dataclass
class MetricOutput:
    """Per-image values (name → (B,)) and curves (name → (B, G)) of one batch."""

    values: dict[str, "torch.Tensor"] = field(default_factory=dict)
    curves: dict[str, "torch.Tensor"] = field(default_factory=dict)


def cosine(first, second):
    """Per-image cosine of two (B, ...) tensors in float64, (B,); NaN where either is zero."""
    import torch

    a = first.reshape(first.shape[0], -1).double()
    b = second.reshape(second.shape[0], -1).double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    value = (a * b).sum(1) / norms
    return torch.where(norms > 0, value, torch.full_like(value, float("nan")))


class Metric:
    """Base class for metrics. Subclasses set the class attributes and implement ``compute``.

    ``outputs`` maps each per-image value the metric reports to its direction (True: higher is
    better, False: lower is better, None: descriptive). By default it is ``{name: higher_is_better}``.
    """

    name: str = ""
    higher_is_better: bool | None = True
    requires: frozenset[str] = frozenset()
    description: str = ""
    #: the options this metric takes (see :class:`MetricOption`)
    options: tuple[MetricOption, ...] = ()
    #: the leaderboard columns this metric contributes (see :class:`BoardColumn`)
    board_columns: tuple[BoardColumn, ...] = ()
    #: the values each output can take, ``{output: (low, high)}`` (inclusive; ±inf for an open
    #: end); the leaderboard refuses an entry outside them. Outputs not listed: finite and at most
    #: :data:`pagbench.leaderboard.store.MAX_PLAUSIBLE` in magnitude.
    value_ranges: dict[str, tuple[float, float]] = {}

    @property
    def outputs(self) -> dict[str, bool | None]:
        return {self.name: self.higher_is_better}

    def check_options(self, options) -> None:
        """Raise a one-line :class:`pagbench.errors.PagbenchError` when this metric's option values
        in ``options`` (an :class:`~pagbench.evaluation.options.EvaluationOptions`; read them with
        :meth:`option`) are out of range. Called for every registered metric before any data or
        model is loaded."""

    def check_available(self, setup) -> None:
        """Raise :class:`pagbench.errors.MetricUnavailable` when the metric cannot run.

        ``setup`` is the :class:`pagbench.evaluation.runner.EvaluationSetup` (dataset, providers, options).
        """

    def compute(self, context: MetricContext) -> MetricOutput:
        raise NotImplementedError

    def derived(self, per_image: dict[str, "torch.Tensor"]) -> dict[str, "Summary"]:
        """Summaries computed from the whole run's per-image values (e.g. ratios of means)."""
        return {}

    def derived_outputs(self) -> dict[str, bool | None]:
        return {}

    def curve_grid(self, setup) -> dict[str, list[float]]:
        """The x-values of each curve this metric reports (e.g. the ε grid)."""
        return {}

    def describe(self, setup) -> dict:
        """Settings recorded in the result (e.g. the ε grid and the headline ε)."""
        return {}

    def option(self, options, name: str):
        """The value of this metric's option ``name`` in ``options`` (an
        :class:`~pagbench.evaluation.options.EvaluationOptions`), or the option's declared default."""
        declared = {option.name: option for option in self.options}
        if name not in declared:
            raise KeyError(f"metric {self.name!r} declares no option {name!r}")
        return options.metric_option(name, declared[name].default)


def metric_option_declarations(metrics) -> dict[str, MetricOption]:
    """name → :class:`MetricOption` over ``metrics`` (an iterable of :class:`Metric`); two metrics
    may share an option only when they declare it identically."""
    declared: dict[str, MetricOption] = {}
    for metric in metrics:
        for option in metric.options:
            if option.name in declared and declared[option.name] != option:
                raise ValueError(f"metric option {option.name!r} is declared differently by two metrics")
            declared[option.name] = option
    return declared


def entry_key_fields(result: dict, metrics) -> dict:
    """The metric-declared fields of ``result``'s leaderboard entry key: for every option marked
    ``key``, the value the run resolved (``metric_settings[metric][setting]``) or else the raw
    option from the configuration. An option neither resolved nor present in the configuration is
    left out (a configuration records only the metric options that were set, besides the
    :class:`~pagbench.evaluation.options.EvaluationOptions` fields), so installing a plugin never changes the
    key of an existing entry."""
    config = result.get("config") or {}
    settings = result.get("metric_settings") or {}
    always = set(config)
    key = {}
    for metric in metrics:
        recorded = settings.get(metric.name) or {}
        for option in metric.options:
            if not option.key:
                continue
            value = recorded.get(option.setting) if option.setting else None
            if value is None:
                value = config.get(option.name)
            if isinstance(value, tuple):
                value = list(value)
            if option.type == "flag" and (value is not None or option.name in always):
                value = bool(value)
            if value is None and option.name not in always and option.name not in key:
                continue
            if key.get(option.name) is None:
                key[option.name] = value
    return key
