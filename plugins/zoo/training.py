"""The zoo's training loop, shared by every regime, resumable, into the model store.

A :class:`TrainingRecipe` fixes everything that determines the weights (dataset, regime,
strength, architecture, width, optimiser schedule, seed). Weights and the recipe live in the
core's model store (:mod:`pagbench.models.store`: ``<cache dir>/models/<recipe id>/`` with
``weights.pt`` and ``recipe.json``); a checkpoint after every epoch lets an interrupted run
resume from the last finished epoch.

How a recipe is executed (data on the device, ``channels_last``, ``torch.compile``, cuDNN
determinism) is a :class:`TrainingOptions`, outside the recipe and its id: those switches move
results only at floating-point rounding (as the device does). Autocast (``amp``) changes the
arithmetic, so it is a recipe field, in the id only when it is not ``"off"``.

**CPU threads.** On a CPU, a convolution's result depends (at rounding level, which training
amplifies into different weights) on how many intra-op threads split its reductions. So the
thread count is a recipe field too, ``cpu_threads`` (default 1, omitted from the record at 1, so
the ids of recipes made before it existed do not change): :func:`train` pins
``torch.set_num_threads(cpu_threads)`` while it trains on a CPU and restores the caller's count
afterwards, and the same recipe gives bit-identical weights whatever ``OMP_NUM_THREADS`` says.
**CPU kernels.** AVX-512 and AVX2 kernels round differently too: ``import pagbench`` caps torch's
CPU libraries at AVX2 (:mod:`pagbench.numerics`), so the weights are the same on every x86-64
machine; the record's ``execution.cpu_numerics`` says what the run had, and a run whose torch was
started before pagbench (its own kernels) warns. (CUDA runs are not pinned: there determinism depends on ``TrainingOptions.deterministic`` and
the GPU model; see the README.)
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from pagbench.plugin import PagbenchError
from pagbench.plugin import fingerprint
from pagbench.plugin import is_stored, load_record, load_tensors, load_weights, model_dir, save_model, save_tensors
from pagbench.plugin import __version__

RECORD = "recipe.json"


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
    #: autocast of the forward passes and the regime's loss: ``off`` (float32, the default),
    #: ``bf16`` or ``fp16`` (with a GradScaler). Omitted from the record at ``off``, so the ids of
    #: float32 recipes do not change.
    amp: str = "off"
    #: intra-op CPU threads the run is pinned to while training on a CPU (see the module
    #: docstring). Omitted from the record at 1, so the ids of one-thread recipes do not change.
    cpu_threads: int = 1

    def as_dict(self) -> dict:
        data = asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        if not self.dataset_version:
            del data["dataset_version"]
        if self.amp == "off":
            del data["amp"]
        if self.cpu_threads == 1:
            del data["cpu_threads"]
        return data

    @property
    def identifier(self) -> str:
        """A stable id: readable prefix + hash of every field."""
        digest = fingerprint(self.as_dict(), 10)
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
        if isinstance(self.cpu_threads, bool) or not isinstance(self.cpu_threads, int) or self.cpu_threads < 1:
            raise PagbenchError(f"cpu_threads must be a positive integer, got {self.cpu_threads!r}")
        if self.amp not in AMP_MODES:
            raise PagbenchError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.amp == "fp16" and self.regime == "gnorm" and self.strength > 0:
            # the penalty's input gradient (a double backward) is taken inside the loss, before
            # the GradScaler scales anything: in fp16 it underflows; bf16 has float32's range
            raise PagbenchError("--amp fp16 excludes gnorm: its input-gradient penalty is not loss-scaled and underflows in fp16; use --amp bf16")

    def with_overrides(self, **overrides) -> "TrainingRecipe":
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


AMP_MODES = ("off", "bf16", "fp16")


@dataclass(frozen=True)
class TrainingOptions:
    """How a recipe is executed; none of these is part of the recipe or its id.

    ``device_data``: keep the training split on the training device and index, crop and flip it
    there (None: on for in-memory splits, off for file-backed ones, whose batches go through
    pinned memory with non-blocking copies on CUDA). Bit-identical to host batches: the crop
    offsets and flips are drawn from the same CPU generator in the same order.
    ``channels_last``: NHWC memory format for the model and its inputs (a GPU speed-up; values
    move at rounding level). ``compile``: ``torch.compile`` the network (not with gnorm: compiled
    graphs do not support its double backward). ``deterministic``: cuDNN deterministic kernels
    and no autotuning (None: on for CPU, where kernels are deterministic anyway, off for CUDA,
    which then autotunes and allows TF32 matmuls).
    """

    device_data: bool | None = None
    channels_last: bool = False
    compile: bool = False
    deterministic: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def recipe_dir(recipe: TrainingRecipe) -> Path:
    return model_dir(recipe.identifier)


def is_trained(recipe: TrainingRecipe) -> bool:
    return is_stored(recipe_dir(recipe), RECORD)


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


def augment(images, recipe: TrainingRecipe, generator):
    """Random crop (pad 4, reflect) and horizontal flip, per example, as in the paper, as two
    batched gathers (rows, then flipped or unflipped columns) on the images' device.
    images (B, C, H, W) float in [0,1].

    The crop offsets (B rows, B columns in 0..8) and flips (B uniforms < 0.5) are drawn from the
    CPU ``generator`` in that order, so the result is the same on every device and bit-identical
    to cropping and flipping each example in a loop."""
    import torch
    import torch.nn.functional as functional

    if recipe.augment == "none":
        return images
    batch, channels, height, width = images.shape
    padded = functional.pad(images, (4, 4, 4, 4), mode="reflect")
    rows = torch.randint(0, 9, (batch,), generator=generator)
    cols = torch.randint(0, 9, (batch,), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    offsets = torch.arange(width)
    row_index = rows[:, None] + torch.arange(height)  # (B, H) rows of the padded image
    col_index = cols[:, None] + torch.where(flips[:, None], width - 1 - offsets, offsets)  # (B, W), flipped where drawn
    row_index = row_index.to(images.device, non_blocking=True).view(batch, 1, height, 1)
    col_index = col_index.to(images.device, non_blocking=True).view(batch, 1, 1, width)
    cropped_rows = torch.gather(padded, 2, row_index.expand(batch, channels, height, width + 8))
    return torch.gather(cropped_rows, 3, col_index.expand(batch, channels, height, width))


class _ResidentSplit:
    """An in-memory split moved once to the training device; batches are indexed there."""

    def __init__(self, images, labels, device):
        self.images = images.to(device)  # uint8 kept as uint8 (4× less memory), converted per batch
        self.labels = labels.to(device)

    def batch(self, index):
        import torch

        images = self.images[index]
        if images.dtype == torch.uint8:
            images = images.float() / 255.0  # as Uint8Split.batch
        return images, self.labels[index]


def resident_split(split, device):
    """A :class:`_ResidentSplit` of ``split`` when it is held in memory (its own class declares
    ``in_memory``, see :class:`pagbench.plugin.ImageSplit`; a subclass that may change ``batch``
    must say so again), else None (file-backed splits stream their batches)."""
    if vars(type(split)).get("in_memory", False):
        return _ResidentSplit(split.images, split.labels, device)
    return None


def _to_device(tensor, device):
    """Host → device; through pinned memory without blocking the host on CUDA."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@contextmanager
def _kernel_mode(device, deterministic: bool):
    """cuDNN/matmul settings for the run, restored afterwards (no effect on CPU)."""
    import torch

    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, not deterministic
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not deterministic
    try:
        yield
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def _checked_cpu_numerics(recipe: TrainingRecipe) -> dict:
    """This process's CPU arithmetic (:func:`pagbench.plugin.cpu_numerics`), with a warning when it
    is not pinned to the kernels every x86-64 machine has: the weights are then this machine's only."""
    import warnings

    from pagbench.plugin import cpu_numerics

    numerics = cpu_numerics()
    if not numerics["pinned"] and numerics["machine"].lower() in ("x86_64", "amd64"):
        warnings.warn(f"training {recipe.identifier} with this CPU's own {numerics['capability']} kernels (torch was imported "
                      "before pagbench, or PAGBENCH_CPU_NUMERICS=native): the weights may differ from other machines' for "
                      "this recipe; import pagbench before torch, or use `pagbench train`", stacklevel=3)
    return numerics


@contextmanager
def pinned_threads(device, threads: int):
    """``torch.set_num_threads(threads)`` while training on a CPU ``device``, the caller's count
    restored afterwards (no effect on other devices)."""
    import torch

    if device.type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def optimizer_for(recipe: TrainingRecipe, model, device):
    """The optimiser of ``recipe`` over ``model``'s parameters (Adam, or SGD with momentum and
    weight decay) and its GradScaler (fp16 autocast only, else None)."""
    import torch

    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return optimizer, (torch.amp.GradScaler(torch.device(device).type) if recipe.amp == "fp16" else None)


def autocast_dtype(recipe: TrainingRecipe):
    """The autocast dtype of ``recipe.amp`` (None when off)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.amp)


def training_step(network, optimizer, scaler, loss_fn, images, labels, recipe: TrainingRecipe, device_type: str, amp_dtype):
    """One optimisation step of :func:`train`: the regime's loss on the batch (images (B, C, H, W)
    in [0,1], labels (B,), on the device) under autocast when ``amp_dtype`` is set, backward
    (through ``scaler`` for fp16) and the optimiser's step. Returns the loss, a 0-d tensor on the
    device (not read back: the caller decides when to synchronise). The lr is set by the caller."""
    import torch

    with torch.autocast(device_type, dtype=amp_dtype) if amp_dtype else nullcontext():
        loss = loss_fn(network, images, labels, recipe.strength, **recipe.regime_options)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss


def train(
    recipe: TrainingRecipe,
    build_model: Callable[[], "object"],
    dataset,
    loss_fn: Callable,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    options: TrainingOptions | None = None,
):
    """Train (or resume) ``recipe``; returns the model in eval mode and the stored recipe record.

    ``loss_fn(model, images, labels, strength, **recipe.regime_options)`` is the regime's loss on
    one batch. After each
    epoch a checkpoint (model, optimiser, epoch) is written atomically; on start, an existing
    checkpoint of the same recipe is resumed. ``options`` say how to execute it
    (:class:`TrainingOptions`; the defaults give today's CPU results bit for bit). The step loop
    never waits for the device: the loss is summed there and read once per epoch, which is
    also when a non-finite loss stops the run (before that epoch's checkpoint is written).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) training is data-parallel (PyTorch DDP, NCCL on GPUs,
    gloo on CPUs): every rank draws the same global batch of ``batch_size`` and trains on its
    1/world share, so the recipe means the same thing at any world size; rank 0 writes the files.
    """
    import torch

    from pagbench.plugin import resolve_device
    from pagbench.plugin import progress_bar
    from pagbench.plugin import check_cache_dir, check_device

    options = options or TrainingOptions()
    recipe.validate()
    if options.compile and recipe.regime == "gnorm" and recipe.strength > 0:
        raise PagbenchError("--compile excludes gnorm: compiled graphs do not support the double backward of its input-gradient penalty")
    check_device(str(device))
    check_cache_dir()  # before any training: the model store lives there
    device = resolve_device(device)
    rank, world = 0, 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device, rank, world = _init_distributed(device)
    deterministic = options.deterministic if options.deterministic is not None else device.type == "cpu"
    numerics = _checked_cpu_numerics(recipe) if device.type == "cpu" else None
    directory = recipe_dir(recipe)
    train_split = dataset.split("train")
    test_split = dataset.split("test")
    resident = None
    if options.device_data is not False:
        resident = resident_split(train_split, device)
        if resident is None and options.device_data:
            raise PagbenchError(f"--device-data: the {dataset.name!r} training split is file-backed, not held in memory; use --no-device-data")
    memory_format = torch.channels_last if options.channels_last else torch.contiguous_format

    def fresh():
        torch.manual_seed(recipe.seed)
        model = build_model().to(device, memory_format=memory_format)
        network = model
        if world > 1:
            network = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if options.compile:
            network = torch.compile(network)
        optimizer, scaler = optimizer_for(recipe, model, device)
        return model, network, optimizer, scaler, torch.Generator().manual_seed(recipe.seed)  # data order and augmentation

    model, network, optimizer, scaler, generator = fresh()
    start_epoch, history = 0, []
    checkpoint_path = directory / "checkpoint.pt"
    if checkpoint_path.exists():
        from pagbench.plugin import DamagedFile, warn_damaged

        try:
            state = load_tensors(checkpoint_path, map_location=device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None:
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"])
            history = json.loads(state["history"])
            torch.set_rng_state(state["rng"].cpu())
            generator.set_state(state["generator"].cpu())
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
            if log:
                log(f"resuming {recipe.identifier} from epoch {start_epoch}")
        except (DamagedFile, KeyError, TypeError, ValueError, RuntimeError) as error:
            # a damaged resume checkpoint costs the epochs it held, never wrong weights
            error = error if isinstance(error, DamagedFile) else DamagedFile(f"{checkpoint_path}: not a resume checkpoint ({type(error).__name__})")
            warn_damaged(error, "training from the start")
            if log:
                log(f"{error}; training {recipe.identifier} from the start")
            model, network, optimizer, scaler, generator = fresh()
            start_epoch, history = 0, []
    amp_dtype = autocast_dtype(recipe)
    count = len(train_split)
    steps_per_epoch = (count + recipe.batch_size - 1) // recipe.batch_size
    total_steps = steps_per_epoch * (recipe.epochs - start_epoch)
    started = time.perf_counter()
    description = f"training {recipe.regime} {recipe.strength:g} on {recipe.dataset}"
    with pinned_threads(device, recipe.cpu_threads), _kernel_mode(device, deterministic), progress_bar(description, total=total_steps, enabled=progress and rank == 0) as advance:
        for epoch in range(start_epoch, recipe.epochs):
            network.train()
            order = torch.randperm(count, generator=generator)
            device_order = order.to(device, non_blocking=True) if resident is not None else None
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # read once per epoch: no host sync per step
            seen = 0
            for step_in_epoch, start in enumerate(range(0, count, recipe.batch_size)):
                lr = learning_rate(recipe, epoch * steps_per_epoch + step_in_epoch, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if resident is not None:
                    images, labels = resident.batch(device_order[start : start + recipe.batch_size])
                else:
                    batch = train_split.batch(order[start : start + recipe.batch_size].tolist())
                    images, labels = _to_device(batch.images, device), _to_device(batch.labels, device)
                images = augment(images, recipe, generator)[rank::world]
                labels = labels[rank::world]
                if options.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                loss = training_step(network, optimizer, scaler, loss_fn, images, labels, recipe, device.type, amp_dtype)
                loss_sum += loss.detach().double() * labels.shape[0]
                seen += labels.shape[0]
                advance(1)
            epoch_loss = float(loss_sum) / seen
            if not math.isfinite(epoch_loss):
                raise PagbenchError(f"training diverged (mean loss {epoch_loss}) in epoch {epoch + 1}; lower the lr or the strength")
            model.eval()  # a quick check on (at most) 500 test images, shown in the progress bar
            quick = evaluate_accuracy(model, test_split, device, limit=500)
            history.append({"epoch": epoch + 1, "loss": epoch_loss, "lr": lr, "test_accuracy": quick})
            advance(0, epoch=f"{epoch + 1}/{recipe.epochs}", loss=epoch_loss, **{"test acc": quick})
            if rank == 0:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                         "history": json.dumps(history), "rng": torch.get_rng_state(), "generator": generator.get_state()}
                if scaler is not None:
                    state["scaler"] = scaler.state_dict()
                if device.type == "cuda":
                    state["cuda_rng"] = torch.cuda.get_rng_state(device)
                save_tensors(checkpoint_path, state)
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    with pinned_threads(device, recipe.cpu_threads):  # the recorded accuracy is as reproducible as the weights
        accuracy = evaluate_accuracy(model, test_split, device)
    record = {
        "recipe": recipe.as_dict(),
        "identifier": recipe.identifier,
        "test_accuracy": accuracy,
        "history": history,
        "train_seconds": time.perf_counter() - started,
        "world_size": world,
        "execution": {**options.as_dict(), "device_data": resident is not None, "deterministic": deterministic, "device": str(device),
                      "cpu_threads": recipe.cpu_threads if device.type == "cpu" else None, "cpu_numerics": numerics},
        "pagbench_version": __version__,
    }
    if rank == 0:
        save_model(directory, model, record, RECORD)
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
    record; :class:`~pagbench.files.integrity.DamagedFile` when either file is damaged."""
    directory = recipe_dir(recipe)
    model = build_model()
    load_weights(directory, model)
    return model.to(device).eval(), load_record(directory, RECORD)
