"""The paper's CIFAR-10 path, online, rehearsed offline: ``pagbench evaluate --model
robustbench:Wong2020Fast --dataset cifar10`` with no provider flags fetches every asset from a
mirror on 127.0.0.1 (the CIFAR-10 tar.gz of python batches, an EDM pickle of the published
32×32 unconditional VP layout, an AlexNet-shaped state dict) under the test-only asset table, and
reports every metric. RobustBench's own weights come from a local model directory, as in
tests/test_robustbench_models.py (RobustBench downloads them from Google Drive through its library).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from .asset_mirror import Mirror, alexnet_state_dict_bytes, cifar_archive

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "edm" / "vp-songunet-32-uncond.pkl"


def _own_edm_networks() -> bool:
    """Whether pagbench reads the NVIDIA-written fixture without running its code."""
    return FIXTURE.is_file() and importlib.util.find_spec("pagbench_plugins.diffusion.edm_restricted") is not None


def _network_pickle(tmp_path) -> tuple[bytes, list[str]]:
    """(pickle bytes, extra CLI flags): NVIDIA's own 32×32 VP SongUNet fixture (no trust needed),
    else pagbench's test writer's Gaussian denoiser (needs --trust-pickle)."""
    if _own_edm_networks():
        return FIXTURE.read_bytes(), []
    from .edm_pickle import write_edm_pickle

    path = tmp_path / "net.pkl"
    write_edm_pickle(path, resolution=32, channels=3, label_dim=0)
    return path.read_bytes(), ["--trust-pickle"]


@pytest.fixture
def robustbench_dir(tmp_path):
    from pagbench.errors import PagbenchError

    if importlib.util.find_spec("robustbench") is None:
        pytest.skip("robustbench is not installed")
    from pagbench_plugins.robustbench_models.build import import_robustbench

    try:
        _, model_dicts, _ = import_robustbench()
    except PagbenchError as error:
        pytest.skip(f"robustbench is not importable: {error}")
    from .test_robustbench_models import MADE_UP, save_in_robustbench_layout, write_model_info, zoo_network

    root = tmp_path / "robustbench-models"
    save_in_robustbench_layout(zoo_network(model_dicts, "Wong2020Fast", 0), "Wong2020Fast", root / "cifar10" / "Linf" / "Wong2020Fast.pt")
    write_model_info(root / "model_info", "cifar10/Linf/Wong2020Fast", MADE_UP["Wong2020Fast"])
    return root


@pytest.mark.slow
def test_the_paper_s_cifar10_path_runs_through_the_mirror(tmp_path, monkeypatch, robustbench_dir):
    from pagbench.files import assets
    from pagbench.cli import build_cli

    network, flags = _network_pickle(tmp_path)
    mirror = Mirror()
    try:
        mirror.files.update({"/kriz/cifar-10-python.tar.gz": cifar_archive(count=4),
                             "/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl": network,
                             "/models/alexnet-owt-7be5be79.pth": alexnet_state_dict_bytes()})
        mirror.faults["/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl"] = ["drop"]  # resumed on the way
        archive = mirror.files["/kriz/cifar-10-python.tar.gz"]
        backbone = mirror.files["/models/alexnet-owt-7be5be79.pth"]
        table = tmp_path / "asset-table.json"
        table.write_text(json.dumps({
            "cifar10-python": {"url": mirror.url("/kriz/cifar-10-python.tar.gz"), "md5": hashlib.md5(archive).hexdigest(),
                               "size": len(archive)},
            "edm-cifar10-32x32-uncond-vp": {"url": mirror.url("/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl")},  # pinned on first download
            "alexnet": {"url": mirror.url("/models/alexnet-owt-7be5be79.pth"), "sha256": hashlib.sha256(backbone).hexdigest()},
        }))
        for key in ("http_proxy", "HTTP_PROXY", "PAGBENCH_LPIPS_BACKBONE"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("PAGBENCH_OFFLINE", "0")
        monkeypatch.setenv("PAGBENCH_DOWNLOAD_RETRY_DELAY", "0")
        monkeypatch.setenv(assets.OVERRIDE_ENV, str(table))
        output = tmp_path / "result.json"
        result = CliRunner().invoke(build_cli(), [
            "evaluate", "--model", "robustbench:Wong2020Fast", "--dataset", "cifar10", "--model-option", f"model_dir={robustbench_dir}",
            "--num-images", "4", "--batch-size", "4", "--no-progress", "--output", str(output), *flags], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        data = json.loads(output.read_text())
        config = data["config"]
        for name in ("accuracy", "score_cosine", "lpips_alignment", "on_manifold_fraction", "manifold_robustness_off"):
            assert data["metrics"][name]["n"] == 4, (name, data.get("unavailable"))
        assert data["metrics"]["manifold_robustness_off_on_ratio"]["value"] > 0
        assert set(data.get("unavailable", {})) <= {"signal_distractor_ratio"}
        # the reference code's pairing, on the default network, with its σ in the title
        assert (config["gradient"], config["score"], config["score_provider"], config["manifold_provider"]) == (
            "logit-sum", "unconditional", "edm", "score-jacobian")
        assert config["sigma"] == 0.05 and "σ=0.05" in result.output and "σ=None" not in result.output
        served = hashlib.sha256(network).hexdigest()
        assert config["provider_files"][0]["sha256"] == served
        assert "asset edm-cifar10-32x32-uncond-vp" in config["provider_files"][0]["location"]
        assert "TEST-ONLY asset table" in config["provider_files"][0]["location"]  # recorded in the result
        assert data["metric_settings"]["lpips_alignment"]["asset_table"].startswith("TEST-ONLY")
        assert config["dataset_config"]["asset_table"].startswith("TEST-ONLY")  # other images: other cache keys
        # the dropped connection was resumed with a Range request; the pickle was pinned on first download
        assert mirror.requests("/edm/pretrained/edm-cifar10-32x32-uncond-vp.pkl") == [None, f"bytes={len(network) // 2}-"]
        assert assets.pins()["edm-cifar10-32x32-uncond-vp"] == served
        # every file is in place, nothing half-stored; a second run needs no network at all
        stored = sorted(str(path.relative_to(assets.asset_root())) for path in assets.asset_root().rglob("*") if path.is_file())
        assert not [name for name in stored if name.endswith(".part")]
        requests = len(mirror.log)
        monkeypatch.setenv("PAGBENCH_OFFLINE", "1")
        verified = CliRunner().invoke(build_cli(), ["assets", "verify", "--dataset", "cifar10"])
        assert verified.exit_code == 0 and verified.output.count(": ok (sha256") == 3, verified.output
        assert len(mirror.log) == requests
    finally:
        mirror.stop()
