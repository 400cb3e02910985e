"""Generic providers fitted to a dataset's train split."""

import torch

from pagbench.plugin import ManifoldProvider
from pagbench.plugin import ScoreProvider


def _train_images(dataset, limit=2000):
    split = dataset.split("train")
    batch = split.batch(list(range(min(limit, len(split)))))
    return batch.images.reshape(batch.images.shape[0], -1).double(), batch.labels


class ClassGaussianScores(ScoreProvider):
    """p(x|y) = N(μ_y, s²I) with μ_y the class means and s² the mean within-class variance."""

    name = "class-gaussians"
    default_sigma = 0.0

    def __init__(self, dataset):
        images, labels = _train_images(dataset)
        self.means = torch.stack([images[labels == c].mean(0) for c in range(dataset.num_classes)])
        self.variance = float(((images - self.means[labels]) ** 2).mean())

    @property
    def fingerprint(self):
        return f"class-gaussians:{self.variance:.6g}"

    def _class_scores(self, images, sigma):
        flat = images.reshape(images.shape[0], -1).double()
        return -(flat[:, None, :] - self.means[None]) / (self.variance + sigma**2)  # (B, Y, D)

    def conditional(self, images, labels, sigma):
        scores = self._class_scores(images, sigma)
        return scores[torch.arange(images.shape[0]), labels].reshape(images.shape)

    def unconditional(self, images, sigma):
        flat = images.reshape(images.shape[0], -1).double()
        log_likelihood = -((flat[:, None, :] - self.means[None]) ** 2).sum(2) / (2 * (self.variance + sigma**2))
        weights = torch.softmax(log_likelihood, dim=1)
        return torch.einsum("by,byd->bd", weights, self._class_scores(images, sigma)).reshape(images.shape)


class PcaManifold(ManifoldProvider):
    """The same k principal directions at every image."""

    name = "pca"

    def __init__(self, dataset, k):
        images, _ = _train_images(dataset)
        centered = images - images.mean(0)
        _, _, right = torch.linalg.svd(centered, full_matrices=False)
        self.basis = right[:k]  # (k, D), orthonormal rows
        self.k = k

    @property
    def fingerprint(self):
        return f"pca:k={self.k}"

    def tangent_basis(self, images, labels):
        return self.basis.unsqueeze(0).expand(images.shape[0], -1, -1)
