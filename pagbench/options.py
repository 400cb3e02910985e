"""The full configuration of one evaluation run (recorded verbatim in the result file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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

    def as_dict(self) -> dict:
        return asdict(self)
