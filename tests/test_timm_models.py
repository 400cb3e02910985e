"""timm:NAME models offline: weights from a --weights file written here (timm resnet18 with a
10-class head), normalisation and resizing inside the wrapper (gradients w.r.t. the dataset's
[0,1] pixels, with the dataset's shape), strict key reports, the class-count policy."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pagbench.cli import build_cli
from pagbench.errors import PagbenchError
from pagbench.gradients import input_gradients
from pagbench.models import load_model

timm = pytest.importorskip("timm")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # resnet18's data config


@pytest.fixture(scope="module")
def dataset():
    from pagbench.registry import datasets

    return datasets().get("synthetic").factory(None)


@pytest.fixture(scope="module")
def batch(dataset):
    return dataset.split("test").batch(list(range(6)))


@pytest.fixture(scope="module")
def network():
    """A timm resnet18 fine-tuned to 10 classes, in eval mode, with non-trivial BN statistics."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def weights(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("timm") / "resnet18-10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in network.state_dict().items()}, "epoch": 30}, path)
    return path


def test_gradient_is_wrt_dataset_pixels_through_resize_and_normalisation(dataset, batch, network, weights):
    loaded = load_model("timm:resnet18", dataset, "cpu", {"weights": str(weights), "input_size": "32"})
    logits, gradient = input_gradients(loaded.module, batch.images, batch.labels, "logprob")
    assert gradient.shape == batch.images.shape == (6, 3, 16, 16)  # the dataset's shape, not 32x32

    images = batch.images.clone().double().requires_grad_(True)  # by hand, in float64
    resized = torch.nn.functional.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    normalised = (resized - torch.tensor(MEAN).double().view(1, 3, 1, 1)) / torch.tensor(STD).double().view(1, 3, 1, 1)
    reference = network.double()(normalised)
    torch.log_softmax(reference, 1).gather(1, batch.labels[:, None]).sum().backward()
    network.float()
    assert torch.allclose(logits.double(), reference.detach(), atol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(gradient.flatten(1), images.grad.flatten(1))
    assert cosine.min() > 0.9999
    assert torch.allclose(gradient, images.grad, rtol=1e-3, atol=1e-3 * images.grad.abs().max())

    card = loaded.card
    assert card.requires_finetuning is False and card.provenance["sha256"]
    assert card.provenance["data_config"]["mean"] == pytest.approx(list(MEAN))
    assert card.provenance["data_config"]["resize"].startswith("16x16 -> 32x32")
    assert all(not p.requires_grad for p in loaded.module.parameters())


def test_default_input_size_is_the_models(dataset, batch):
    loaded = load_model("timm:test_vit", dataset, "cpu", {"pretrained": "false"})  # fixed 160x160 input
    assert loaded.module.input_size == (160, 160)
    assert loaded.card.regime == "untrained"
    with torch.no_grad():
        assert loaded.module(batch.images).shape == (6, 10)


def test_grey_images_are_repeated_to_rgb_inside_the_wrapper():
    from pagbench.wrappers import ImageClassifier

    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    wrapper = ImageClassifier(network, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), input_size=(8, 8), in_channels=3).eval()
    grey = torch.rand(2, 1, 4, 4, requires_grad=True)
    wrapper(grey).sum().backward()
    assert grey.grad.shape == (2, 1, 4, 4)


def test_safetensors_weights(dataset, batch, network, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(network.state_dict(), str(path))
    loaded = load_model("timm:resnet18", dataset, "cpu", {"weights": str(path), "input_size": "native"})
    with torch.no_grad():
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        assert torch.allclose(loaded.module(batch.images), network((batch.images - mean) / std), atol=1e-5)
    assert loaded.card.provenance["format"] == "safetensors"


def test_strict_key_report_for_another_architectures_weights(dataset, tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", num_classes=10).state_dict(), path)
    with pytest.raises(PagbenchError, match=r"does not fit timm:resnet18: 96 unexpected keys: layer1\.2\.conv1\.weight"):
        load_model("timm:resnet18", dataset, "cpu", {"weights": str(path)})


def test_class_count_policy(dataset, batch, tmp_path):
    path = tmp_path / "imagenet.pth"
    torch.manual_seed(1)
    source = timm.create_model("resnet18", num_classes=1000)
    torch.save(source.state_dict(), path)
    with pytest.raises(PagbenchError, match="1000-class classifier but dataset 'synthetic' has 10 classes.*--replace-head"):
        load_model("timm:resnet18", dataset, "cpu", {"weights": str(path)})
    loaded = load_model("timm:resnet18", dataset, "cpu", {"weights": str(path), "replace_head": True, "input_size": "32"})
    assert loaded.card.requires_finetuning is True
    assert loaded.card.provenance["checkpoint_classes"] == 1000 and loaded.card.provenance["replaced_head"] == "fc"
    assert torch.equal(loaded.module.network.conv1.weight, source.conv1.weight)
    with torch.no_grad():
        assert loaded.module(batch.images).shape == (6, 10)


def test_hub_weights_offline_point_to_weights_file(dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("PAGBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(PagbenchError, match="could not fetch the weights of timm:resnet18 .*--weights FILE"):
        load_model("timm:resnet18", dataset, "cpu", {"replace_head": True})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"arch": "timm:resnet18"}, "does not take --arch"),
        ({"trust_checkpoint": True}, "--trust-checkpoint applies to --weights FILE"),
        ({"input_size": "big"}, "input_size: expected N, HxW or native"),
        ({"pretrained": "maybe"}, "expected true or false"),
    ],
)
def test_option_errors(dataset, options, message):
    with pytest.raises(PagbenchError, match=message):
        load_model("timm:resnet18", dataset, "cpu", options)


def test_unknown_timm_name_suggests_close_ones(dataset):
    with pytest.raises(PagbenchError, match="unknown timm model 'resnet81'; did you mean timm:resnet18"):
        load_model("timm:resnet81", dataset, "cpu", {})


def test_robustness_checkpoint_onto_a_timm_architecture(dataset, batch, network, tmp_path):
    state = {f"module.model.{k}": v for k, v in network.state_dict().items()}
    state.update({f"module.attacker.model.{k}": v for k, v in network.state_dict().items()})
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])
    state.update({"module.normalizer.new_mean": mean.view(3, 1, 1), "module.normalizer.new_std": std.view(3, 1, 1)})
    path = tmp_path / "cifar_l2_0_5.pt"
    torch.save({"model": state, "optimizer": {}, "schedule": None, "epoch": 150}, path)
    loaded = load_model(f"checkpoint:{path}", dataset, "cpu", {"arch": "timm:resnet18", "input_size": "native"})
    with torch.no_grad():
        expected = network((batch.images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
        assert torch.allclose(loaded.module(batch.images), expected, atol=1e-5)
    assert loaded.card.provenance["mean"] == pytest.approx(mean.tolist())
    assert loaded.card.provenance["input"]["resize"] == "none"


@pytest.mark.slow
def test_cli_timm_end_to_end(weights, tmp_path):
    output = tmp_path / "timm.json"
    result = CliRunner().invoke(
        build_cli(),
        ["evaluate", "--model", "timm:resnet18", "--weights", str(weights), "--model-option", "input_size=32",
         "--num-images", "10", "--batch-size", "5", "--no-progress", "--output", str(output)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    assert data["config"]["model_options"] == {"input_size": "32", "weights": str(weights)}
    assert data["config"]["model_card"]["architecture"] == "timm resnet18"
    assert data["metrics"]["score_cosine"]["n"] == 10
