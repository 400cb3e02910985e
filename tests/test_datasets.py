"""Real-dataset loaders, fed tiny files in the genuine on-disk formats, and their errors."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pagbench.errors import PagbenchError
from pagbench.extensions.registry import datasets


def load(name, root):
    return datasets().get(name).factory(str(root) if root is not None else None)


# ------------------------------------------------------------------------------------- CIFAR-10
def write_cifar(directory, count=3):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, count).tolist()
        entry = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * count}
        with open(directory / name, "wb") as stream:
            pickle.dump(entry, stream, protocol=2)
        batches[name] = (data, labels)
    return batches


def test_cifar10_reads_python_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    dataset = load("cifar10", tmp_path)
    test = dataset.split("test")
    batch = test.batch([0, 2])
    data, labels = batches["test_batch"]
    assert batch.images.shape == (2, 3, 32, 32) and batch.images.dtype == torch.float32
    assert torch.allclose(batch.images[1], torch.from_numpy(data[2].reshape(3, 32, 32)).float() / 255)
    assert batch.labels.tolist() == [labels[0], labels[2]]
    train = dataset.split("train")
    assert len(train) == 15
    assert train.batch([14]).labels.item() == batches["data_batch_5"][1][2]


def test_cifar10_missing_truncated_and_malicious_files(tmp_path):
    with pytest.raises(PagbenchError, match=r"files not found under .*data_batch_1.*test_batch.*--data-root"):
        load("cifar10", tmp_path)
    write_cifar(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PagbenchError, match="test_batch is truncated or not a valid file"):
        load("cifar10", tmp_path).split("test")

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(PagbenchError, match="posix.system is not allowed|os.system is not allowed"):
        load("cifar10", tmp_path).split("test")


# ---------------------------------------------------------------------------------------- MNIST
def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory, count=6, compress=False):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(array)
            if compress:
                (directory / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize("compress, layout", [(False, "."), (True, "MNIST/raw")])
def test_mnist_distractor_reads_idx_files(tmp_path, compress, layout):
    written = write_mnist(tmp_path / layout, compress=compress)
    dataset = load("mnist-distractor", tmp_path)
    assert dataset.image_shape == (1, 56, 28) and dataset.has_signal_mask
    batch = dataset.split("test").batch(list(range(6)))
    images, labels = written["t10k"]
    assert batch.labels.tolist() == labels.tolist()
    for i in range(6):
        top = bool(batch.signal_mask[i, 0, 0, 0])
        assert batch.signal_mask[i, 0].sum() == 28 * 28
        half = batch.images[i, 0, :28] if top else batch.images[i, 0, 28:]
        assert torch.equal((half * 255).round().to(torch.uint8), torch.from_numpy(images[i]))
        assert batch.signal_mask[i, 0, :28].all() == top and (~batch.signal_mask[i, 0, 28:]).all() == top


def test_mnist_truncated_idx_is_a_one_line_error(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(PagbenchError, match="t10k-images-idx3-ubyte is truncated.*expected"):
        load("mnist-distractor", tmp_path).split("test")
    with pytest.raises(PagbenchError, match="train-images-idx3-ubyte or train-images-idx3-ubyte.gz"):
        load("mnist-distractor", tmp_path / "empty")


# ------------------------------------------------------------------------------ digits (offline)
@pytest.mark.parametrize("name", ["digits-distractor", "digits-distractor-varied"])
def test_digits_distractor_is_offline_and_masks_the_digit_half(name):
    dataset = load(name, None)
    test, train = dataset.split("test"), dataset.split("train")
    assert len(test) == 397 and len(train) == 1400 * 4
    batch = test.batch(list(range(64)))
    assert batch.images.shape == (64, 1, 56, 28) and 0 <= batch.images.min() and batch.images.max() <= 1
    mask = batch.signal_mask
    top = mask[:, 0, 0, 0]
    assert 0.2 < top.float().mean() < 0.8  # the digit's half is random
    # both halves carry ink: a digit on the signal side, a letter on the other
    signal_ink = (batch.images * mask).flatten(1).sum(1)
    distractor_ink = (batch.images * ~mask).flatten(1).sum(1)
    assert (signal_ink > 5).all() and (distractor_ink > 2).all()
    again = load(name, None).split("test").batch([0, 1])
    assert torch.equal(again.images, batch.images[:2])  # deterministic


def distractor_halves(batch):
    """The distractor half of each image, (B, 28, 28)."""
    top = batch.signal_mask[:, 0, 0, 0]
    return torch.stack([image[0, 28:] if digit_on_top else image[0, :28] for image, digit_on_top in zip(batch.images, top)])


def test_the_paper_distractor_is_one_fixed_letter_and_the_varied_one_is_not():
    """The paper's set ("simple word distractor" MNIST) puts the same letter A at the same place in
    every image, so the distractor half has no variance; the ablation varies it."""
    from pagbench_plugins.datasets.distractor import FIXED_LETTER, render_letter

    fixed = distractor_halves(load("digits-distractor", None).split("train").batch(list(range(200))))
    assert (fixed == fixed[0]).all()
    letter, height, width, row, col = FIXED_LETTER
    expected = torch.zeros(28, 28)
    expected[row : row + height, col : col + width] = render_letter(letter, height, width)
    assert torch.allclose(fixed[0], (expected * 255).round() / 255)
    varied = distractor_halves(load("digits-distractor-varied", None).split("train").batch(list(range(200))))
    assert len({tuple(half.flatten().tolist()) for half in varied}) > 150
    # the digits, halves and labels are the same in both sets: only the distractor differs
    a = load("digits-distractor", None).split("test").batch(list(range(50)))
    b = load("digits-distractor-varied", None).split("test").batch(list(range(50)))
    assert torch.equal(a.labels, b.labels) and torch.equal(a.signal_mask, b.signal_mask)
    assert torch.equal(a.images * a.signal_mask, b.images * b.signal_mask)


def test_models_trained_on_an_older_distractor_construction_are_never_reused():
    from pagbench_plugins.datasets import DISTRACTOR_VERSION
    from pagbench_plugins.datasets.distractor import CONSTRUCTION_VERSION
    from pagbench_plugins.zoo.recipes import recipe_for

    assert DISTRACTOR_VERSION == str(CONSTRUCTION_VERSION)
    assert load("digits-distractor", None).config["construction"] == CONSTRUCTION_VERSION
    recipe = recipe_for("digits-distractor", "pgd", 1.0)
    assert recipe.dataset_version == DISTRACTOR_VERSION and recipe.as_dict()["dataset_version"] == DISTRACTOR_VERSION
    older = recipe.with_overrides(dataset_version="2")
    assert older.identifier != recipe.identifier
    # unversioned datasets keep the identifiers they always had
    assert "dataset_version" not in recipe_for("synthetic", "noise", 0.3).as_dict()


# --------------------------------------------------------------------------------- ImageNet-64
def write_npz(path, count, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (count, 12288), dtype=np.uint8)
    labels = rng.integers(1, 1001, count)
    np.savez(path, data=data, labels=labels)
    return data, labels


def test_imagenet64_reads_npz_batches(tmp_path):
    data, labels = write_npz(tmp_path / "val_data.npz", 5, 0)
    first, _ = write_npz(tmp_path / "train_data_batch_1.npz", 3, 1)
    second, second_labels = write_npz(tmp_path / "train_data_batch_2.npz", 4, 2)
    dataset = load("imagenet64", tmp_path)
    batch = dataset.split("test").batch([4])
    assert batch.images.shape == (1, 3, 64, 64)
    assert torch.allclose(batch.images[0], torch.from_numpy(data[4].reshape(3, 64, 64)).float() / 255)
    assert batch.labels.item() == labels[4] - 1  # 1-based on disk
    train = dataset.split("train")
    assert len(train) == 7
    batch = train.batch([0, 5])
    assert batch.labels[1].item() == second_labels[2] - 1
    assert torch.allclose(batch.images[1], torch.from_numpy(second[2].reshape(3, 64, 64)).float() / 255)


def test_imagenet64_bad_files(tmp_path):
    with pytest.raises(PagbenchError, match="val_data.npz"):
        load("imagenet64", tmp_path)
    (tmp_path / "val_data.npz").write_text("<html><body>Please log in</body></html>")
    with pytest.raises(PagbenchError, match="val_data.npz is truncated or not a valid file"):
        load("imagenet64", tmp_path).split("test")
    np.savez(tmp_path / "val_data.npz", data=np.zeros((2, 100), np.uint8), labels=np.ones(2))
    with pytest.raises(PagbenchError, match=r"expected \(N, 12288\)"):
        load("imagenet64", tmp_path).split("test")


# ------------------------------------------------------------------------------------ ImageNet
def test_imagenet_reads_an_image_folder_tree(tmp_path):
    from PIL import Image

    for wnid, color, size in (("n01440764", (255, 0, 0), (300, 260)), ("n01443537", (0, 0, 255), (200, 400))):
        folder = tmp_path / "val" / wnid
        folder.mkdir(parents=True)
        Image.new("RGB", size, color).save(folder / "ILSVRC2012_val_00000001.JPEG", format="JPEG")
    dataset = load("imagenet", tmp_path)
    batch = dataset.split("test").batch([0, 1])
    assert batch.images.shape == (2, 3, 224, 224) and batch.labels.tolist() == [0, 1]
    assert batch.images[0, 0].mean() > 0.9 and batch.images[1, 2].mean() > 0.9
    assert dataset.score_image_shape == (3, 64, 64)
    with pytest.raises(PagbenchError, match="val/<wnid>/\\*.JPEG"):
        load("imagenet", tmp_path / "nothing")


def test_missing_dataset_files_fail_in_one_line_with_exit_code_2(tmp_path):
    from pagbench.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--dataset", "cifar10", "--data-root", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "data_batch_1" in result.output


def test_signal_distractor_ratio_sees_which_half_holds_the_digit(register_plugin):
    """A model reading only the top half is insensitive to noise on the bottom half: for digits
    on top that is the distractor (sensitivity 0), for digits below it is the signal."""
    import pagbench
    from pagbench import ModelCard, ModelEntry, hookimpl

    class TopHalf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(10, 28 * 28, generator=torch.Generator().manual_seed(0)))

        def forward(self, images):
            return images[:, 0, :28].flatten(1) @ self.weight.T

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelEntry("top-half", lambda name, dataset, device: TopHalf(), ModelCard("linear", "digits-distractor")))

    register_plugin(Plugin(), name="top-half")
    result = pagbench.evaluate("top-half", dataset="digits-distractor", num_images=40, metrics=("signal_distractor_ratio",), per_image=True)
    top = load("digits-distractor", None).split("test").batch(list(range(40))).signal_mask[:, 0, 0, 0]
    signal = torch.tensor(result["per_image"]["signal_sensitivity"])
    distractor = torch.tensor(result["per_image"]["distractor_sensitivity"])
    assert (distractor[top] == 0).all() and (signal[top] > 0).all()
    assert (signal[~top] == 0).all() and (distractor[~top] > 0).all()
    assert result["metric_settings"]["signal_distractor_ratio"]["noise_levels"] == list(load("digits-distractor", None).noise_levels)
