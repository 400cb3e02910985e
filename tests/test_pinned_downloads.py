"""Pinned downloads: files pagbench downloads are checked against a known hash before use.

Local files and fake downloads only (the fetch functions are monkeypatched; never the network)."""

import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import torch

from pagbench.files import pinned
from pagbench.files.paths import cache_dir
from pagbench.errors import MetricUnavailable, PagbenchError
from pagbench_plugins.datasets import cifar, files, mnist
from pagbench_plugins.diffusion import edm
from pagbench_plugins.metrics import lpips_alignment as lpips_metric

from .edm_pickle import write_edm_pickle


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def one_line(error):
    assert "\n" not in str(error.value)
    return str(error.value)


# ------------------------------------------------------------------------ the LPIPS backbone
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch's hub cache in a temporary folder; no PAGBENCH_LPIPS_BACKBONE; digests forgotten."""
    monkeypatch.delenv("PAGBENCH_LPIPS_BACKBONE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    pinned.forget()
    yield tmp_path / "hub" / "checkpoints" / lpips_metric.ALEXNET_FILE
    pinned.forget()


def fake_backbone(path, value=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": torch.full((2,), value)}, path)
    return path


def test_the_pin_is_the_hash_prefix_in_the_published_name():
    assert lpips_metric.ALEXNET_SHA256_PREFIX == "7be5be79"


def test_a_backbone_in_the_hub_cache_with_another_hash_is_refused(hub, monkeypatch):
    fake_backbone(hub)
    with pytest.raises(PagbenchError, match=r"LPIPS AlexNet backbone .* has SHA-256 .*not the pinned 7be5be79") as error:
        lpips_metric.check_backbone()
    assert str(hub) in one_line(error) and not isinstance(error.value, MetricUnavailable)  # an error naming the file, not "unavailable"
    monkeypatch.setattr(lpips_metric, "ALEXNET_SHA256_PREFIX", sha256(hub)[:8])
    lpips_metric.check_backbone()  # the pinned file is accepted


def test_the_verdict_is_cached_by_size_and_mtime(hub, monkeypatch):
    fake_backbone(hub, 1.0)
    monkeypatch.setattr(lpips_metric, "ALEXNET_SHA256_PREFIX", sha256(hub)[:8])
    lpips_metric.check_backbone()
    stat = hub.stat()
    data = bytearray(hub.read_bytes())
    data[-30] ^= 0xFF  # same size: only the mtime tells the change
    hub.write_bytes(bytes(data))
    os.utime(hub, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    pinned.forget()  # from disk too: <cache dir>/digests.json
    lpips_metric.check_backbone()  # not re-hashed: size and mtime unchanged
    assert any(str(hub.resolve()) in key for key in json.loads((pinned._store()).read_text()))
    assert sha256(hub)[:8] != lpips_metric.ALEXNET_SHA256_PREFIX
    os.utime(hub, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(PagbenchError, match="not the pinned"):
        lpips_metric.check_backbone()  # a new mtime: hashed again, and refused


def test_a_download_is_checked_and_a_wrong_one_deleted(hub, monkeypatch):
    monkeypatch.setenv("PAGBENCH_OFFLINE", "0")
    monkeypatch.setattr(lpips_metric, "_reachable", lambda: True)
    served = fake_backbone(hub.parent.parent / "served.pth", 2.0).read_bytes()
    fetched = []

    def fake_fetch(url, path):
        fetched.append(url)
        path.write_bytes(served)

    monkeypatch.setattr(lpips_metric, "_fetch", fake_fetch)
    target = lpips_metric.backbone_path()  # the alexnet asset's path (fetched there, not into the hub cache)
    assert target.parent.name == lpips_metric.ASSET
    with pytest.raises(PagbenchError, match="not the pinned 7be5be79"):
        lpips_metric.check_backbone()
    assert fetched == [lpips_metric.ALEXNET_URL] and not target.exists() and not hub.exists()  # never kept

    monkeypatch.setattr(lpips_metric, "ALEXNET_SHA256_PREFIX", hashlib.sha256(served).hexdigest()[:8])
    lpips_metric.check_backbone()
    assert target.exists() and len(fetched) == 2


def test_a_user_supplied_backbone_is_recorded_not_refused(tmp_path, monkeypatch):
    path = fake_backbone(tmp_path / "mine.pth", 3.0)
    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(path))
    lpips_metric.check_backbone()
    record = lpips_metric.backbone_record()
    assert record == {"backbone": str(path), "backbone_sha256": sha256(path), "backbone_pinned": False}


# ------------------------------------------------------------------------------------ EDM
def test_a_local_pickle_is_checked_against_its_pin(tmp_path):
    path = tmp_path / "net.pkl"
    path.write_bytes(b"\x80\x04" + b"x" * 100)
    digest = sha256(path)
    assert edm.read_source(str(path))[2] == digest  # no pin: hashed and returned
    assert edm.read_source(str(path), digest)[2] == digest
    assert edm.read_source(str(path), digest[:8].upper())[2] == digest  # a prefix of ≥ 8 hex digits, any case
    with pytest.raises(PagbenchError, match=r"net.pkl has SHA-256 .*not the pinned sha256=00000000") as error:
        edm.read_source(str(path), "0" * 64)
    one_line(error)
    for bad in ("xyz", "1234567", "a" * 65):
        with pytest.raises(PagbenchError, match="expected the file's SHA256 as 8 to 64 hex digits"):
            edm.read_source(str(path), bad)


def test_a_downloaded_pickle_is_checked_before_it_is_stored_and_its_hash_recorded(tmp_path, monkeypatch):
    from .asset_mirror import Mirror

    monkeypatch.setenv("PAGBENCH_OFFLINE", "0")
    write_edm_pickle(tmp_path / "served.pkl", label_dim=0)  # a class pagbench does not implement: needs trust
    payload = (tmp_path / "served.pkl").read_bytes()
    mirror = Mirror()
    try:
        mirror.files["/edm-tiny.pkl"] = payload
        url = mirror.url("/edm-tiny.pkl")
        with pytest.raises(PagbenchError, match=r"the download of http://127.0.0.1:\d+/edm-tiny.pkl has SHA-256 .*refusing"):
            edm.read_source(url, "f" * 64)
        assert not list(cache_dir().rglob("edm-tiny.pkl*"))  # nothing stored, not even a .part
        digest = hashlib.sha256(payload).hexdigest()
        with pytest.raises(PagbenchError, match="--trust-pickle"):  # read, pinned, recorded, then refused for trust
            edm.load_network_pickle(url, trust=False, sha256=digest)
        record = edm.source_record(url)
        assert record["location"] == url and record["sha256"] == digest and record["path"].endswith("edm-tiny.pkl")
        stored = next(cache_dir().rglob("edm-tiny.pkl"))
        stored.write_bytes(payload + b"tampered")
        with pytest.raises(PagbenchError, match="not the pinned"):  # the stored download is checked on every read
            edm.read_source(url, digest)
        assert mirror.requests("/edm-tiny.pkl") == [None, None]
    finally:
        mirror.stop()


def test_the_edm_provider_pins_and_records_its_files(tmp_path, synthetic):
    from pagbench.extensions.registry import score_providers
    from pagbench.results.documents import _provider_files

    path = tmp_path / "edm.pkl"
    write_edm_pickle(path, label_dim=10)
    digest = sha256(path)
    factory = score_providers().get("edm").factory
    scores = factory(synthetic, {"path": str(path), "trust_pickle": "1", "sha256": digest[:12]})
    (record,) = _provider_files(scores)
    assert {key: record[key] for key in ("location", "path", "sha256")} == {"location": str(path), "path": str(path), "sha256": digest}
    assert record["loaded_with"].startswith("the file's embedded code")  # trusted: not a class pagbench implements
    assert scores.fingerprint == "edm:" + digest[:16]
    with pytest.raises(PagbenchError, match="not the pinned sha256=deadbeef"):
        factory(synthetic, {"path": str(path), "trust_pickle": "1", "sha256": "deadbeef"})


def test_an_edm_result_records_the_file_s_hash(tmp_path):
    import pagbench

    path = tmp_path / "edm.pkl"
    write_edm_pickle(path, label_dim=10)
    result = pagbench.evaluate("bayes", num_images=4, score_provider="edm", gradient="logit", metrics=("score_cosine",),
                               provider_options={"path": str(path), "trust_pickle": "1"})
    (record,) = result["config"]["provider_files"]
    assert {key: record[key] for key in ("location", "path", "sha256")} == {"location": str(path), "path": str(path), "sha256": sha256(path)}
    assert "--trust-pickle" in record["loaded_with"]
    assert result["config"]["score_provider_fingerprint"] == "edm:" + sha256(path)[:16]


# ------------------------------------------------------------------------------- datasets
def write_batches(directory):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in cifar.FILES:
        entry = {b"labels": rng.integers(0, 10, 2).tolist(), b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8)}
        with open(directory / name, "wb") as stream:
            pickle.dump(entry, stream, protocol=2)
    return directory


def test_the_cifar_archive_md5_is_torchvision_s():
    from torchvision.datasets import CIFAR10

    assert cifar.MD5 == CIFAR10.tgz_md5
    assert cifar.FILE_MD5 == dict(CIFAR10.train_list + CIFAR10.test_list)
    from torchvision.datasets import MNIST

    assert mnist.FILE_MD5 == dict(MNIST.resources)


def test_downloaded_cifar_batches_are_checked_on_every_use(monkeypatch):
    pinned.forget()
    directory = write_batches(files.default_root("cifar10") / "cifar-10-batches-py")
    with pytest.raises(PagbenchError, match=r"dataset 'cifar10': downloaded file .*data_batch_1 has MD5 .*delete") as error:
        cifar.locate(None)
    one_line(error)
    monkeypatch.setattr(cifar, "FILE_MD5", {name: hashlib.md5((directory / name).read_bytes()).hexdigest() for name in cifar.FILES})
    assert cifar.locate(None) == directory


def test_a_fake_cifar_download_with_the_wrong_files_is_refused(tmp_path, monkeypatch):
    """An archive that passed its own check but holds other batches is refused on extraction."""
    from pagbench.files import assets

    from .asset_mirror import cifar_archive

    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(cifar_archive())
    seen = []
    monkeypatch.setattr(assets, "resolve", lambda entry, root=None, **_: seen.append(entry.name) or archive)
    with pytest.raises(PagbenchError, match="extracted file .*data_batch_1 has MD5 .*not the pinned"):
        cifar.locate(None)
    assert seen == ["cifar10-python"]


def test_user_supplied_dataset_files_are_not_hash_checked(tmp_path):
    directory = write_batches(tmp_path / "mine")
    assert cifar.locate(str(directory)) == directory  # format checks only, no MD5 (users keep their own copies)


def test_downloaded_mnist_archives_are_checked(monkeypatch):
    import gzip

    pinned.forget()
    directory = files.default_root("mnist") / "MNIST" / "raw"
    directory.mkdir(parents=True)
    for name in mnist.FILE_MD5:
        with gzip.open(directory / name, "wb") as stream:
            stream.write(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(PagbenchError, match="dataset 'mnist-distractor': downloaded file .*idx.-ubyte.gz has MD5"):
        mnist.locate(None)
    monkeypatch.setattr(mnist, "FILE_MD5", {name: hashlib.md5((directory / name).read_bytes()).hexdigest() for name in mnist.FILE_MD5})
    assert mnist.locate(None) == directory
