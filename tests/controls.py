"""Control classifiers built on the exact Bayes model of the embedded dataset (test helpers)."""

import torch

from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench_plugins.synthetic.providers import BayesClassifier


class OffManifoldControl(torch.nn.Module):
    """Bayes logits + α · W P_⊥(x − c): an off-manifold linear term (a 'non-robust feature')."""

    def __init__(self, distribution, strength=5.0, seed=0):
        super().__init__()
        self.bayes = BayesClassifier(distribution)
        generator = torch.Generator().manual_seed(seed)
        weights = torch.randn(distribution.config.num_classes, distribution.config.dim, generator=generator, dtype=torch.float64)
        weights = weights - (weights @ distribution.basis) @ distribution.basis.T  # rows ⟂ manifold
        self.register_buffer("weights", strength * weights / weights.norm(dim=1, keepdim=True))

    def forward(self, images):
        flat = images.reshape(images.shape[0], -1).double()
        return (self.bayes(images).double() + (flat - 0.5) @ self.weights.T).float()


class OnManifoldControl(torch.nn.Module):
    """Bayes logits + α · V Uᵀ(x − c): a perturbation along the manifold only."""

    def __init__(self, distribution, strength=2.0, seed=1):
        super().__init__()
        self.bayes = BayesClassifier(distribution)
        generator = torch.Generator().manual_seed(seed)
        weights = torch.randn(distribution.config.num_classes, distribution.manifold_dim, generator=generator, dtype=torch.float64)
        self.register_buffer("weights", strength * (weights / weights.norm(dim=1, keepdim=True)) @ distribution.basis.T)

    def forward(self, images):
        flat = images.reshape(images.shape[0], -1).double()
        return (self.bayes(images).double() + (flat - 0.5) @ self.weights.T).float()


class ManifoldOnlyNetwork(torch.nn.Module):
    """A random MLP of the manifold coordinates Uᵀ(x − c): blind to off-manifold directions."""

    def __init__(self, distribution, seed=2):
        super().__init__()
        torch.manual_seed(seed)
        self.register_buffer("basis", distribution.basis.float())
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(distribution.manifold_dim, 64), torch.nn.Tanh(), torch.nn.Linear(64, distribution.config.num_classes)
        )

    def forward(self, images):
        return self.mlp((images.reshape(images.shape[0], -1) - 0.5) @ self.basis)


def _card(description):
    return ModelCard(architecture="control", dataset="synthetic", regime="control", description=description)


class ControlPlugin:
    """A throwaway plugin registering the control models."""

    @hookimpl
    def register_models(self, register):
        register(ModelEntry("control-off", lambda name, dataset, device: OffManifoldControl(dataset.distribution), _card("off")))
        register(ModelEntry("control-on", lambda name, dataset, device: OnManifoldControl(dataset.distribution), _card("on")))
        register(ModelEntry("manifold-only", lambda name, dataset, device: ManifoldOnlyNetwork(dataset.distribution), _card("blind")))
