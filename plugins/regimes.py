"""Built-in plugin: the paper's training regimes as trainers (README, "Reproducing the paper's regimes").

Each loss takes ``(model, images, labels, strength)`` with images (B, C, H, W) in [0,1] and
returns the scalar loss of one batch. Strength 0 is plain cross-entropy in every regime.
"""

from pagbench.plugin import TrainerEntry, hookimpl


def standard_loss(model, images, labels, strength, **unused):
    import torch.nn.functional as functional

    return functional.cross_entropy(model(images), labels)


def noise_loss(model, images, labels, strength, **unused):
    """Cross-entropy on x + δ, δ ~ N(0, σ²) per pixel (σ = strength, [0,1] pixel units)."""
    import torch
    import torch.nn.functional as functional

    return functional.cross_entropy(model(images + strength * torch.randn_like(images)), labels)


def gnorm_loss(model, images, labels, strength, **unused):
    """CE + λ · mean_i ‖∇x ℓ_i‖² with per-example gradients (λ = strength).

    The reference code penalises the gradient of the batch-mean loss (× 1e5 / B); its constant
    converts as λ ≈ 6.1 · reg_constant at batch 128, see :func:`gnorm_from_reference`.
    """
    import torch
    import torch.nn.functional as functional

    if strength == 0:
        return standard_loss(model, images, labels, strength)
    inputs = images.detach().requires_grad_(True)
    losses = functional.cross_entropy(model(inputs), labels, reduction="none")
    (gradient,) = torch.autograd.grad(losses.sum(), inputs, create_graph=True)
    penalty = gradient.flatten(1).pow(2).sum(1).mean()
    return losses.mean() + strength * penalty


def gnorm_from_reference(reference_constant: float, batch_size: int = 128) -> float:
    """Our λ for the reference code's ``reg_constant``: it adds
    reg_constant · 1e5 · ‖∇x (1/B Σ ℓ_i)‖² / B = reg_constant · (1e5 / B²) · mean_i ‖∇x ℓ_i‖²,
    so λ = reg_constant · 1e5 / B² (≈ 6.1 · reg_constant at B = 128)."""
    return reference_constant * 1e5 / batch_size**2


def smooth_loss(model, images, labels, strength, noise_std: float = 0.1):
    """CE + λ · mean_i ‖f(x_i + δ) − f(x_i)‖² on logits, δ ~ N(0, 0.1²) (λ = strength)."""
    import torch
    import torch.nn.functional as functional

    logits = model(images)
    loss = functional.cross_entropy(logits, labels)
    if strength == 0:
        return loss
    moved = model(images + noise_std * torch.randn_like(images))
    return loss + strength * (moved - logits).pow(2).sum(1).mean()


def pgd_perturb(model, images, labels, epsilon: float, steps: int = 10, step_factor: float = 2.5):
    """l2 PGD with per-example normalisation and projection onto the ε-ball (pixel units).

    ``steps`` steps of size ``step_factor``·ε/steps from δ = 0, with the model in eval mode
    (BatchNorm statistics untouched). The reference code normalises and projects over the whole
    batch instead, so its ε is a batch budget ≈ √B × this per-example ε.
    """
    import torch
    import torch.nn.functional as functional

    step_size = step_factor * epsilon / steps
    model = getattr(model, "module", model)  # attack the bare network, outside DDP's hooks
    was_training = model.training
    model.eval()
    delta = torch.zeros_like(images)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = functional.cross_entropy(model(images + delta), labels)
        (gradient,) = torch.autograd.grad(loss, delta)
        norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta.detach() + step_size * gradient / norms
        delta_norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = delta * torch.clamp(epsilon / delta_norms.clamp_min(1e-12), max=1.0)
    model.train(was_training)
    return (images + delta).detach()


def pgd_loss(model, images, labels, strength, steps: int = 10, step_factor: float = 2.5):
    """Cross-entropy on l2-PGD adversarial examples of radius ε = strength (per example).

    Reference settings, set per dataset through the recipe's ``regime_options``
    (``pagbench_plugins.zoo.recipes.REGIME_OPTIONS``): CIFAR-10 10 steps of 2ε/10 (the reference
    code), MNIST 10 steps of 2.5ε/10 (the reference notebook), ImageNet-64 3 steps of 2ε/3 (the
    paper). The defaults here (10 steps of 2.5ε/10) apply only where no recipe sets them."""
    import torch.nn.functional as functional

    if strength == 0:
        return standard_loss(model, images, labels, strength)
    return functional.cross_entropy(model(pgd_perturb(model, images, labels, strength, steps, step_factor)), labels)


@hookimpl
def register_trainers(register):
    register(TrainerEntry("standard", standard_loss, "Cross-entropy.", "unused (0)"))
    register(TrainerEntry("noise", noise_loss, "Gaussian noise augmentation ('randomized smoothing').", "σ, pixel units", (0.01, 0.03, 0.1, 0.3, 1.0)))
    register(TrainerEntry("gnorm", gnorm_loss, "Per-example input-gradient-norm penalty.", "λ", (0.001, 0.01, 0.1, 1.0)))
    register(TrainerEntry("smooth", smooth_loss, "Logit smoothness penalty under N(0, 0.1²) noise.", "λ", (0.01, 0.1, 1.0, 10.0)))
    register(TrainerEntry("pgd", pgd_loss, "l2 PGD adversarial training, per-example (options: steps, step_factor).", "ε, l2 pixel units", (0.1, 0.3, 1.0, 3.0)))
