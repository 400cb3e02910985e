"""The embedded distribution's closed forms against first principles."""

import math

import pytest
import torch

from pagbench_plugins.synthetic.config import SyntheticConfig
from pagbench_plugins.synthetic.generator import SyntheticDistribution, dct_basis


@pytest.fixture(scope="module")
def distribution():
    return SyntheticDistribution(SyntheticConfig())


def test_dct_basis_is_orthonormal_and_smooth():
    basis = dct_basis(3, 16, 4)
    assert basis.shape == (768, 45)
    assert torch.allclose(basis.T @ basis, torch.eye(45, dtype=basis.dtype), atol=1e-12)
    # every pattern lives in one channel
    per_channel = basis.reshape(3, 256, 45).abs().sum(1) > 0
    assert (per_channel.sum(0) == 1).all()


@pytest.mark.parametrize("sigma", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["conditional", "unconditional"])
def test_scores_match_finite_differences_of_the_log_density(distribution, sigma, kind):
    images, labels = distribution.sample(6, seed=11)
    images = images.double()
    scores = distribution.scores(images, labels, sigma, kind).reshape(6, -1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        direction = torch.randn(6, 768, generator=generator, dtype=torch.float64)
        direction /= direction.norm(dim=1, keepdim=True)
        step = 1e-5 * direction.reshape(images.shape)

        def log_density(points):
            if kind == "conditional":
                return distribution.class_log_likelihoods(points, sigma)[torch.arange(6), labels]
            return distribution.log_density(points, sigma)

        finite_difference = (log_density(images + step) - log_density(images - step)) / 2e-5
        assert torch.allclose(finite_difference, (scores * direction).sum(1), rtol=1e-5, atol=1e-4)


def test_log_density_is_a_normalised_gaussian_mixture(distribution):
    """At a point, the closed form equals a direct D×D Gaussian evaluation."""
    images, labels = distribution.sample(2, seed=3)
    flat = images.reshape(2, -1).double()
    label = int(labels[0])
    mean = distribution.center + distribution.basis @ distribution.class_means[label]
    covariance = (
        distribution.basis @ distribution.class_covariances[label] @ distribution.basis.T
        + distribution.config.noise_std**2 * torch.eye(768, dtype=torch.float64)
    )
    direct = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance).log_prob(flat[0])
    assert math.isclose(distribution.class_log_likelihoods(flat[:1])[0, label].item(), direct.item(), rel_tol=1e-9)


def test_posterior_score_is_conditional_minus_unconditional(distribution):
    images, labels = distribution.sample(8, seed=5)
    posterior = distribution.scores(images, labels, 0.05, "posterior")
    difference = distribution.scores(images, labels, 0.05, "conditional") - distribution.scores(images, labels, 0.05, "unconditional")
    assert torch.allclose(posterior, difference, atol=1e-8 * difference.abs().max().item())


def test_posterior_score_lies_on_the_manifold(distribution):
    images, labels = distribution.sample(16, seed=6)
    posterior = distribution.scores(images, labels, 0.0, "posterior").reshape(16, -1)
    residual = posterior - (posterior @ distribution.basis) @ distribution.basis.T
    assert (residual.norm(dim=1) <= 1e-10 * posterior.norm(dim=1)).all()


def test_samples_follow_the_declared_class_statistics(distribution):
    images, labels = distribution.sample(4000, seed=9)
    coordinates = (images.reshape(4000, -1).double() - distribution.center) @ distribution.basis
    chosen = coordinates[labels == 0]
    assert torch.allclose(chosen.mean(0), distribution.class_means[0], atol=4 * 0.6 / math.sqrt(len(chosen)) + 0.02)
    residual = images.reshape(4000, -1).double() - distribution.center - coordinates @ distribution.basis.T
    # the off-manifold residual keeps (D − K)/D of the isotropic noise's variance
    expected = distribution.config.noise_std * math.sqrt((768 - 45) / 768)
    assert residual.std().item() == pytest.approx(expected, rel=0.01)


def test_bayes_accuracy_is_well_below_one(distribution):
    images, labels = distribution.sample(2000, seed=2)
    accuracy = distribution.bayes_accuracy(images, labels)
    assert 0.75 < accuracy < 0.95
