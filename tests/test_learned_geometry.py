"""Fitted denoiser and autoencoder: store, commands, providers, and the geometry algorithms
(forward-mode decoder Jacobians, randomised subspace iteration) against exact answers."""

import json

import pytest
import torch
from click.testing import CliRunner

from pagbench.errors import MetricUnavailable
from pagbench.evaluation.manifold import orthonormalize


def principal_cos2(first, second):
    """Mean cos² of the principal angles between row spaces (B, k, D) and (B, k', D)."""
    overlap = first.double() @ second.double().transpose(1, 2)
    return (overlap**2).sum((1, 2)) / min(first.shape[1], second.shape[1])


def cli(*args):
    from pagbench.cli import build_cli

    return CliRunner().invoke(build_cli(), list(args))


def test_forward_mode_decoder_jacobian_equals_the_naive_one():
    from pagbench_plugins.learned.geometry import decoder_jacobian, decoder_tangent_basis, naive_decoder_jacobian
    from pagbench_plugins.learned.networks import Autoencoder

    torch.manual_seed(0)
    model = Autoencoder((1, 8, 8), latent_dim=5, width=4).eval()
    latents = torch.randn(3, 5)
    fast, slow = decoder_jacobian(model.decode, latents), naive_decoder_jacobian(model.decode, latents)
    assert fast.shape == (3, 64, 5) and torch.allclose(fast, slow, atol=1e-5)
    basis = decoder_tangent_basis(model.decode, latents)
    assert torch.allclose(basis @ basis.transpose(1, 2), torch.eye(5).expand(3, 5, 5), atol=1e-5)
    assert principal_cos2(basis, orthonormalize(slow.transpose(1, 2))).min() > 1 - 1e-5


def test_subspace_iteration_finds_the_top_eigenvectors_of_a_symmetrised_jacobian():
    from pagbench_plugins.learned.geometry import denoiser_tangent_basis

    generator = torch.Generator().manual_seed(0)
    dim, k = 48, 5
    tangent = orthonormalize(torch.randn(1, k, dim, generator=generator))[0]  # (k, D)
    skew = 0.05 * torch.randn(dim, dim, generator=generator)
    jacobian = 0.95 * tangent.T @ tangent + 0.05 * torch.eye(dim) + (skew - skew.T)  # a "denoiser" at small σ

    def denoise(x):
        return (x.reshape(x.shape[0], -1) @ jacobian.T).reshape(x.shape) + torch.tanh(x).mean() * 0

    images = torch.rand(2, 3, 4, 4)
    basis = denoiser_tangent_basis(denoise, images, k, iterations=4)
    assert basis.shape == (2, k, dim)
    assert principal_cos2(basis, tangent.expand(2, k, dim)).min() > 0.999


def test_missing_fits_are_unavailable_with_the_command_to_run(synthetic):
    from pagbench.extensions.registry import manifold_providers, score_providers

    with pytest.raises(MetricUnavailable, match="pagbench fit-score --dataset synthetic"):
        score_providers().get("denoiser").factory(synthetic, {})
    with pytest.raises(MetricUnavailable, match="pagbench fit-manifold --dataset synthetic --latent-dim"):
        manifold_providers().get("autoencoder").factory(synthetic, {})
    result = cli("evaluate", "--model", "bayes", "--num-images", "10", "--no-progress", "--score-provider", "denoiser")
    assert result.exit_code == 2 and "fit-score" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_fit_commands_store_models_that_the_providers_use(tmp_path, isolated_cache):
    result = cli("fit-score", "--dataset", "synthetic", "--steps", "40", "--width", "8", "--no-progress")
    assert result.exit_code == 0, result.output
    result = cli("fit-manifold", "--dataset", "synthetic", "--latent-dim", "6", "--steps", "40", "--width", "8", "--no-progress")
    assert result.exit_code == 0, result.output
    stored = sorted(p.name for p in (isolated_cache / "models").iterdir())
    assert [name.split("-")[0] for name in stored] == ["autoencoder", "denoiser"]
    for name in stored:
        record = json.loads((isolated_cache / "models" / name / "record.json").read_text())
        state = torch.load(isolated_cache / "models" / name / "weights.pt", weights_only=True)
        assert record["kind"] in name and state

    out = tmp_path / "r.json"
    result = cli("evaluate", "--model", "bayes", "--num-images", "12", "--batch-size", "6", "--no-progress", "--score-provider", "denoiser",
                 "--manifold-provider", "autoencoder", "--metric", "score_cosine", "--metric", "on_manifold_fraction", "--output", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["config"]["sigma"] == 0.05
    assert data["metrics"]["on_manifold_fraction_random"]["value"] == pytest.approx(6 / 768)
    result = cli("evaluate", "--model", "bayes", "--num-images", "12", "--no-progress", "--manifold-provider", "denoiser",
                 "--provider-option", "k=4", "--metric", "on_manifold_fraction")
    assert result.exit_code == 0, result.output
    for sigma in ("0", "-0.1"):
        result = cli("evaluate", "--model", "bayes", "--num-images", "10", "--no-progress", "--score-provider", "denoiser", "--sigma", sigma)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    result = cli("fit-manifold", "--dataset", "synthetic", "--latent-dim", "0")
    assert result.exit_code == 2 and "latent-dim must be positive" in result.output


@pytest.mark.slow
def test_a_briefly_trained_denoiser_already_points_along_the_exact_score(synthetic):
    """Loose version of the benchmark's validation (cosine ≥ 0.9 after a few CPU minutes)."""
    from pagbench_plugins.metrics.score_cosine import cosine
    from pagbench_plugins.learned.fit import fit_denoiser
    from pagbench_plugins.learned.store import DenoiserRecipe

    model, _ = fit_denoiser(DenoiserRecipe(dataset="synthetic", steps=60, width=16, batch_size=32), synthetic, progress=False)
    batch = synthetic.split("test").batch(list(range(100)))
    with torch.no_grad():
        learned = model.score(batch.images, 0.05).double()
    exact = synthetic.distribution.scores(batch.images, batch.labels, 0.05, "unconditional")
    assert cosine(learned, exact).mean() > 0.45  # chance ≈ 0; 0.59 measured


@pytest.mark.slow
def test_a_briefly_trained_autoencoder_tangent_space_beats_chance(synthetic):
    from pagbench.extensions.registry import manifold_providers
    from pagbench_plugins.learned.fit import fit_autoencoder
    from pagbench_plugins.learned.store import AutoencoderRecipe

    k = synthetic.distribution.manifold_dim
    fit_autoencoder(AutoencoderRecipe(dataset="synthetic", latent_dim=k, steps=80, width=8, batch_size=32), synthetic, progress=False)
    provider = manifold_providers().get("autoencoder").factory(synthetic, {})
    batch = synthetic.split("test").batch(list(range(8)))
    basis = provider.tangent_basis(batch.images, batch.labels)
    assert basis.shape == (8, k, 768)
    assert torch.allclose(basis @ basis.transpose(1, 2), torch.eye(k, dtype=basis.dtype).expand(8, k, k), atol=1e-4)
    exact = synthetic.distribution.tangent_basis(8)
    assert principal_cos2(basis, exact).mean() > 3 * k / 768  # chance is k/D


def test_upsample2x_is_nearest_upsampling_forwards_and_backwards():
    from pagbench_plugins.learned.networks import Upsample2x

    x = torch.randn(3, 4, 5, 6, requires_grad=True)
    reference = torch.nn.Upsample(scale_factor=2, mode="nearest")
    assert torch.equal(Upsample2x()(x), reference(x))
    weights = torch.randn(3, 4, 10, 12)
    (ours,) = torch.autograd.grad((Upsample2x()(x) * weights).sum(), x)
    (theirs,) = torch.autograd.grad((reference(x) * weights).sum(), x)
    assert torch.allclose(ours, theirs, atol=1e-6)
