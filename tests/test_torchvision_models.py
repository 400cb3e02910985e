"""torchvision:NAME models offline, against torchvision itself: weights from --weights files and
from a weights enum's file placed in torch's hub cache (written here: random weights), the
weights' normalisation applied by hand, logits and input gradients compared; the evaluation
transform against ``weights.transforms()``; checkpoint:PATH --arch torchvision:NAME; bad input.

"max relative difference" = max |pagbench − torchvision| / max |torchvision| over the batch."""

from __future__ import annotations

import types

import pytest
import torch

from pagbench.errors import PagbenchError
from pagbench.models.loading import load_model

from .agreement import logits_and_gradient, max_relative_difference, trained_like

torchvision = pytest.importorskip("torchvision")

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def fake_dataset(size, classes=10, channels=3):
    return types.SimpleNamespace(name=f"fake{size}", num_classes=classes, image_shape=(channels, size, size))


@pytest.fixture(scope="module")
def resnet10():
    return trained_like(torchvision.models.resnet18(num_classes=10), 1)


@pytest.fixture(scope="module")
def weights10(resnet10, tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "resnet18-10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet10.state_dict().items()}, "epoch": 3}, path)
    return path


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """torch's hub cache in a temporary TORCH_HOME holding a file for ResNet18_Weights.IMAGENET1K_V1."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from pagbench_plugins.torchvision_models.build import cache_file

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = cache_file(weights)
    assert str(path).startswith(str(tmp_path / "torch" / "hub" / "checkpoints"))
    path.parent.mkdir(parents=True)
    source = trained_like(torchvision.models.resnet18(), 2)
    torch.save(source.state_dict(), path)
    return weights, path


MEASURED = {}


def test_weights_file_logits_and_gradients_equal_torchvisions(resnet10, weights10):
    data = fake_dataset(32)
    loaded = load_model("torchvision:resnet18", data, "cpu", {"weights": str(weights10)})
    provenance = loaded.card.provenance
    assert provenance["stripped_prefixes"] == ["module."] and provenance["loaded_by"].endswith("(strict)")
    assert provenance["data_config"]["resize"] == "none" and provenance["data_config"]["mean"] == pytest.approx(MEAN.flatten().tolist())
    assert "ResNet18_Weights.IMAGENET1K_V1.transforms()" in provenance["normalization"]  # resnet18's DEFAULT
    images, labels = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2, 3, 9])
    ours = logits_and_gradient(loaded.module, images, labels)
    theirs = logits_and_gradient(lambda x: resnet10((x - MEAN) / STD), images, labels)
    difference = tuple(max_relative_difference(a, b) for a, b in zip(ours, theirs))
    print(f"\nresnet18 --weights at 32x32: max relative difference logits {difference[0]:.2e}, gradients {difference[1]:.2e}")
    assert max(difference) <= 1e-5


def test_weights_enum_from_the_hub_cache_offline_with_the_eval_transform(hub_cache):
    """torchvision:resnet18.IMAGENET1K_V1 from torch's hub cache (PAGBENCH_OFFLINE=1 in tests):
    transform=eval (resize 256 bilinear antialiased, centre crop 224) against torchvision's own
    model and ``weights.transforms()`` on the same 64x64 [0,1] tensors."""
    from PIL import Image

    weights, path = hub_cache
    data = fake_dataset(64, classes=1000)
    loaded = load_model("torchvision:resnet18.IMAGENET1K_V1", data, "cpu", {"transform": "eval"})
    provenance = loaded.card.provenance
    assert provenance["weights_file"] == str(path) and provenance["weights_enum"] == "ResNet18_Weights.IMAGENET1K_V1"
    config = provenance["data_config"]
    assert config["resize"] == "64x64 -> 256x256 (bilinear, align_corners=False, antialias=True, shorter side to 256)"
    assert config["crop"] == "centre 224x224 of 256x256 (top 16, left 16)"
    reference = torchvision.models.resnet18(weights=weights).eval()  # torchvision reads the same cached file
    transform = weights.transforms()
    images, labels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 700])
    ours = logits_and_gradient(loaded.module, images, labels)
    theirs = logits_and_gradient(lambda x: reference(transform(x)), images, labels)
    difference = tuple(max_relative_difference(a, b) for a, b in zip(ours, theirs))
    # the transform alone on PIL images (8-bit, PIL's bilinear) against ours on the quantised image
    quantised = (images * 255).round() / 255
    captured = []
    handle = loaded.module.network.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    with torch.no_grad():
        loaded.module(quantised)
    handle.remove()
    pil = torch.stack([transform(Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy())) for image in images])
    pil_max = float(((captured[0] - pil) * STD).abs().max())
    pil_mean = float(((captured[0] - pil) * STD).abs().mean())
    print(f"\nresnet18.IMAGENET1K_V1 transform=eval vs weights.transforms() on tensors: logits {difference[0]:.2e}, "
          f"gradients {difference[1]:.2e}; on PIL images: max abs {pil_max:.3f}, mean {pil_mean:.4f} in [0,1] units")
    assert max(difference) <= 1e-5
    assert pil_max < 0.1 and pil_mean < 0.01


def test_weights_enum_default_resize_and_class_policy(hub_cache, synthetic):
    with pytest.raises(PagbenchError, match="1000-class classifier but dataset 'synthetic' has 10 classes.*--replace-head"):
        load_model("torchvision:resnet18.IMAGENET1K_V1", synthetic, "cpu", {})
    loaded = load_model("torchvision:resnet18.IMAGENET1K_V1", synthetic, "cpu", {"replace_head": True, "input_size": "32"})
    assert loaded.card.requires_finetuning and loaded.card.provenance["replaced_head"] == "fc"
    assert loaded.card.provenance["data_config"]["resize"] == "16x16 -> 32x32 (bilinear, align_corners=False, antialias=True)"
    with torch.no_grad():
        assert loaded.module(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_offline_without_the_cached_file_names_it(tmp_path, monkeypatch, synthetic):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(PagbenchError) as caught:
        load_model("torchvision:resnet18", synthetic, "cpu", {"replace_head": True})
    message = str(caught.value)
    assert "\n" not in message and "PAGBENCH_OFFLINE" in message
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_checkpoint_with_torchvision_arch_round_trip(resnet10, weights10, synthetic):
    loaded = load_model(f"checkpoint:{weights10}", synthetic, "cpu", {"arch": "torchvision:resnet18"})
    assert loaded.card.architecture == "torchvision resnet18 (torchvision:resnet18)"
    assert loaded.card.provenance["input"]["resize"] == "none"
    images, labels = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)), torch.tensor([0, 1, 2])
    ours = logits_and_gradient(loaded.module, images, labels)
    theirs = logits_and_gradient(lambda x: resnet10((x - MEAN) / STD), images, labels)
    difference = tuple(max_relative_difference(a, b) for a, b in zip(ours, theirs))
    print(f"\ncheckpoint:PATH --arch torchvision:resnet18: logits {difference[0]:.2e}, gradients {difference[1]:.2e}")
    assert max(difference) <= 1e-5


def test_fixed_size_network_is_resized_for_own_weights(synthetic):
    loaded = load_model("torchvision:vit_b_16", synthetic, "cpu", {"pretrained": "false", "image_size": "32"})
    config = loaded.card.provenance["data_config"]
    assert loaded.module.input_size == (32, 32) and "does not accept 16x16" in config["rule"]
    assert loaded.card.provenance["create_kwargs"]["image_size"] == 32


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("torchvision:resnet51", {}, r"unknown torchvision classification model 'resnet51'; did you mean torchvision:resnet50"),
        ("torchvision:resnet18.IMAGENET1K_V9", {}, r"no weights 'IMAGENET1K_V9' \(it has IMAGENET1K_V1, DEFAULT\)"),
        ("torchvision:resnet18", {"num_classes": "5"}, r"num_classes: not passed to torchvision"),
        ("torchvision:resnet18", {"pretrained": "false", "img_size": "32"}, r"could not build resnet18 with arguments img_size=32: .*img_size"),
        ("torchvision:resnet18", {"transform": "crop"}, "transform: expected eval or none"),
        ("torchvision:resnet18", {"trust_checkpoint": True}, "--trust-checkpoint applies to --weights FILE"),
        ("torchvision:resnet18.DEFAULT", {"pretrained": "false"}, "contradicts"),
    ],
)
def test_bad_input_is_one_line(synthetic, name, options, message):
    with pytest.raises(PagbenchError, match=message) as caught:
        load_model(name, synthetic, "cpu", options)
    assert "\n" not in str(caught.value)


def test_weights_file_with_another_class_count_is_refused(tmp_path, synthetic):
    path = tmp_path / "in1k.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(PagbenchError, match=r"1000-class classifier \(fc.weight, fc.bias\) but the dataset has 10 classes"):
        load_model("torchvision:resnet18", synthetic, "cpu", {"weights": str(path)})
    loaded = load_model("torchvision:resnet18", synthetic, "cpu", {"weights": str(path), "replace_head": True})
    assert loaded.card.requires_finetuning and loaded.card.provenance["checkpoint_classes"] == 1000
