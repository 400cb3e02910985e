"""Comparing pagbench's models with a library's own (test helpers): logits and input gradients
on the same [0,1] images, and weights that are not an accident of initialisation."""

import torch


def max_relative_difference(ours, theirs) -> float:
    """max |ours − theirs| / max |theirs| over the whole tensor, in float64."""
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())


def logits_and_gradient(forward, images, labels):
    """(logits, input gradient of the summed log-probability of ``labels``) of ``forward``."""
    images = images.clone().requires_grad_(True)
    logits = forward(images)
    torch.log_softmax(logits, 1).gather(1, labels[:, None]).sum().backward()
    return logits.detach(), images.grad


def trained_like(model, seed):
    """``model`` with non-default weights and BatchNorm statistics (seeded), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                if name.endswith("running_var"):
                    tensor.uniform_(0.5, 2.0, generator=generator)
                else:
                    tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    return model.eval()
