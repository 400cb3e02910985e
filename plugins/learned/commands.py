"""``pagbench fit-score`` and ``pagbench fit-manifold``: fit a denoiser or an autoencoder into
the model store."""

from __future__ import annotations

import click


def _dataset(name: str, data_root):
    from pagbench.plugin import datasets

    return datasets().get(name).factory(data_root)


def add_commands(cli: click.Group) -> None:
    @cli.command("fit-score")
    @click.option("--dataset", default="synthetic", show_default=True)
    @click.option("--steps", type=int, default=None, help="Training steps (default 1500).")
    @click.option("--batch-size", type=int, default=None, help="Default 64.")
    @click.option("--width", type=int, default=None, help="Channels of the first U-Net stage (default 32).")
    @click.option("--lr", type=float, default=None, help="Adam learning rate (default 2e-3, cosine decay).")
    @click.option("--sigma-median", type=float, default=None, help="Median training σ, pixel units (default 0.1).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--data-root", default=None, type=click.Path())
    @click.option("--no-progress", is_flag=True)
    def fit_score(dataset, steps, batch_size, width, lr, sigma_median, seed, data_root, no_progress):
        """Fit a denoiser by denoising score matching: the `denoiser` score and manifold provider."""
        from .store import DenoiserRecipe, identifier, with_overrides

        recipe = with_overrides(DenoiserRecipe(dataset=dataset, seed=seed), steps=steps, batch_size=batch_size, width=width,
                                lr=lr, sigma_median=sigma_median)
        recipe.validate()
        data = _dataset(dataset, data_root)
        from .fit import fit_denoiser

        _, record = fit_denoiser(recipe, data, progress=not no_progress)
        click.echo(f"fitted denoiser {identifier(recipe)} on {dataset} in {record['train_seconds']:.0f} s "
                   f"(final loss {record['history'][-1]['loss']:.4f})")

    @cli.command("fit-manifold")
    @click.option("--dataset", default="synthetic", show_default=True)
    @click.option("--latent-dim", type=int, required=True, help="k, the dimension of the estimated tangent space.")
    @click.option("--steps", type=int, default=None, help="Training steps (default 3000).")
    @click.option("--batch-size", type=int, default=None, help="Default 64.")
    @click.option("--width", type=int, default=None, help="Channels of the first conv stage (default 32).")
    @click.option("--lr", type=float, default=None, help="Adam learning rate (default 2e-3, cosine decay).")
    @click.option("--noise-std", type=float, default=None, help="Decoder noise std, pixel units (default 0.05).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--data-root", default=None, type=click.Path())
    @click.option("--no-progress", is_flag=True)
    def fit_manifold(dataset, latent_dim, steps, batch_size, width, lr, noise_std, seed, data_root, no_progress):
        """Fit a VAE: the `autoencoder` manifold provider (decoder Jacobian at the encoder mean)."""
        from .store import AutoencoderRecipe, identifier, with_overrides

        recipe = with_overrides(AutoencoderRecipe(dataset=dataset, latent_dim=latent_dim, seed=seed), steps=steps,
                                batch_size=batch_size, width=width, lr=lr, noise_std=noise_std)
        recipe.validate()
        data = _dataset(dataset, data_root)
        from pagbench.plugin import PagbenchError

        if latent_dim >= data.dim:
            raise PagbenchError(f"--latent-dim must be below the image dimension {data.dim}, got {latent_dim}")
        from .fit import fit_autoencoder

        _, record = fit_autoencoder(recipe, data, progress=not no_progress)
        click.echo(f"fitted autoencoder {identifier(recipe)} on {dataset} in {record['train_seconds']:.0f} s "
                   f"(test RMSE {record['test_rmse']:.4f})")
