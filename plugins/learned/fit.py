"""Fitting the denoiser (denoising score matching) and the autoencoder (VAE), with progress."""

from __future__ import annotations

import math
import time

import torch

from pagbench.plugin import __version__
from pagbench.plugin import progress_bar
from pagbench.plugin import check_cache_dir

from .networks import Autoencoder, Denoiser
from .store import AutoencoderRecipe, DenoiserRecipe, identifier, save, store_dir


def data_statistics(split, count: int = 2000) -> tuple[float, float]:
    """Mean and standard deviation of the pixels of the first ``count`` training images."""
    images = split.batch(list(range(min(count, len(split))))).images
    return float(images.mean()), float(images.std())


def _learning_rate(base: float, step: int, total: int) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _loop(model, recipe, split, step_loss, progress: bool, description: str):
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    count = len(split)
    history, running = [], None
    with progress_bar(description, total=recipe.steps, enabled=progress) as advance:
        for step in range(recipe.steps):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(recipe.lr, step, recipe.steps)
            indices = torch.randint(0, count, (recipe.batch_size,), generator=generator).tolist()
            batch = split.batch(indices)
            loss = step_loss(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if (step + 1) % max(1, recipe.steps // 20) == 0:
                history.append({"step": step + 1, "loss": running})
            advance(1, loss=running)
    return history


def fit_denoiser(recipe: DenoiserRecipe, dataset, progress: bool = True):
    """Train a class-conditional denoiser on ``dataset``'s train split; returns (model, record)."""
    recipe.validate()
    check_cache_dir()  # before fitting: the model store lives there
    torch.manual_seed(recipe.seed)
    split = dataset.split("train")
    mean, std = data_statistics(split)
    arguments = dict(channels=dataset.image_shape[0], num_classes=dataset.num_classes, width=recipe.width, data_mean=mean, sigma_data=std)
    model = Denoiser(**arguments)
    started = time.perf_counter()

    def step_loss(batch, generator):
        images, labels = batch.images, batch.labels.clone()
        drop = torch.rand(labels.shape, generator=generator) < recipe.label_dropout
        labels[drop] = dataset.num_classes
        sigma = recipe.sigma_median * torch.exp(recipe.sigma_log_std * torch.randn(images.shape[0], generator=generator))
        noisy = images + sigma.view(-1, 1, 1, 1) * torch.randn(images.shape, generator=generator)
        denoised = model(noisy, sigma, labels)
        weight = (sigma**2 + model.sigma_data**2) / (sigma * model.sigma_data) ** 2  # EDM's λ(σ)
        return (weight.view(-1, 1, 1, 1) * (denoised - images) ** 2).mean()

    model.train()
    history = _loop(model, recipe, split, step_loss, progress, f"fitting denoiser on {dataset.name}")
    model.eval()
    record = {"kind": "denoiser", "recipe": _as_dict(recipe), "identifier": identifier(recipe), "network": arguments,
              "image_shape": list(dataset.image_shape),
              "dataset_fingerprint": dataset.fingerprint, "history": history,
              "train_seconds": time.perf_counter() - started, "pagbench_version": __version__}
    save(store_dir() / identifier(recipe), model, record)
    return model, record


def fit_autoencoder(recipe: AutoencoderRecipe, dataset, progress: bool = True):
    """Train a VAE on ``dataset``'s train split; returns (model, record)."""
    recipe.validate()
    check_cache_dir()  # before fitting: the model store lives there
    torch.manual_seed(recipe.seed)
    split = dataset.split("train")
    mean, _ = data_statistics(split)
    arguments = dict(image_shape=list(dataset.image_shape), latent_dim=recipe.latent_dim, width=recipe.width, data_mean=mean)
    model = Autoencoder(**arguments)
    started = time.perf_counter()

    def step_loss(batch, generator):
        images = batch.images
        latent_mean, log_variance = model.encode(images)
        noise = torch.randn(latent_mean.shape, generator=generator)
        reconstruction = model.decode(latent_mean + (0.5 * log_variance).exp() * noise)
        fit = ((reconstruction - images) ** 2).flatten(1).sum(1) / (2 * recipe.noise_std**2)
        kl = 0.5 * (latent_mean**2 + log_variance.exp() - 1 - log_variance).sum(1)
        return (fit + kl).mean() / images[0].numel()

    model.train()
    history = _loop(model, recipe, split, step_loss, progress, f"fitting autoencoder (k={recipe.latent_dim}) on {dataset.name}")
    model.eval()
    test = dataset.split("test")
    with torch.no_grad():
        images = test.batch(list(range(min(500, len(test))))).images
        error = float(((model(images) - images) ** 2).mean().sqrt())
    record = {"kind": "autoencoder", "recipe": _as_dict(recipe), "identifier": identifier(recipe), "network": arguments,
              "dataset_fingerprint": dataset.fingerprint, "history": history, "test_rmse": error,
              "train_seconds": time.perf_counter() - started, "pagbench_version": __version__}
    save(store_dir() / identifier(recipe), model, record)
    return model, record


def _as_dict(recipe) -> dict:
    from dataclasses import asdict

    return asdict(recipe)
