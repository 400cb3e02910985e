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
from pagbench.evaluation.gradients import input_gradients
from pagbench.models.loading import load_model

from .agreement import logits_and_gradient, max_relative_difference, trained_like

timm = pytest.importorskip("timm")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # resnet18's data config


@pytest.fixture(scope="module")
def dataset():
    from pagbench.extensions.registry import datasets

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


def test_default_input_size_follows_the_network_for_own_weights(dataset, batch):
    # test_vit takes any size (dynamic_img_size): the dataset's 16x16 images are fed unchanged
    loaded = load_model("timm:test_vit", dataset, "cpu", {"pretrained": "false"})
    assert loaded.module.input_size is None and loaded.card.regime == "untrained"
    assert loaded.card.provenance["data_config"]["resize"] == "none"
    # a ViT built at img_size=32 with a fixed position embedding does not: resized to 32 inside
    loaded = load_model("timm:vit_tiny_patch16_224", dataset, "cpu", {"pretrained": "false", "img_size": "32"})
    assert loaded.module.input_size == (32, 32)
    data = loaded.card.provenance["data_config"]
    assert data["resize"] == "16x16 -> 32x32 (bicubic, align_corners=False, antialias=True)"
    assert "does not accept 16x16" in data["rule"] and loaded.card.provenance["create_kwargs"] == {"img_size": 32}
    with torch.no_grad():
        assert loaded.module(batch.images).shape == (6, 10)


def test_grey_images_are_repeated_to_rgb_inside_the_wrapper():
    from pagbench.models.wrappers import ImageClassifier

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


# ------------------------------------------------------------------------------------------------
# Against timm itself: same weights, same [0,1] images, timm's normalisation applied by hand.
# "max relative difference" = max |pagbench − timm| / max |timm| over the batch, for logits and
# for the input gradient of the summed log-probability of the labels.

def fake_dataset(size, classes=10, channels=3, name="fake"):
    """What load_model needs of a dataset: name, class count, image shape."""
    import types

    return types.SimpleNamespace(name=f"{name}{size}", num_classes=classes, image_shape=(channels, size, size))


@pytest.fixture(scope="module")
def vit32(tmp_path_factory):
    """A vit_tiny_patch16_224 trained (here: perturbed) at img_size=32: pos_embed is 1x5x192."""
    torch.manual_seed(3)
    model = trained_like(timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=10), 3)
    path = tmp_path_factory.mktemp("vit") / "vit32.pth"
    torch.save({"model": model.state_dict()}, path)
    return model, path


CASES = {
    # CNN: the dataset's 16x16 images are fed as they are (the network takes any size)
    "resnet18 (CNN) at 16x16": ("resnet18", 16, {}),
    # ViT trained at 32: img_size inferred from the file's pos_embed, 32x32 images not resized
    "vit_tiny img_size=32 (inferred)": ("vit_tiny_patch16_224", 32, {}),
    "vit_tiny img_size=32 (given)": ("vit_tiny_patch16_224", 32, {"img_size": "32"}),
}
MEASURED = {}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_input_gradients_equal_timms_own_model(case, network, weights, vit32):
    architecture, size, options = CASES[case]
    reference, path = (network, weights) if architecture == "resnet18" else vit32
    data = fake_dataset(size)
    loaded = load_model(f"timm:{architecture}", data, "cpu", {"weights": str(path), **options})
    assert loaded.module.input_size is None and loaded.module.crop_size is None  # nothing resized
    provenance = loaded.card.provenance
    assert provenance["loaded_by"].endswith("equal the file's") and "strict" in provenance["loaded_by"]
    assert provenance["data_config"]["resize"] == "none" and provenance["data_config"]["crop"] == "none"
    if architecture != "resnet18":
        assert provenance["create_kwargs"] == {"img_size": (32, 32) if not options else 32}
        if not options:
            assert "inferred from the weights file: pos_embed 1x5x192" in provenance["img_size"]

    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(reference)
    mean, std = torch.tensor(config["mean"]).view(1, 3, 1, 1), torch.tensor(config["std"]).view(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(4, 3, size, size, generator=generator), torch.tensor([0, 3, 7, 9])
    ours = logits_and_gradient(loaded.module, images, labels)
    theirs = logits_and_gradient(lambda x: reference((x - mean) / std), images, labels)
    logits_difference, gradient_difference = (max_relative_difference(a, b) for a, b in zip(ours, theirs))
    MEASURED[case] = (logits_difference, gradient_difference)
    print(f"\n{case}: max relative difference logits {logits_difference:.2e}, input gradients {gradient_difference:.2e}")
    assert logits_difference <= 1e-5 and gradient_difference <= 1e-5


def test_resampled_position_embedding_is_refused_then_allowed_with_the_flag(vit32):
    """The issue's example: ViT weights trained at 32 built at 224 get pos_embed 1x5x192 resampled
    to 1x197x192 by timm's checkpoint filter: a different network, refused unless allowed."""
    reference, path = vit32
    data = fake_dataset(32)
    with pytest.raises(PagbenchError) as caught:
        load_model("timm:vit_tiny_patch16_224", data, "cpu", {"weights": str(path), "img_size": "224"})
    message = str(caught.value)
    assert "\n" not in message
    assert "timm transformed 1 of its tensors" in message and "pos_embed (file 1x5x192, model 1x197x192)" in message
    assert "fits img_size=32x32" in message and "allow_resample=true" in message

    loaded = load_model("timm:vit_tiny_patch16_224", data, "cpu", {"weights": str(path), "img_size": "224", "allow_resample": "true"})
    provenance = loaded.card.provenance
    assert "strict" not in provenance["loaded_by"] and provenance["allow_resample"] is True
    assert provenance["transformed_by_timm"] == ["pos_embed (file 1x5x192, model 1x197x192)"]
    assert provenance["data_config"]["resize"].startswith("32x32 -> 224x224 (bicubic")
    # it is timm's resampled network (as timm itself builds it), and not the user's
    state = torch.load(path, weights_only=True)["model"]
    resampled = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=10,
                                  pretrained_cfg_overlay={"state_dict": state, "num_classes": 10}).eval()
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        big = torch.nn.functional.interpolate(images, size=(224, 224), mode="bicubic", antialias=True, align_corners=False)
        assert max_relative_difference(loaded.module(images), resampled((big - 0.5) / 0.5)) <= 1e-5
        agree = (loaded.module(images).argmax(1) == reference((images - 0.5) / 0.5).argmax(1)).sum().item()
    print(f"\nresampled ViT agrees with the user's model on {agree} of 16 predictions")


def test_input_channel_adaptation_is_refused(weights):
    with pytest.raises(PagbenchError, match=r"conv1\.weight \(file 64x3x7x7, model 64x1x7x7\).*allow_resample=true"):
        load_model("timm:resnet18", fake_dataset(16, channels=1), "cpu", {"weights": str(weights), "in_chans": "1"})


def test_hub_weights_built_at_another_size_are_refused_before_downloading(dataset):
    with pytest.raises(PagbenchError, match=r"would have timm transform 1 pretrained tensors: pos_embed \(pretrained 1x197x192, model 1x5x192\)"):
        load_model("timm:vit_tiny_patch16_224", dataset, "cpu", {"img_size": "32", "replace_head": True})


def test_creation_arguments_pass_through_and_are_recorded(weights, dataset):
    loaded = load_model("timm:resnet18", dataset, "cpu", {"weights": str(weights), "drop_path_rate": "0.1", "zero_init_last": "false"})
    assert loaded.card.provenance["create_kwargs"] == {"drop_path_rate": 0.1, "zero_init_last": False}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"img_size": "32"}, r"timm could not build resnet18 with creation arguments img_size=32: .*unexpected keyword argument 'img_size'"),
        ({"num_classes": "5"}, r"--model-option num_classes: not passed to timm \(.*--replace-head"),
        ({"transform": "crop"}, "transform: expected timm-eval or none"),
        ({"transform": "timm-eval", "input_size": "native"}, "contradicts input_size=native"),
    ],
)
def test_creation_argument_errors_are_one_line(dataset, weights, options, message):
    with pytest.raises(PagbenchError, match=message) as caught:
        load_model("timm:resnet18", dataset, "cpu", {"weights": str(weights), **options})
    assert "\n" not in str(caught.value)


def _network_input(loaded, images):
    captured = {}
    handle = loaded.module.network.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0].detach()))
    with torch.no_grad():
        logits = loaded.module(images)
    handle.remove()
    return captured["x"], logits


def test_timm_eval_transform_matches_timms_create_transform(vit32):
    """transform=timm-eval: resize to floor(32 / 0.9) = 35 (bicubic), centre crop 32 (top/left
    round(1.5) = 2), inside the model; against timm's own eval transform on the same image."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    reference, path = vit32
    data = fake_dataset(24)
    loaded = load_model("timm:vit_tiny_patch16_224", data, "cpu", {"weights": str(path), "transform": "timm-eval"})
    config = loaded.card.provenance["data_config"]
    assert config["transform"] == "timm-eval" and config["crop_pct"] == 0.9
    assert config["resize"] == "24x24 -> 35x35 (bicubic, align_corners=False, antialias=True, shorter side to 35)"
    assert config["crop"] == "centre 32x32 of 35x35 (top 2, left 2)"
    timm_config = resolve_data_config(model=reference)
    timm_config["input_size"] = (3, 32, 32)  # timm's data config keeps 224 for a ViT built at img_size=32
    transform = create_transform(**timm_config, is_training=False)

    images = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    ours, our_logits = _network_input(loaded, images)
    theirs = torch.stack([transform(image) for image in images])  # tensors: torchvision's tensor resize
    with torch.no_grad():
        their_logits = reference(theirs)
    tensor_difference = float((ours - theirs).abs().max())
    logits_difference = max_relative_difference(our_logits, their_logits)
    # PIL images (timm's usual input): 8-bit, PIL's own bicubic; compare on the quantised image
    quantised = (images * 255).round() / 255
    pil = torch.stack([transform(Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy())) for image in images])
    ours_quantised, _ = _network_input(loaded, quantised)
    pil_difference = float((ours_quantised - pil).abs().max() * 0.5)  # std 0.5: back to [0,1] units
    pil_mean = float((ours_quantised - pil).abs().mean() * 0.5)
    MEASURED["timm-eval transform"] = (tensor_difference, logits_difference, pil_difference, pil_mean)
    print(f"\ntimm-eval vs create_transform: tensor input max abs diff {tensor_difference:.2e} (normalised units), "
          f"logits rel {logits_difference:.2e}; PIL input (uniform noise, upsampled 24->35) max abs diff {pil_difference:.3f}, "
          f"mean {pil_mean:.4f} in [0,1] units")
    assert tensor_difference <= 1e-5 and logits_difference <= 1e-5
    # PIL works in 8 bits with its own bicubic kernel (a = -0.5, torch's a = -0.75): on pixel noise
    # upsampled 24 -> 35 the two differ by up to ~0.09 of the [0,1] range (measured), ~0.002 on average
    assert pil_difference < 0.15 and pil_mean < 0.03
