"""Helpers for the robustness-library tests: the library itself (when it installs), run on the
CPU, and checkpoints in its exact on-disk layout.

The layout, as ``robustness.train.train_model`` saves it (``ch.save(sd_info, path,
pickle_module=dill)`` with the model wrapped in DataParallel)::

    {'model': AttackerModel-in-DataParallel state dict
         module.normalizer.new_mean / new_std            (3, 1, 1)
         module.model.*                                  the classifier
         module.attacker.normalize.new_mean / new_std   (the attacker names it normalize)
         module.attacker.model.*                         the same classifier again
     'optimizer': SGD state dict, 'schedule': lr-scheduler state dict or None,
     'epoch': int, 'amp': None, 'nat_prec1' | 'adv_prec1': tensor}
"""

from __future__ import annotations

import contextlib
import pickle

import numpy as np
import pytest
import torch

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def library():
    """The robustness package with the submodules the tests use, or skip."""
    pytest.importorskip("robustness")
    from pagbench_plugins.robustness_models.architectures import import_library

    module, notes = import_library()
    if module is None:
        pytest.skip(f"robustness is installed but does not import: {notes}")
    try:
        from robustness import attacker, datasets, defaults, model_utils, train  # noqa: F401
    except Exception as error:  # e.g. cox / tensorboardX missing
        pytest.skip(f"robustness's training modules do not import: {type(error).__name__}: {error}")
    return module


@contextlib.contextmanager
def no_cuda():
    """The library calls ``.cuda()`` unconditionally (make_and_restore_model, train_model): on a
    CPU-only machine, make those calls keep modules and tensors where they are."""
    module_cuda, tensor_cuda = torch.nn.Module.cuda, torch.Tensor.cuda
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.nn.Module.cuda, torch.Tensor.cuda = module_cuda, tensor_cuda


def library_dataset(name: str):
    from robustness import datasets

    return {"cifar": datasets.CIFAR, "imagenet": datasets.ImageNet}[name]("/tmp")


def make_model(arch: str, dataset: str, seed: int = 0, resume_path=None):
    """``make_and_restore_model(arch=..., dataset=...)`` exactly as a user calls it (eval mode)."""
    from robustness import model_utils

    torch.manual_seed(seed)
    with no_cuda():
        model, _ = model_utils.make_and_restore_model(arch=arch, dataset=library_dataset(dataset), resume_path=resume_path)
    return model.eval()


def perturb(network: torch.nn.Module, seed: int = 1) -> None:
    """Non-default weights and BatchNorm statistics, in place (a fresh init hides mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.mul_(torch.exp(0.2 * noise))
            else:
                tensor.add_(0.05 * noise)


def train_one_epoch(model, dataset: str, out_dir, images, labels, adversarial: bool = True) -> str:
    """Run ``robustness.train.train_model`` for one epoch (l2 PGD, one step) on ``images`` and
    return the path of the ``checkpoint.pt.latest`` it saved."""
    from cox.utils import Parameters
    from robustness import datasets, defaults, train

    half = len(images) // 2
    loader = [(images[:half], labels[:half]), (images[half:], labels[half:])]
    args = Parameters({
        "out_dir": str(out_dir), "adv_train": int(adversarial), "constraint": "2", "eps": 0.5, "attack_lr": 0.25,
        "attack_steps": 1, "epochs": 1, "lr": 0.01, "step_lr": 50, "arch": "resnet18", "dataset": dataset,
    })
    ds_class = {"cifar": datasets.CIFAR, "imagenet": datasets.ImageNet}[dataset]
    args = defaults.check_and_fill_args(args, defaults.TRAINING_ARGS, ds_class)
    args = defaults.check_and_fill_args(args, defaults.PGD_ARGS, ds_class)
    with no_cuda():
        train.train_model(args, model, (loader, loader), store=None)
    model.eval()
    return str(out_dir / "checkpoint.pt.latest")


def save_like_training_loop(model, path, epoch: int = 3, extra: dict | None = None, pickle_module=None) -> None:
    """What ``train_model`` saves, without training: the DataParallel state dict of the
    AttackerModel, an SGD state with momentum buffers, a StepLR state, epoch, amp, prec1."""
    parallel = torch.nn.DataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for parameter in model.parameters():
        parameter.grad = None
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    info = {"model": parallel.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "epoch": epoch, "amp": None, "adv_prec1": torch.tensor(12.5)}
    info.update(extra or {})
    if pickle_module is None:
        try:
            import dill as pickle_module
        except ImportError:
            pickle_module = pickle
    torch.save(info, path, pickle_module=pickle_module)


def layout_state(network: torch.nn.Module, mean, std, prefix: str = "module.") -> dict:
    """An AttackerModel state dict built from a bare network, key for key as the library's (its
    normalizer, the model, the attacker's normalizer, the attacker's copy of the model)."""
    mean = torch.tensor(mean, dtype=torch.float32)[..., None, None]
    std = torch.tensor(std, dtype=torch.float32)[..., None, None]
    weights = network.state_dict()
    state = {f"{prefix}normalizer.new_mean": mean, f"{prefix}normalizer.new_std": std}
    state.update({f"{prefix}model.{key}": value for key, value in weights.items()})
    state.update({f"{prefix}attacker.normalize.new_mean": mean, f"{prefix}attacker.normalize.new_std": std})
    state.update({f"{prefix}attacker.model.{key}": value for key, value in weights.items()})
    return state


def probe_images(shape, count: int = 4, seed: int = 0) -> torch.Tensor:
    """[0,1] images with some pixels exactly 0 and exactly 1 (where the library's clamp zeroes
    the gradient)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((count, *shape), generator=generator)
    images[:, :, :3] = 0.0
    images[:, :, -3:] = 1.0
    return images


def outside(images: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Perturbed images, partly outside [0,1] (what manifold_robustness feeds a model)."""
    generator = torch.Generator().manual_seed(seed)
    return images + 0.1 * torch.randn(images.shape, generator=generator)


def logits_and_gradient(forward, images: torch.Tensor):
    """Logits and the input gradient of a fixed random combination of all logits."""
    images = images.clone().requires_grad_(True)
    logits = forward(images)
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(7))
    (gradient,) = torch.autograd.grad((logits * weights).sum(), images)
    return logits.detach(), gradient


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual − expected| / max |expected|."""
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def write_cifar(directory, count: int = 4) -> None:
    """Fake CIFAR-10 python batches (the genuine pickle format) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, count).tolist(),
                 b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * count}
        with open(directory / name, "wb") as stream:
            pickle.dump(entry, stream, protocol=2)
