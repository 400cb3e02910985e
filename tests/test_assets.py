"""Assets: declarations, the downloader's fault cases against a server on 127.0.0.1, pins, the
test-only table, and ``pagbench assets list/fetch/verify/manifest``.

Every fault case asserts what is left on disk: never a file at the target path that is not the
complete, checked download."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagbench import hookimpl
from pagbench.files import assets
from pagbench.files.assets import AssetEntry
from pagbench.errors import MetricUnavailable, PagbenchError

from .asset_mirror import Mirror

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = b"\x80\x04" + hashlib.sha256(b"seed").digest() * 20000  # 640 KB, starts like a pickle
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def mirror():
    server = Mirror()
    server.files["/net.pkl"] = PAYLOAD
    yield server
    server.stop()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "assets"


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.setenv("PAGBENCH_OFFLINE", "0")
    monkeypatch.setenv("PAGBENCH_DOWNLOAD_RETRY_DELAY", "0")  # no waiting between attempts
    monkeypatch.delenv(assets.OVERRIDE_ENV, raising=False)
    for key in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(key, raising=False)


def entry(mirror, **changes):
    fields = dict(name="test-net", filename="net.pkl", url=mirror.url("/net.pkl"), size=len(PAYLOAD), size_exact=True, sha256=SHA)
    fields.update(changes)
    return AssetEntry(**fields)


def files_under(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []


TARGET = "test-net/net.pkl"
PART = "test-net/net.pkl.part"


# ------------------------------------------------------------------------------ the downloader
def test_a_clean_download_is_moved_into_place_with_its_hash(mirror, root):
    path = assets.download(entry(mirror), root, progress=False)
    assert path == root / TARGET and path.read_bytes() == PAYLOAD
    assert files_under(root) == [TARGET]
    assert mirror.requests("/net.pkl") == [None]
    assert assets.status(entry(mirror), root) == "present"


def test_404_is_final_and_leaves_nothing(mirror, root):
    with pytest.raises(PagbenchError, match="HTTP 404") as error:
        assets.download(entry(mirror, url=mirror.url("/gone.pkl")), root, progress=False)
    assert "\n" not in str(error.value)
    assert files_under(root) == [] and len(mirror.requests("/gone.pkl")) == 1  # not retried


def test_500_then_success_is_retried(mirror, root):
    mirror.faults["/net.pkl"] = ["500", "500"]
    path = assets.download(entry(mirror), root, progress=False, retry_delay=0)
    assert path.read_bytes() == PAYLOAD and files_under(root) == [TARGET]
    assert mirror.requests("/net.pkl") == [None, None, None]


def test_a_dropped_connection_is_resumed_with_a_range_request(mirror, root):
    mirror.faults["/net.pkl"] = ["drop"]
    ranges = []
    path = assets.download(entry(mirror), root, progress=False, ranges=ranges)
    half = len(PAYLOAD) // 2
    assert ranges == [half] and mirror.requests("/net.pkl") == [None, f"bytes={half}-"]
    assert path.read_bytes() == PAYLOAD and files_under(root) == [TARGET]


def test_a_truncated_body_leaves_only_a_resumable_part(mirror, root):
    mirror.faults["/net.pkl"] = ["drop"] * 3
    with pytest.raises(PagbenchError, match=r"failed after 3 attempts .*connection.*rerun `pagbench assets fetch test-net`"):
        assets.download(entry(mirror), root, progress=False, retries=2)
    assert files_under(root) == [PART]  # never the target
    assert 0 < (root / PART).stat().st_size < len(PAYLOAD)
    assert assets.status(entry(mirror), root) == "partial"
    path = assets.download(entry(mirror), root, progress=False)  # the rerun resumes and completes
    assert path.read_bytes() == PAYLOAD and files_under(root) == [TARGET]
    assert mirror.requests("/net.pkl")[-1].startswith("bytes=")


def test_a_server_that_ignores_range_restarts_the_part_from_the_beginning(mirror, root):
    (root / PART).parent.mkdir(parents=True)
    (root / PART).write_bytes(b"\x00" * 1000)  # a stale partial download
    mirror.faults["/net.pkl"] = ["ignore-range"]
    path = assets.download(entry(mirror), root, progress=False)
    assert mirror.requests("/net.pkl") == ["bytes=1000-"] and path.read_bytes() == PAYLOAD and files_under(root) == [TARGET]


def test_a_stale_part_longer_than_the_file_is_discarded(mirror, root):
    (root / PART).parent.mkdir(parents=True)
    (root / PART).write_bytes(b"\x00" * (len(PAYLOAD) + 10))
    path = assets.download(entry(mirror, size=None, size_exact=False), root, progress=False)
    assert mirror.requests("/net.pkl") == [f"bytes={len(PAYLOAD) + 10}-", None]  # 416, then afresh
    assert path.read_bytes() == PAYLOAD and files_under(root) == [TARGET]


@pytest.mark.parametrize("fault", ["html", "html-body"])
def test_an_html_page_served_as_a_pickle_is_refused(mirror, root, fault):
    mirror.faults["/net.pkl"] = [fault]
    with pytest.raises(PagbenchError, match="HTML page"):
        assets.download(entry(mirror, sha256=None, size=None, size_exact=False), root, progress=False)
    assert files_under(root) == []
    assert "test-net" not in assets.pins()  # nothing pinned either


def test_a_wrong_hash_is_refused_and_nothing_kept(mirror, root):
    with pytest.raises(PagbenchError, match=r"the download of http://127.0.0.1:\d+/net.pkl has SHA-256 .*not the published 00000000"):
        assets.download(entry(mirror, sha256="0" * 64), root, progress=False)
    assert files_under(root) == []


def test_a_wrong_announced_size_is_refused(mirror, root):
    with pytest.raises(PagbenchError, match="announces .* bytes, expected"):
        assets.download(entry(mirror, size=len(PAYLOAD) + 1), root, progress=False)
    assert files_under(root) == []


def test_without_a_published_hash_the_first_download_is_pinned(mirror, root, capsys):
    unpinned = entry(mirror, sha256=None, size=None, size_exact=False)
    assert assets.expected_hash(unpinned) is None
    assets.download(unpinned, root, progress=False)
    assert assets.pins()["test-net"] == SHA and f"pinned test-net: SHA-256 {SHA}" in capsys.readouterr().err
    assert assets.expected_hash(unpinned) == ("sha256", SHA, "pinned")
    (root / TARGET).unlink()
    mirror.files["/net.pkl"] = PAYLOAD[:-1] + b"!"  # the server now serves another file
    with pytest.raises(PagbenchError, match="not the pinned"):
        assets.download(unpinned, root, progress=False)
    assert files_under(root) == []
    (root / TARGET).parent.mkdir(parents=True, exist_ok=True)
    (root / TARGET).write_bytes(mirror.files["/net.pkl"])  # a copy placed by hand must match the pin too
    assert assets.status(unpinned, root) == "damaged"
    with pytest.raises(PagbenchError, match="not the pinned"):
        assets.verify(unpinned, root)


def test_an_unreachable_server_makes_the_asset_unavailable_not_an_error(mirror, root):
    with pytest.raises(MetricUnavailable, match=r"HTTP 404.*run `pagbench assets fetch test-net`"):
        assets.resolve(entry(mirror, url=mirror.url("/gone.pkl")), root, progress=False)
    dead = entry(mirror, url="http://127.0.0.1:1/net.pkl")  # nothing listens there: connection refused, retried, given up
    with pytest.raises(MetricUnavailable, match=r"127.0.0.1:1/net.pkl failed after 5 attempts.*run `pagbench assets fetch test-net`"):
        assets.resolve(dead, root, progress=False)
    assert files_under(root) == []
    mirror.faults["/net.pkl"] = ["html"]
    with pytest.raises(PagbenchError, match="HTML page") as error:  # integrity: an error, not "unavailable"
        assets.resolve(entry(mirror), root, progress=False)
    assert not isinstance(error.value, MetricUnavailable)


def test_resolve_offline_names_the_fetch_command(mirror, root, monkeypatch):
    monkeypatch.setenv("PAGBENCH_OFFLINE", "1")
    with pytest.raises(MetricUnavailable, match="run `pagbench assets fetch test-net`"):
        assets.resolve(entry(mirror), root)
    assert mirror.log == []


# ------------------------------------------------------------------------- the test-only table
def test_the_override_table_is_announced_and_cannot_weaken_real_pins(mirror, tmp_path, monkeypatch, capsys):
    real = assets.get("edm-cifar10-32x32-uncond-vp")
    real_path = assets.local_path(real)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({real.name: {"url": mirror.url("/net.pkl"), "sha256": SHA}}))
    monkeypatch.setenv(assets.OVERRIDE_ENV, str(table))
    assets._ANNOUNCED.clear()
    test = assets.get(real.name)
    assert "TEST-ONLY asset table" in capsys.readouterr().err
    assert test.url == mirror.url("/net.pkl") and test.sha256 == SHA
    path = assets.download(test, progress=False)
    assert path != real_path and assets.OVERRIDE_FOLDER in path.parts
    assert assets.describe(test)["asset_table"].startswith("TEST-ONLY")
    monkeypatch.delenv(assets.OVERRIDE_ENV)
    assert not real_path.exists() and assets.status(real) == "missing"  # the real asset never sees the test file
    assert assets.get(real.name).url.startswith("https://nvlabs-fi-cdn.nvidia.com/") and real.name not in assets.pins()


def test_a_malformed_override_table_is_one_line(tmp_path, monkeypatch):
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"alexnet": {"url": "http://127.0.0.1/x", "trust": True}}))
    monkeypatch.setenv(assets.OVERRIDE_ENV, str(table))
    with pytest.raises(PagbenchError, match="sets trust; only url, sha256, md5, size"):
        assets.registered()


# ---------------------------------------------------------------------------- declarations
def test_the_real_world_declarations():
    table = assets.registered()
    cifar = table["cifar10-python"]
    assert cifar.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert (cifar.md5, cifar.size, cifar.size_exact) == ("c58f30108f718f92721af3b95e74349a", 170_498_071, True)
    from pagbench_plugins.datasets import cifar as cifar_module

    assert cifar.md5 == cifar_module.MD5
    assert table["alexnet"].url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" and table["alexnet"].sha256 == "7be5be79"
    for name in ("edm-cifar10-32x32-uncond-vp", "edm-imagenet-64x64-cond-adm"):
        assert table[name].url == f"https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/{name}.pkl"
        assert table[name].published_hash is None and not table[name].size_exact  # pinned on first download; size approximate
    assert table["imagenet64-val"].url is None and "image-net.org" in table["imagenet64-val"].manual
    from torchvision.datasets import MNIST

    assert {entry.filename: entry.md5 for entry in table.values() if entry.folder == "mnist"} == dict(MNIST.resources)
    assert assets.for_provider("edm", "cifar10").name == "edm-cifar10-32x32-uncond-vp"
    assert assets.for_provider("edm", "imagenet").name == assets.for_provider("edm", "imagenet64").name == "edm-imagenet-64x64-cond-adm"
    assert {entry.name for entry in assets.select("cifar10")} == {"cifar10-python", "edm-cifar10-32x32-uncond-vp", "alexnet"}
    assert {entry.name for entry in assets.select("cifar10", ["accuracy"])} == {"cifar10-python"}


def test_a_plugin_declares_an_asset_through_the_hook(register_plugin, mirror, root):
    class Plugin:
        @hookimpl
        def register_assets(self, register):
            register(AssetEntry(name="plugin-file", filename="f.bin", url=mirror.url("/net.pkl"), sha256=SHA, datasets=("synthetic",)))

    register_plugin(Plugin(), name="asset-plugin")
    assert assets.get("plugin-file").sha256 == SHA
    assert [entry.name for entry in assets.select("synthetic")][-1:] == ["plugin-file"]
    with pytest.raises(PagbenchError, match="unknown asset 'plugin-fil'; did you mean plugin-file"):
        assets.get("plugin-fil")


# -------------------------------------------------------------------------------- the CLI
def cli(*arguments):
    from pagbench.cli import build_cli

    return CliRunner().invoke(build_cli(), ["assets", *arguments])


def test_cli_list_fetch_verify_and_manifest(mirror, register_plugin, root):
    class Plugin:
        @hookimpl
        def register_assets(self, register):
            register(AssetEntry(name="cli-net", filename="net.pkl", url=mirror.url("/net.pkl"), size=len(PAYLOAD),
                                size_exact=True, sha256=SHA, datasets=("synthetic",), description="a test network"))

    register_plugin(Plugin(), name="cli-assets")
    listed = cli("list", "--root", str(root), "cli-net")
    assert listed.exit_code == 0 and "cli-net" in listed.output and "missing" in listed.output
    fetched = cli("fetch", "--root", str(root), "--no-progress", "cli-net")
    assert fetched.exit_code == 0, fetched.output
    assert (root / "cli-net" / "net.pkl").read_bytes() == PAYLOAD
    assert "present" in cli("list", "--root", str(root), "cli-net").output
    assert cli("verify", "--root", str(root), "cli-net").exit_code == 0
    manifest = cli("manifest", "--root", str(root), "cli-net").output
    assert f"echo '{SHA}  net.pkl' | sha256sum -c -" in manifest
    assert f"cp net.pkl {root / 'cli-net' / 'net.pkl'}" in manifest and "export PAGBENCH_ASSETS_DIR=" in manifest
    assert f"curl -L --fail -C - -o net.pkl {mirror.url('/net.pkl')}" in manifest
    data = bytearray((root / "cli-net" / "net.pkl").read_bytes())
    data[100] ^= 0xFF
    (root / "cli-net" / "net.pkl").write_bytes(bytes(data))
    verified = cli("verify", "--root", str(root), "cli-net")
    assert verified.exit_code == 1 and "DAMAGED" in verified.output
    assert "damaged" in cli("list", "--root", str(root), "cli-net").output


def test_an_unwritable_root_and_unknown_names_are_one_line(mirror, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PagbenchError, match="cannot create"):
        assets.download(entry(mirror), blocker / "assets", progress=False)
    result = cli("list", "--metric", "lpips_alignmnt")
    assert result.exit_code == 2 and "unknown metric 'lpips_alignmnt'; did you mean lpips_alignment" in result.output


def test_cli_manual_assets_are_listed_with_instructions(root):
    result = cli("fetch", "--root", str(root), "--no-progress", "imagenet64-val")
    assert result.exit_code == 1 and "manual only" in result.output and "image-net.org" in result.output
    assert "# manual only: log in at https://image-net.org" in cli("manifest", "--dataset", "imagenet64").output


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_cli_fetch_interrupted_leaves_only_a_part_and_a_rerun_completes(mirror, tmp_path, signum, code, word):
    """A slow server and Ctrl-C (or SIGTERM) to ``pagbench assets fetch``: exit 130 (143), only the
    ``.part``; the rerun resumes it with a Range request."""
    from .conftest import BUILTINS

    mirror.faults["/net.pkl"] = ["stall"]
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"edm-cifar10-32x32-uncond-vp": {"url": mirror.url("/net.pkl"), "sha256": SHA, "size": len(PAYLOAD)}}))
    root = tmp_path / "assets"
    environment = {**os.environ, "PAGBENCH_CACHE_DIR": str(tmp_path / "cache"), "PAGBENCH_LOAD_PLUGINS": BUILTINS,
                   "PAGBENCH_OFFLINE": "0", "PAGBENCH_ASSETS_DIR": str(root), assets.OVERRIDE_ENV: str(table),
                   "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PAGBENCH_DOWNLOAD_RETRY_DELAY": "0"}
    command = [sys.executable, "-m", "pagbench", "assets", "fetch", "--no-progress", "edm-cifar10-32x32-uncond-vp"]
    part = root / assets.OVERRIDE_FOLDER / "edm-cifar10-32x32-uncond-vp" / "edm-cifar10-32x32-uncond-vp.pkl.part"
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (part.is_file() and part.stat().st_size > 0):  # the first block is on disk
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)  # polling interval, not an assertion
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code and word in stderr and "Traceback" not in stderr
    assert files_under(root) == [str(part.relative_to(root))] and part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size
    mirror.release.set()
    rerun = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert files_under(root) == [str(part.relative_to(root))[: -len(".part")]]
    assert mirror.requests("/net.pkl")[-1] == f"bytes={kept}-"  # resumed where the first run stopped


def test_every_missing_file_message_names_the_fetch_command(monkeypatch, synthetic, tmp_path):
    """Offline with nothing fetched: the dataset, the edm provider and the LPIPS backbone each say
    which ``pagbench assets fetch`` fixes them."""
    from pagbench.extensions.registry import datasets, score_providers
    from pagbench_plugins.metrics import lpips_alignment

    monkeypatch.setenv("PAGBENCH_OFFLINE", "1")
    monkeypatch.delenv("PAGBENCH_LPIPS_BACKBONE", raising=False)
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MetricUnavailable, match=r"dataset 'cifar10': .*`pagbench assets fetch cifar10-python`"):
        datasets().get("cifar10").factory(None)
    with pytest.raises(MetricUnavailable, match=r"`pagbench assets fetch --dataset mnist-distractor`"):
        datasets().get("mnist-distractor").factory(None)
    cifar_like = type("Cifar", (), {"name": "cifar10", "num_classes": 10, "image_shape": (3, 32, 32)})()
    with pytest.raises(MetricUnavailable, match=r"edm score provider: .*`pagbench assets fetch edm-cifar10-32x32-uncond-vp`"):
        score_providers().get("edm").factory(cifar_like, {})
    with pytest.raises(MetricUnavailable, match="no default network for 'synthetic'.*asset=NAME"):
        score_providers().get("edm").factory(synthetic, {})
    with pytest.raises(MetricUnavailable, match="`pagbench assets fetch alexnet`"):
        lpips_alignment.check_backbone()


def test_per_dataset_defaults_come_from_declarations_and_explicit_flags_win():
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.extensions.registry import datasets

    assert EvaluationOptions(model="m", dataset="cifar10").gradient == "logit-sum"  # ↔ the unconditional network
    assert EvaluationOptions(model="m", dataset="imagenet64").gradient == "logit"  # ↔ the class-conditional one
    assert EvaluationOptions(model="m", dataset="imagenet").gradient == "logit"
    assert EvaluationOptions(model="m").gradient == "logprob"  # synthetic: the Bayes model scores exactly 1
    assert EvaluationOptions(model="m", dataset="cifar10", gradient="logprob").gradient == "logprob"
    cifar = datasets().get("cifar10")
    assert (cifar.default_score_provider, cifar.default_manifold_provider) == ("edm", "score-jacobian")
