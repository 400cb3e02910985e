"""Recipes of the estimators pagbench fits itself (denoisers, autoencoders), in the core's model store.

Each fitted model lives in ``<cache dir>/models/<identifier>/`` (:mod:`pagbench.models.store`) as
``weights.pt`` (a state dict, loadable with ``torch.load(weights_only=True)``) and
``record.json`` (kind, recipe, network arguments, training summary). Providers find the newest
record of their kind for a dataset, or take an explicit directory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pagbench.plugin import store
from pagbench.plugin import MetricUnavailable, PagbenchError
from pagbench.plugin import fingerprint

RECORD = "record.json"
store_dir = store.store_dir


@dataclass(frozen=True)
class DenoiserRecipe:
    """Denoising score matching: σ ~ log-normal(log ``sigma_median``, ``sigma_log_std``) in [0,1]
    pixel units; labels dropped with probability ``label_dropout`` (unconditional model)."""

    dataset: str
    width: int = 32
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    sigma_median: float = 0.1
    sigma_log_std: float = 1.0
    label_dropout: float = 0.2
    seed: int = 0
    kind: str = "denoiser"

    def validate(self) -> None:
        _positive(steps=self.steps, batch_size=self.batch_size, lr=self.lr, width=self.width, sigma_median=self.sigma_median)


@dataclass(frozen=True)
class AutoencoderRecipe:
    """A VAE with Gaussian decoder noise ``noise_std`` (pixel units) and a standard-normal prior."""

    dataset: str
    latent_dim: int = 16
    width: int = 32
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    noise_std: float = 0.05
    seed: int = 0
    kind: str = "autoencoder"

    def validate(self) -> None:
        _positive(latent_dim=self.latent_dim, steps=self.steps, batch_size=self.batch_size, lr=self.lr, width=self.width, noise_std=self.noise_std)


def _positive(**values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise PagbenchError(f"{name.replace('_', '-')} must be positive, got {value}")


def identifier(recipe) -> str:
    digest = fingerprint(asdict(recipe), 10)
    extra = f"-k{recipe.latent_dim}" if recipe.kind == "autoencoder" else ""
    return f"{recipe.kind}-{recipe.dataset}{extra}-w{recipe.width}-s{recipe.seed}-{digest}"


def with_overrides(recipe, **overrides):
    return replace(recipe, **{key: value for key, value in overrides.items() if value is not None})


def save(directory: Path, model, record: dict) -> None:
    store.save_model(directory, model, record, RECORD)  # weights.pt with its digest, checked by load()


def find(kind: str, dataset: str, path: str | None = None, **match) -> Path:
    """The store directory of the newest fitted ``kind`` for ``dataset`` (matching ``match``
    recipe fields), or ``path`` itself; raises MetricUnavailable with the command to run."""
    if path is not None:
        directory = Path(path)
        if directory.is_file():
            directory = directory.parent
        if not (directory / "record.json").is_file() or not (directory / "weights.pt").is_file():
            raise PagbenchError(f"{path} is not a fitted {kind} (expected record.json and weights.pt there)")
        return directory
    found = []
    for mtime, directory, record in store.records(f"{kind}-*", RECORD):
        recipe = record.get("recipe", {})
        if record.get("kind") == kind and recipe.get("dataset") == dataset and all(recipe.get(k) == v for k, v in match.items()):
            found.append((mtime, directory))
    root = store_dir()
    if not found:
        command = "fit-score" if kind == "denoiser" else "fit-manifold"
        extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in match.items())
        if kind == "autoencoder" and not match:
            extra = " --latent-dim K"
        raise MetricUnavailable(f"no fitted {kind} for dataset {dataset!r} in {root}; run `pagbench {command} --dataset {dataset}{extra}`")
    return max(found)[1]


def _refit(directory: Path, record: dict | None = None) -> str:
    """What to do about a damaged fit: delete it and fit again."""
    kind = (record or {}).get("kind") or directory.name.split("-")[0]
    dataset = ((record or {}).get("recipe") or {}).get("dataset", "D")
    command = "fit-score" if kind == "denoiser" else "fit-manifold"
    return f"delete {directory} and run `pagbench {command} --dataset {dataset}` again"


def load(directory: Path, device="cpu"):
    """(model in eval mode with frozen parameters, record) from a store directory."""
    from pagbench.plugin import DamagedFile

    from .networks import Autoencoder, Denoiser

    try:
        record = store.load_record(directory, RECORD)
        arguments = record["network"]
        model = Denoiser(**arguments) if record["kind"] == "denoiser" else Autoencoder(**arguments)
    except DamagedFile as error:
        raise PagbenchError(f"{error}; {_refit(directory)}") from None
    except (KeyError, TypeError) as error:
        raise PagbenchError(f"{directory / RECORD} is damaged ({type(error).__name__}); {_refit(directory)}") from None
    weights = directory / store.WEIGHTS
    try:
        state = store.load_tensors(weights)  # fits from before digests have none: CRCs still checked
        model.load_state_dict(state, strict=True)
    except DamagedFile as error:
        raise PagbenchError(f"{error}; {_refit(directory, record)}") from None
    except Exception as error:
        raise PagbenchError(f"{weights} cannot be loaded: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}; "
                            f"{_refit(directory, record)}") from None
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, record
