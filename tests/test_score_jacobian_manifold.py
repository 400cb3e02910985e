"""Manifold provider ``score-jacobian`` (tangent spaces from any differentiable score provider's
denoiser Jacobian) against the exact tangent space of the embedded data, and the per-dataset PGD
schedules of the zoo recipes against the reference code."""

import pytest
import torch

from pagbench import ScoreProviderEntry, hookimpl
from pagbench.errors import PagbenchError


def principal_cos2(exact, estimate):
    """Per image ||P_exact Q||_F² / k for orthonormal rows Q (B, k, D): the mean cos² of the
    principal angles between span(Q) and the exact tangent space."""
    overlap = exact.double() @ estimate.double().transpose(1, 2)
    return (overlap**2).sum((1, 2)) / estimate.shape[1]


def provider(dataset, **options):
    from pagbench.extensions.registry import manifold_providers

    return manifold_providers().get("score-jacobian").factory(dataset, {key: str(value) for key, value in options.items()})


def exact_basis(dataset, images):
    from pagbench.extensions.registry import manifold_providers

    return manifold_providers().get("analytic").factory(dataset, {}).tangent_basis(images, None)


@pytest.fixture(scope="module")
def batch(synthetic):
    split = synthetic.split("test")
    return split.images[:12], split.labels[:12]


@pytest.mark.parametrize("options", [{}, {"k": 45}, {"k": 45, "conditional": 1}, {"k": 20, "sigma": 0.05, "iterations": 2}])
def test_tangent_space_of_the_exact_score_matches_the_exact_one(synthetic, batch, options):
    images, labels = batch
    basis = provider(synthetic, **options).tangent_basis(images, labels)
    k = int(options.get("k", 32))
    assert basis.shape == (len(images), k, synthetic.dim) and basis.dtype == torch.float64
    assert torch.allclose(basis @ basis.transpose(1, 2), torch.eye(k, dtype=torch.float64).expand(len(images), k, k), atol=1e-8)
    cos2 = principal_cos2(exact_basis(synthetic, images), basis)
    assert cos2.mean() >= 0.9 and cos2.min() > 0.99  # measured: 1.0000, and 0.994 at σ = 0.05 with 2 iterations


def test_basis_does_not_depend_on_the_batch(synthetic, batch):
    images, labels = batch
    whole = provider(synthetic, k=20).tangent_basis(images, labels)
    small_passes = provider(synthetic, k=20, images_per_pass=5).tangent_basis(images, labels)
    alone = torch.cat([provider(synthetic, k=20).tangent_basis(images[i : i + 3], labels[i : i + 3]) for i in range(0, 12, 3)])

    def projector(basis):
        return basis.transpose(1, 2) @ basis

    # k = 20 picks a subspace of the degenerate 45-dimensional top cluster: the per-image random
    # start decides which, so only per-image seeding makes these agree
    for other in (small_passes, alone):
        assert torch.allclose(projector(whole), projector(other), atol=1e-9)
    assert not torch.allclose(projector(whole[:1]), projector(whole[1:2]), atol=1e-3)


def test_fingerprint_names_the_score_provider_and_settings(synthetic):
    first, second = provider(synthetic), provider(synthetic, conditional=1, sigma=0.05)
    assert first.fingerprint.startswith("score-jacobian:analytic-scores:") and ":unconditional:s0.1:k32:i4:o10" in first.fingerprint
    assert ":conditional:s0.05:" in second.fingerprint


@pytest.mark.parametrize("options, message", [
    ({"k": "x"}, "option k must be an integer"),
    ({"k": 0}, "k >= 1"),
    ({"k": 768}, "k must be below the image dimension 768"),
    ({"sigma": 0}, "sigma must be a finite number > 0"),
    ({"sigma": "nan"}, "sigma must be a finite number > 0"),
    ({"iterations": 0}, "iterations >= 1"),
    ({"oversampling": -1}, "oversampling >= 0"),
    ({"conditional": "maybe"}, "conditional must be 0/1"),
    ({"score_provider": "analytc"}, "did you mean analytic"),
])
def test_bad_options_are_one_line_errors(synthetic, options, message):
    with pytest.raises(PagbenchError) as error:
        provider(synthetic, **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_option_keys_are_refused_before_compute():
    import pagbench

    with pytest.raises(PagbenchError, match="unknown provider option.*nonsense") as error:
        pagbench.evaluate("bayes", manifold_provider="score-jacobian", num_images=4, metrics=("on_manifold_fraction",),
                          provider_options={"nonsense": "1"})
    assert "\n" not in str(error.value)


class NoGradScores:
    """A throwaway score provider whose scores are computed without autograd."""

    @hookimpl
    def register_score_providers(self, register):
        from pagbench.evaluation.scores import ScoreProvider

        class Detached(ScoreProvider):
            name = "detached"

            def scores(self, images, labels, sigma, kind):
                with torch.no_grad():
                    return -(images.double() - 0.5)

        register(ScoreProviderEntry("detached", lambda dataset, options: Detached(), "test only", options=()))


def test_a_provider_without_differentiable_scores_is_refused(synthetic, register_plugin):
    register_plugin(NoGradScores(), name="no-grad-scores")
    with pytest.raises(PagbenchError) as error:
        provider(synthetic, score_provider="detached")
    assert "needs a differentiable score" in str(error.value) and "'detached'" in str(error.value)
    assert "\n" not in str(error.value)


def test_network_score_providers_are_used_through_their_differentiable_network_score(synthetic, register_plugin):
    """NetworkScoreProvider.scores runs under no_grad; its network_score is differentiable. A tiny
    linear "denoiser" that projects onto the exact tangent space gives back exactly that space."""
    from pagbench.evaluation.scores import NetworkScoreProvider

    exact = exact_basis(synthetic, torch.zeros(1, 1))[0].float()  # (45, D)

    class Projecting(NetworkScoreProvider):
        name = "projecting"
        image_shape = tuple(synthetic.image_shape)

        def network_score(self, images, labels, sigma):
            flat = images.reshape(images.shape[0], -1) - 0.5
            denoised = (flat @ exact.T @ exact).reshape(images.shape) + 0.5
            return (denoised - images) / sigma**2

    class Plugin:
        @hookimpl
        def register_score_providers(self, register):
            register(ScoreProviderEntry("projecting", lambda dataset, options: Projecting(), "test only", options=()))

    register_plugin(Plugin(), name="projecting-scores")
    images, labels = synthetic.split("test").images[:3], synthetic.split("test").labels[:3]
    basis = provider(synthetic, score_provider="projecting", k=45).tangent_basis(images, labels)
    assert principal_cos2(exact.double().expand(3, 45, -1), basis).min() > 0.999


def test_evaluate_on_manifold_fraction_matches_the_exact_tangent_space():
    import pagbench

    common = dict(num_images=20, metrics=("on_manifold_fraction",))
    learned = pagbench.evaluate("bayes", manifold_provider="score-jacobian", provider_options={"k": "45"}, **common)
    exact = pagbench.evaluate("bayes", manifold_provider="analytic", **common)
    value, reference = (result["metrics"]["on_manifold_fraction"]["value"] for result in (learned, exact))
    assert reference == pytest.approx(1.0, abs=1e-6)  # the Bayes gradient lies on the manifold
    assert value == pytest.approx(reference, abs=1e-4)  # measured difference below 1e-6
    # with the default k = 32 < 45 the basis is a part of the tangent space: a smaller fraction
    partial = pagbench.evaluate("bayes", manifold_provider="score-jacobian", **common)
    assert 0.5 < partial["metrics"]["on_manifold_fraction"]["value"] < reference


# ------------------------------------------------------------------------------ PGD schedules
@pytest.mark.parametrize("dataset, steps, factor", [
    ("cifar10", 10, 2.0),  # the reference code's CIFAR-10 attack: 10 steps of 2ε/10
    ("mnist-distractor", 10, 2.5),  # the reference MNIST notebook: 10 steps of 2.5ε/10
    ("mnist-distractor-varied", 10, 2.5),
    ("imagenet64", 3, 2.0),  # the paper's ImageNet-64 runs: 3 steps of 2ε/3
    ("synthetic", 3, 2.0),  # the ImageNet-64 setting, so it trains on a CPU
    ("digits-distractor", 3, 2.0),
    ("digits-distractor-varied", 3, 2.0),
])
def test_pgd_schedule_per_dataset(dataset, steps, factor):
    from pagbench_plugins.zoo.recipes import recipe_for

    recipe = recipe_for(dataset, "pgd", 1.0)
    assert recipe.regime_options == {"steps": steps, "step_factor": factor}


def test_pgd_step_size_is_the_factor_times_epsilon_over_steps():
    from pagbench_plugins.regimes import pgd_perturb

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images, labels = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    moved = pgd_perturb(model, images, labels, epsilon=10.0, steps=1, step_factor=0.5)
    assert (moved - images).flatten(1).norm(dim=1) == pytest.approx([5.0] * 4, rel=1e-5)  # one step of 0.5·10/1


@pytest.mark.slow  # trains or fits a model
def test_with_the_fitted_denoiser_it_equals_the_denoiser_manifold(synthetic):
    """Through the registry and ``network_score``, the fitted denoiser's x + σ²·s is its D(x, σ):
    the same basis as the ``denoiser`` manifold provider (same per-image random starts). A tiny,
    inaccurate fit suffices for that; the cos² of a real fit is in the README."""
    from click.testing import CliRunner

    from pagbench.cli import build_cli
    from pagbench.extensions.registry import manifold_providers

    result = CliRunner().invoke(build_cli(), ["fit-score", "--dataset", "synthetic", "--steps", "20", "--width", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    images, labels = synthetic.split("test").images[:3], synthetic.split("test").labels[:3]
    ours = provider(synthetic, score_provider="denoiser", k=8, iterations=2).tangent_basis(images, labels)
    theirs = manifold_providers().get("denoiser").factory(synthetic, {"k": "8", "iterations": "2"}).tangent_basis(images, labels)
    assert torch.allclose(ours.transpose(1, 2) @ ours, theirs.transpose(1, 2) @ theirs, atol=1e-4)


def test_edm_and_diffusers_networks_run_under_forward_and_reverse_mode(tmp_path, synthetic):
    """The public-model providers through the same path: an EDM pickle (code loaded from the
    file) and a diffusers UNet with an attention block (fused attention kernels have no forward-AD
    formula; the plain-math kernel is used). Unavailable score kinds are one-line refusals."""
    from .edm_pickle import write_edm_pickle

    images, labels = synthetic.split("test").images[:2], synthetic.split("test").labels[:2]
    write_edm_pickle(tmp_path / "edm.pkl", label_dim=10)
    edm = dict(score_provider="edm", path=str(tmp_path / "edm.pkl"), trust_pickle=1, k=6, iterations=1)
    basis = provider(synthetic, conditional=1, **edm).tangent_basis(images, labels)
    assert basis.shape == (2, 6, 768) and torch.allclose(basis @ basis.transpose(1, 2), torch.eye(6, dtype=torch.float64).expand(2, 6, 6), atol=1e-5)
    with pytest.raises(PagbenchError, match="gives no unconditional score.*conditional=1") as error:
        provider(synthetic, **edm)
    assert "\n" not in str(error.value)

    diffusers = pytest.importorskip("diffusers")
    from .test_diffusion_scores import tiny_unet

    diffusers.DDPMPipeline(unet=tiny_unet(diffusers, 0), scheduler=diffusers.DDPMScheduler(num_train_timesteps=1000)).save_pretrained(tmp_path / "pipe")
    jacobian = provider(synthetic, score_provider="diffusers", path=str(tmp_path / "pipe"), k=6, iterations=1)
    assert jacobian.sigma == pytest.approx(0.1, abs=0.01) and jacobian.sigma != 0.1  # the closest timestep's σ_t/2
    basis = jacobian.tangent_basis(images, labels)
    assert torch.isfinite(basis).all() and torch.allclose(basis @ basis.transpose(1, 2), torch.eye(6, dtype=torch.float64).expand(2, 6, 6), atol=1e-5)
