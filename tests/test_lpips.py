"""LPIPS: the AlexNet backbone comes from a file in torchvision's layout, never silently random."""

import pytest
import torch

from pagbench.errors import MetricUnavailable
from pagbench_plugins.metrics.lpips_alignment import build_lpips, to_lpips_input


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hub") / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_missing_backbone_is_reported_with_the_path(tmp_path, monkeypatch):
    expected = tmp_path / "nowhere" / "alexnet.pth"
    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(expected))
    with pytest.raises(MetricUnavailable, match=str(expected)):
        build_lpips()


def test_missing_backbone_makes_the_metric_unavailable_not_random(tmp_path, monkeypatch):
    import pagbench

    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(tmp_path / "missing.pth"))
    result = pagbench.evaluate("bayes", num_images=10)
    assert "lpips_alignment" not in result["metrics"]
    assert str(tmp_path / "missing.pth") in result["unavailable"]["lpips_alignment"]


def test_backbone_weights_are_loaded_from_the_file(backbone_file, monkeypatch):
    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(backbone_file))
    model = build_lpips()
    state = torch.load(backbone_file, weights_only=True)
    assert torch.equal(model.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(dict(model.net.named_parameters())["slice5.10.bias"], state["features.10.bias"])
    assert not model.training


def test_a_corrupt_backbone_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "alexnet.pth"
    path.write_bytes(b"<html>not weights</html>")
    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(path))
    with pytest.raises(MetricUnavailable, match="not a readable state dict"):
        build_lpips()


def test_identical_images_score_one_and_inputs_are_prepared(backbone_file, monkeypatch):
    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(backbone_file))
    model = build_lpips()
    grey = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    prepared = to_lpips_input(grey)
    assert prepared.shape == (4, 3, 32, 32)
    assert prepared.abs().amax() <= 1.0 + 1e-6
    # scale invariance: ĝ = g / max|g|
    with torch.no_grad():
        same = model(to_lpips_input(grey), to_lpips_input(3.0 * grey)).reshape(-1)
        different = model(to_lpips_input(grey), to_lpips_input(torch.randn(4, 1, 16, 16))).reshape(-1)
    assert torch.allclose(same, torch.zeros(4), atol=1e-6)
    assert (different > 0.01).all()
