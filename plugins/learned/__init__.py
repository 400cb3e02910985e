"""Built-in plugin: estimators pagbench fits itself, for data no public model covers.

* score provider ``denoiser``: a small class-conditional denoiser trained by denoising score
  matching (``pagbench fit-score --dataset D``); score = (D(x, σ) − x)/σ² in [0,1] units.
* manifold provider ``autoencoder``: a VAE (``pagbench fit-manifold --dataset D --latent-dim k``);
  tangent basis = decoder Jacobian at the encoder mean (forward-mode AD), orthonormalised.
* manifold provider ``denoiser``: top-k eigenvectors of the symmetrised denoiser Jacobian at
  small σ (randomised subspace iteration); ``score-jacobian`` the same for any score provider.

Fitted models live in the model store (``<cache dir>/models``); heavy imports are lazy.
"""

from pagbench.plugin import ManifoldProviderEntry, ScoreProviderEntry, hookimpl


def _denoiser_scores(dataset, options):
    from .providers import DenoiserScores

    return DenoiserScores(dataset, options)


def _autoencoder_manifold(dataset, options):
    from .providers import AutoencoderManifold

    return AutoencoderManifold(dataset, options)


def _denoiser_manifold(dataset, options):
    from .providers import DenoiserManifold

    return DenoiserManifold(dataset, options)


@hookimpl
def register_score_providers(register):
    register(ScoreProviderEntry(
        "denoiser", _denoiser_scores,
        "(D(x,σ)−x)/σ² of a denoiser fitted by pagbench fit-score (default σ 0.05; option denoiser=DIR).",
        options=("denoiser", "device", "chunk")))


@hookimpl
def register_manifold_providers(register):
    register(ManifoldProviderEntry(
        "autoencoder", _autoencoder_manifold,
        "Decoder Jacobian at the encoder mean of a VAE fitted by pagbench fit-manifold (options latent_dim, autoencoder=DIR).",
        options=("autoencoder", "latent_dim", "device")))
    register(ManifoldProviderEntry(
        "denoiser", _denoiser_manifold,
        "Top-k eigenvectors of the symmetrised fitted-denoiser Jacobian (options k=32, manifold_sigma=0.1).",
        options=("denoiser", "k", "manifold_sigma", "iterations", "oversampling", "device")))
    from .score_jacobian import ENTRY as score_jacobian  # the Jacobian of any score provider's denoiser (light import)

    register(score_jacobian)


@hookimpl
def register_commands(cli):
    from .commands import add_commands

    add_commands(cli)
