"""The training loop shared by every regime, with a resumable model store.

A :class:`TrainingRecipe` fixes everything that determines the weights (dataset, regime,
strength, architecture, width, optimiser schedule, seed). Weights and the recipe live in the
model store (``<cache dir>/models/<recipe id>/``); a checkpoint after every epoch lets an
interrupted run resume from the last finished epoch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from .version import __version__
from .errors import PagbenchError
from .paths import cache_dir, write_atomic, write_json_atomic


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines a trained model.

    ``optimizer``: ``sgd`` (momentum, weight decay: the paper's) or ``adam``. ``schedule``:
    ``step`` multiplies the lr by ``lr_decay`` at each milestone epoch (the paper's);
    ``onecycle`` warms up from lr/25 to lr over the first ``warmup`` fraction of the steps and
    anneals to ~0 by cosine, which trains small models fast on a CPU.
    """

    dataset: str
    regime: str = "standard"
    strength: float = 0.0
    architecture: str = "resnet18"
    width: int = 64
    epochs: int = 200
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    lr_milestones: tuple[int, ...] = (150, 175)
    lr_decay: float = 0.1
    augment: str = "crop-flip"
    optimizer: str = "sgd"
    schedule: str = "step"
    warmup: float = 0.15
    seed: int = 0
    regime_options: dict = field(default_factory=dict)
    #: the dataset entry's ``version`` ("" when it declares none; then omitted from the record,
    #: so identifiers of recipes on unversioned datasets do not change)
    dataset_version: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        if not self.dataset_version:
            del data["dataset_version"]
        return data

    @property
    def identifier(self) -> str:
        """A stable id: readable prefix + hash of every field."""
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.architecture}-w{self.width}-{self.dataset}-{self.regime}-{self.strength:g}-s{self.seed}-{digest}"

    def validate(self) -> None:
        if not self.epochs > 0:
            raise PagbenchError(f"epochs must be positive, got {self.epochs}")
        if not self.strength >= 0:
            raise PagbenchError(f"strength must be >= 0, got {self.strength}")
        if not self.lr > 0:
            raise PagbenchError(f"lr must be positive, got {self.lr}")
        if not self.batch_size > 0:
            raise PagbenchError(f"batch size must be positive, got {self.batch_size}")
        if not self.width > 0:
            raise PagbenchError(f"width must be positive, got {self.width}")
        if self.optimizer not in ("sgd", "adam"):
            raise PagbenchError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.schedule not in ("step", "onecycle"):
            raise PagbenchError(f"schedule must be step or onecycle, got {self.schedule!r}")

    def with_overrides(self, **overrides) -> "TrainingRecipe":
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


def store_dir() -> Path:
    return cache_dir() / "models"


def recipe_dir(recipe: TrainingRecipe) -> Path:
    return store_dir() / recipe.identifier


def is_trained(recipe: TrainingRecipe) -> bool:
    return (recipe_dir(recipe) / "weights.pt").exists() and (recipe_dir(recipe) / "recipe.json").exists()


def _save_tensor_file(path: Path, payload) -> None:
    """``torch.save`` atomically, with a ``.sha256`` digest beside the file (:mod:`pagbench.integrity`)."""
    import torch

    from .integrity import write_verified

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_verified(path, buffer.getvalue())


def load_tensor_file(path: Path, map_location="cpu"):
    """A file of :func:`_save_tensor_file`, checked first: its digest (files from before digests
    existed have none) and the zip archive's CRCs. Raises :class:`~pagbench.integrity.DamagedFile`
    (one line) when damaged or unreadable; ``weights_only`` loading always."""
    import torch

    from .integrity import DamagedFile, read_verified, verify_archive

    data = read_verified(path, require_digest=False)
    verify_archive(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:
        raise DamagedFile(f"{path}: cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def learning_rate(recipe: TrainingRecipe, step: int, steps_per_epoch: int) -> float:
    """The lr at global ``step`` (0-based) of the run."""
    if recipe.schedule == "step":
        epoch = step // steps_per_epoch
        return recipe.lr * recipe.lr_decay ** sum(epoch >= milestone for milestone in recipe.lr_milestones)
    total = recipe.epochs * steps_per_epoch
    warm = max(1, int(recipe.warmup * total))
    low, end = recipe.lr / 25.0, recipe.lr / 25.0 / 1e4
    if step < warm:
        return low + (recipe.lr - low) * (1 - math.cos(math.pi * step / warm)) / 2
    progress = (step - warm) / max(1, total - warm)
    return end + (recipe.lr - end) * (1 + math.cos(math.pi * progress)) / 2


def _augment(images, recipe: TrainingRecipe, generator):
    """Random crop (pad 4, reflect) and horizontal flip, per example, as in the paper."""
    import torch
    import torch.nn.functional as functional

    if recipe.augment == "none":
        return images
    batch, _, height, width = images.shape
    padded = functional.pad(images, (4, 4, 4, 4), mode="reflect")
    rows = torch.randint(0, 9, (batch,), generator=generator)
    cols = torch.randint(0, 9, (batch,), generator=generator)
    crops = torch.stack([padded[i, :, rows[i] : rows[i] + height, cols[i] : cols[i] + width] for i in range(batch)])
    flips = torch.rand(batch, generator=generator) < 0.5
    crops[flips] = crops[flips].flip(-1)
    return crops


def train(
    recipe: TrainingRecipe,
    build_model: Callable[[], "object"],
    dataset,
    loss_fn: Callable,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
):
    """Train (or resume) ``recipe``; returns the model in eval mode and the stored recipe record.

    ``loss_fn(model, images, labels, strength, **recipe.regime_options)`` is the regime's loss on
    one batch. After each
    epoch a checkpoint (model, optimiser, epoch) is written atomically; on start, an existing
    checkpoint of the same recipe is resumed.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) training is data-parallel (PyTorch DDP, NCCL on GPUs,
    gloo on CPUs): every rank draws the same global batch of ``batch_size`` and trains on its
    1/world share, so the recipe means the same thing at any world size; rank 0 writes the files.
    """
    import torch

    from .models import resolve_device
    from .progress import progress_bar

    from .validation import check_cache_dir, check_device

    recipe.validate()
    check_device(str(device))
    check_cache_dir()  # before any training: the model store lives there
    device = resolve_device(device)
    rank, world = 0, 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device, rank, world = _init_distributed(device)
    directory = recipe_dir(recipe)
    train_split = dataset.split("train")
    test_split = dataset.split("test")
    torch.manual_seed(recipe.seed)
    model = build_model().to(device)
    network = model
    if world > 1:
        network = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    start_epoch, history = 0, []
    generator = torch.Generator().manual_seed(recipe.seed)  # data order and augmentation
    checkpoint_path = directory / "checkpoint.pt"
    if checkpoint_path.exists():
        from .integrity import DamagedFile, warn_damaged

        try:
            state = load_tensor_file(checkpoint_path, map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch = int(state["epoch"])
            history = json.loads(state["history"])
            torch.set_rng_state(state["rng"])
            generator.set_state(state["generator"])
            if log:
                log(f"resuming {recipe.identifier} from epoch {start_epoch}")
        except (DamagedFile, KeyError, TypeError, ValueError, RuntimeError) as error:
            # a damaged resume checkpoint costs the epochs it held, never wrong weights
            error = error if isinstance(error, DamagedFile) else DamagedFile(f"{checkpoint_path}: not a resume checkpoint ({type(error).__name__})")
            warn_damaged(error, "training from the start")
            if log:
                log(f"{error}; training {recipe.identifier} from the start")
            torch.manual_seed(recipe.seed)
            model = build_model().to(device)
            network = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
            optimizer = (torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay) if recipe.optimizer == "adam"
                         else torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay))
            start_epoch, history = 0, []
            generator = torch.Generator().manual_seed(recipe.seed)
    count = len(train_split)
    steps_per_epoch = (count + recipe.batch_size - 1) // recipe.batch_size
    total_steps = steps_per_epoch * (recipe.epochs - start_epoch)
    started = time.perf_counter()
    description = f"training {recipe.regime} {recipe.strength:g} on {recipe.dataset}"
    with progress_bar(description, total=total_steps, enabled=progress and rank == 0) as advance:
        for epoch in range(start_epoch, recipe.epochs):
            network.train()
            order = torch.randperm(count, generator=generator)
            loss_sum, seen = 0.0, 0
            for step_in_epoch, start in enumerate(range(0, count, recipe.batch_size)):
                lr = learning_rate(recipe, epoch * steps_per_epoch + step_in_epoch, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = train_split.batch(order[start : start + recipe.batch_size].tolist())
                images = _augment(batch.images, recipe, generator)[rank::world].to(device)
                labels = batch.labels[rank::world].to(device)
                loss = loss_fn(network, images, labels, recipe.strength, **recipe.regime_options)
                if not torch.isfinite(loss):
                    raise PagbenchError(f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower the lr or the strength")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * labels.shape[0]
                seen += labels.shape[0]
                status = {"epoch": f"{epoch + 1}/{recipe.epochs}", "loss": loss_sum / seen}
                if history and "test_accuracy" in history[-1]:
                    status["test acc"] = history[-1]["test_accuracy"]
                advance(1, **status)
            model.eval()  # a quick check on (at most) 500 test images, shown in the progress bar
            quick = evaluate_accuracy(model, test_split, device, limit=500)
            history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "lr": lr, "test_accuracy": quick})
            advance(0, epoch=f"{epoch + 1}/{recipe.epochs}", loss=loss_sum / seen, **{"test acc": quick})
            if rank == 0:
                _save_tensor_file(
                    checkpoint_path,
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                     "history": json.dumps(history), "rng": torch.get_rng_state(), "generator": generator.get_state()},
                )
    model.eval()
    accuracy = evaluate_accuracy(model, test_split, device)
    record = {
        "recipe": recipe.as_dict(),
        "identifier": recipe.identifier,
        "test_accuracy": accuracy,
        "history": history,
        "train_seconds": time.perf_counter() - started,
        "world_size": world,
        "pagbench_version": __version__,
    }
    if rank == 0:
        _save_tensor_file(directory / "weights.pt", {key: value.detach().cpu() for key, value in model.state_dict().items()})
        write_json_atomic(directory / "recipe.json", record)
        checkpoint_path.unlink(missing_ok=True)
        (directory / "checkpoint.pt.sha256").unlink(missing_ok=True)
    if world > 1:
        import torch.distributed as distributed

        distributed.barrier()
    return model, record


def _init_distributed(device):
    """Join the torchrun process group; returns (this rank's device, rank, world size)."""
    import torch
    import torch.distributed as distributed

    if not distributed.is_initialized():
        distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device, distributed.get_rank(), distributed.get_world_size()


def evaluate_accuracy(model, split, device, batch_size: int = 500, limit: int | None = None) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on the first ``limit`` images of ``split`` (all by default)."""
    import torch

    count = len(split) if limit is None else min(limit, len(split))
    correct = 0
    with torch.no_grad():
        for start in range(0, count, batch_size):
            batch = split.batch(list(range(start, min(start + batch_size, count))))
            correct += int((model(batch.images.to(device)).argmax(1).cpu() == batch.labels).sum())
    return correct / count


def load_trained(recipe: TrainingRecipe, build_model: Callable[[], "object"], device="cpu"):
    """The stored model of ``recipe`` (weights_only loading, digest and CRCs checked first) and its
    record; :class:`~pagbench.integrity.DamagedFile` when either file is damaged."""
    from .integrity import DamagedFile

    directory = recipe_dir(recipe)
    model = build_model()
    state = load_tensor_file(directory / "weights.pt")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as error:
        raise DamagedFile(f"{directory / 'weights.pt'}: does not fit the recipe's network ({type(error).__name__})") from None
    try:
        record = json.loads((directory / "recipe.json").read_text())
    except (OSError, ValueError) as error:
        raise DamagedFile(f"{directory / 'recipe.json'}: unreadable ({type(error).__name__})") from None
    return model.to(device).eval(), record
