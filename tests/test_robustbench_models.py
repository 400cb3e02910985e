"""robustbench:NAME models offline: weights files in RobustBench's exact on-disk layout, written
here with random weights (``MODEL_DIR/cifar10/Linf/NAME.pt``, saved with torch.save and keyed as
``robustbench.utils.load_model`` expects), compared with RobustBench's own ``load_model`` on the
same [0,1] images (logits and input gradients); model information read from files in
RobustBench's model_info format (written here with made-up values); bad input; import laziness.

The comparison tests need the robustbench package (``pip install 'pagbench[robustbench]' &&
pip install --no-deps robustbench==1.1.1``) and are skipped without it."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pagbench.errors import PagbenchError
from pagbench.models.loading import load_model

NAMES = ("Carmon2019Unlabeled", "Wong2020Fast")  # WideResNet-28-10 (sub_block1), PreActResNet-18
#: Made-up model information in RobustBench's model_info format (not RobustBench's values).
MADE_UP = {
    "Carmon2019Unlabeled": {
        "link": "https://example.org/made-up-carmon", "name": "A Made-Up Study of Unlabelled Images", "authors": "A. Nobody, B. Someone",
        "additional_data": True, "number_forward_passes": 1, "dataset": "cifar10", "venue": "Imaginary Workshop 2031",
        "architecture": "Made-Up WRN-28-10", "eps": "8/255", "clean_acc": "88.50", "reported": "60.00", "autoattack_acc": "57.25",
        "external": "", "footnote": "",
    },
    "Wong2020Fast": {
        "link": "https://example.org/made-up-wong", "name": "A Made-Up Paper on Quick Training", "authors": "C. Anyone",
        "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10", "venue": "N/A",
        "architecture": "Made-Up PreActResNet-18", "eps": "8/255", "clean_acc": "81.25", "reported": "45.00", "autoattack_acc": "40.50",
        "external": "39.75", "footnote": "Made up for pagbench's tests.",
    },
}


# ------------------------------------------------------------------------------------------ helpers
def write_model_info(root, key, entry):
    """``root/DATASET/THREAT/NAME.json`` (``key`` = DATASET/THREAT/NAME), as RobustBench writes them."""
    path = root.joinpath(*key.split("/")).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, indent=2))
    return path


def write_cifar(directory, count=4):
    """CIFAR-10's python batches (the layout pagbench's cifar10 loader reads), random images."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, count).tolist(),
                 b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * count}
        with open(directory / name, "wb") as stream:
            pickle.dump(entry, stream, protocol=2)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root / "cifar-10-batches-py")
    return root


@pytest.fixture(scope="module")
def cifar10(cifar_root):
    from pagbench.extensions.registry import datasets

    return datasets().get("cifar10").factory(str(cifar_root))


def relative_difference(ours, theirs) -> float:
    """max |ours − theirs| / max |theirs| (theirs: RobustBench's own output)."""
    ours, theirs = ours.detach().double(), theirs.detach().double()
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.fixture(scope="module")
def robustbench():
    from pagbench_plugins.robustbench_models.build import import_robustbench

    if importlib.util.find_spec("robustbench") is None:
        pytest.skip("robustbench is not installed (pip install 'pagbench[robustbench]' && pip install --no-deps robustbench==1.1.1)")
    try:
        utils, model_dicts, version = import_robustbench()
    except PagbenchError as error:
        pytest.skip(f"robustbench is not importable: {error}")
    return utils, model_dicts


def zoo_network(model_dicts, name, seed):
    """RobustBench's network for ``name`` with random weights and non-trivial BatchNorm statistics."""
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(seed)
    network = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][name]["model"]()
    with torch.no_grad():
        for key, buffer in network.named_buffers():
            if key.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif key.endswith("running_mean"):
                buffer.normal_(0.0, 0.1)
    return network.eval()


def save_in_robustbench_layout(network, name, path):
    """The layouts of RobustBench's files: Carmon2019Unlabeled {'state_dict': {'module.…'}} (a
    DataParallel model); Wong2020Fast a bare state dict without the mu/sigma buffers."""
    state = network.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "Wong2020Fast":
        torch.save({key: value for key, value in state.items() if key not in ("mu", "sigma")}, path)
    else:
        torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 100}, path)


@pytest.fixture(scope="module")
def model_dir(robustbench, tmp_path_factory):
    """A RobustBench model directory holding both models' files (written once per module)."""
    _, model_dicts = robustbench
    root = tmp_path_factory.mktemp("robustbench-models")
    for seed, name in enumerate(NAMES):
        save_in_robustbench_layout(zoo_network(model_dicts, name, seed), name, root / "cifar10" / "Linf" / f"{name}.pt")
        write_model_info(root / "model_info", f"cifar10/Linf/{name}", MADE_UP[name])
    return root


# ---------------------------------------------------------------------- against RobustBench's own
@pytest.mark.parametrize("name", NAMES)
def test_logits_and_gradients_equal_robustbench_load_model(name, robustbench, model_dir, cifar10):
    from pagbench.evaluation.gradients import input_gradients

    utils, _ = robustbench
    loaded = load_model(f"robustbench:{name}", cifar10, "cpu", {"model_dir": str(model_dir)})
    reference = utils.load_model(name, model_dir=str(model_dir), dataset="cifar10", threat_model="Linf")

    torch.manual_seed(3)
    images = torch.rand(3, 3, 32, 32)
    images[0, :, :4] = 0.0  # saturated pixels: nothing clamps them on either side
    labels = torch.tensor([1, 4, 9])
    logits, gradient = input_gradients(loaded.module, images, labels, "logprob")

    inputs = images.clone().requires_grad_(True)
    theirs = reference(inputs)
    torch.log_softmax(theirs, dim=1).gather(1, labels[:, None]).sum().backward()

    logit_difference = relative_difference(logits, theirs)
    gradient_difference = relative_difference(gradient, inputs.grad)
    print(f"{name}: max relative difference logits {logit_difference:.3g}, gradients {gradient_difference:.3g}")
    assert logit_difference <= 1e-5 and gradient_difference <= 1e-5
    assert gradient.shape == images.shape and not loaded.module.training
    assert all(not p.requires_grad for p in loaded.module.parameters())

    card = loaded.card
    recorded = card.provenance["robustbench"]
    assert (card.dataset, recorded["threat_model"], recorded["dataset_from"]) == ("cifar10", "Linf", "the evaluation dataset 'cifar10'")
    made_up = MADE_UP[name]
    assert recorded["clean_accuracy"] == pytest.approx(float(made_up["clean_acc"]) / 100)
    assert recorded["robust_accuracy"] == pytest.approx(float(made_up["external"] or made_up["autoattack_acc"]) / 100)
    assert recorded["info_source"] == "model directory" and recorded["info_file"].endswith(f"model_info/cifar10/Linf/{name}.json")
    assert card.strength == pytest.approx(8 / 255) and card.regime == "adversarial"
    assert card.architecture == made_up["architecture"] and made_up["name"] in card.description
    assert card.provenance["input"]["done_by_pagbench"].startswith("nothing")
    assert card.provenance["files"][0]["sha256"] and card.provenance["weights"].startswith("model directory")


def test_wong2020fast_missing_mu_sigma_tolerated_as_robustbench_does(robustbench, model_dir, cifar10):
    loaded = load_model("robustbench:cifar10/Linf/Wong2020Fast", cifar10, "cpu", {"model_dir": str(model_dir)})
    fit = loaded.card.provenance["fit"]
    assert fit["strict"] is False and set(fit["tolerated_missing"]) == {"mu", "sigma"}
    assert fit["tolerated_missing"]["mu"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert loaded.card.provenance["input"]["normalization_inside_model"]["sigma"] == pytest.approx([0.2471, 0.2435, 0.2616])
    recorded = loaded.card.provenance["robustbench"]
    assert recorded["architecture"] == "Made-Up PreActResNet-18" and recorded["clean_accuracy"] == pytest.approx(0.8125)
    assert recorded["robust_accuracy"] == pytest.approx(0.3975) and recorded["robust_accuracy_field"] == "external"
    assert recorded["autoattack_accuracy"] == pytest.approx(0.405) and recorded["eps_text"] == "8/255"

    carmon = load_model("robustbench:Carmon2019Unlabeled", cifar10, "cpu", {"model_dir": str(model_dir)})
    fit = carmon.card.provenance["fit"]
    assert fit["strict"] is True and fit["stripped_prefixes"] == ["module."] and carmon.card.provenance["files"][0]["checkpoint_keys"] == ["state_dict"]
    assert carmon.card.provenance["input"]["normalization_inside_model"].startswith("none found")


def test_weights_file_offline(robustbench, model_dir, cifar10):
    path = model_dir / "cifar10" / "Linf" / "Wong2020Fast.pt"
    loaded = load_model("robustbench:Wong2020Fast", cifar10, "cpu", {"weights": str(path), "threat_model": "linf"})
    assert loaded.card.provenance["weights"] == "--weights" and "model_dir" not in loaded.card.provenance
    # no model information anywhere (the default model directory has none, offline): evaluated all the same
    recorded = loaded.card.provenance["robustbench"]
    assert recorded["info_source"] == "none: pass --model-option model_info=DIR (RobustBench's model_info folder) or run online"
    assert "clean_accuracy" not in recorded and loaded.card.strength is None
    assert loaded.card.architecture == type(loaded.module).__name__


def test_model_info_option_comes_first(robustbench, model_dir, cifar10, tmp_path):
    entry = dict(MADE_UP["Wong2020Fast"], clean_acc="77.70", external="", autoattack_acc="33.30", eps="0.031", architecture="Other")
    checkout = tmp_path / "robustbench-checkout"
    path = write_model_info(checkout / "model_info", "cifar10/Linf/Wong2020Fast", entry)
    for given in (checkout / "model_info", checkout):  # the model_info folder, or the checkout holding it
        loaded = load_model("robustbench:Wong2020Fast", cifar10, "cpu", {"model_dir": str(model_dir), "model_info": str(given)})
        recorded = loaded.card.provenance["robustbench"]
        assert recorded["info_source"] == "--model-option model_info" and recorded["info_file"] == str(path.resolve())
        assert recorded["clean_accuracy"] == pytest.approx(0.777) and recorded["robust_accuracy"] == pytest.approx(0.333)
        assert loaded.card.strength == pytest.approx(0.031) and loaded.card.architecture == "Other"


def test_malformed_model_info_fails_in_one_line(robustbench, model_dir, cifar10, tmp_path):
    path = tmp_path / "cifar10" / "Linf" / "Wong2020Fast.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "Broken", "clean_acc": "81.0",')
    with pytest.raises(PagbenchError, match=f"model information file {path} is not valid JSON") as caught:
        load_model("robustbench:Wong2020Fast", cifar10, "cpu", {"model_dir": str(model_dir), "model_info": str(tmp_path)})
    assert "\n" not in str(caught.value)


def test_offline_without_the_file_names_the_path_expected(robustbench, cifar10, tmp_path):
    expected = tmp_path / "cifar10" / "Linf" / "Carmon2019Unlabeled.pt"
    with pytest.raises(PagbenchError, match=f"needs its weights file at {expected} and PAGBENCH_OFFLINE is set"):
        load_model("robustbench:Carmon2019Unlabeled", cifar10, "cpu", {"model_dir": str(tmp_path)})
    with pytest.raises(PagbenchError, match=r"robustbench.*Carmon2019Unlabeled\.pt"):
        load_model("robustbench:Carmon2019Unlabeled", cifar10, "cpu", {})  # default: pagbench's cache


def test_unknown_names_suggest_close_ones(robustbench, cifar10):
    with pytest.raises(PagbenchError, match="unknown RobustBench cifar10/Linf model 'Carmon2019Unlabelled'; did you mean robustbench:cifar10/Linf/Carmon2019Unlabeled"):
        load_model("robustbench:Carmon2019Unlabelled", cifar10, "cpu", {})
    with pytest.raises(PagbenchError, match="no cifar10/L2 model 'Carmon2019Unlabeled'.*it has robustbench:cifar10/Linf/Carmon2019Unlabeled"):
        load_model("robustbench:L2/Carmon2019Unlabeled", cifar10, "cpu", {})


def test_mismatched_unreadable_and_pickled_files_fail_in_one_line(robustbench, model_dir, cifar10, tmp_path):
    wong = model_dir / "cifar10" / "Linf" / "Wong2020Fast.pt"
    with pytest.raises(PagbenchError, match=r"does not fit RobustBench's cifar10/Linf/Carmon2019Unlabeled \(WideResNet\): \d+ missing keys.*is it the right model's file\?"):
        load_model("robustbench:Carmon2019Unlabeled", cifar10, "cpu", {"weights": str(wong)})
    page = tmp_path / "page.pt"
    page.write_text("<!DOCTYPE html><html>Google Drive - quota exceeded</html>")
    with pytest.raises(PagbenchError, match="is an HTML page") as caught:
        load_model("robustbench:Wong2020Fast", cifar10, "cpu", {"weights": str(page)})
    assert "\n" not in str(caught.value)
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    with pytest.raises(PagbenchError, match="holds pickled Python objects.*--trust-checkpoint"):
        load_model("robustbench:Wong2020Fast", cifar10, "cpu", {"weights": str(whole)})


def test_robustbench_import_leaves_no_stand_ins_behind(robustbench):
    import robustbench.loaders

    assert "autoattack" not in sys.modules or sys.modules["autoattack"].__name__ == "autoattack"
    assert callable(robustbench.loaders.pkg_resources.resource_filename)


def test_cli_end_to_end_on_cifar10_files(robustbench, model_dir, cifar_root, tmp_path):
    from pagbench.cli import build_cli

    output = tmp_path / "wong.json"
    result = CliRunner().invoke(
        build_cli(),
        ["evaluate", "--model", "robustbench:Wong2020Fast", "--dataset", "cifar10", "--data-root", str(cifar_root),
         "--model-option", f"model_dir={model_dir}", "--metric", "accuracy", "--num-images", "4", "--batch-size", "2",
         "--no-progress", "--output", str(output)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    card = data["config"]["model_card"]
    assert card["architecture"] == "Made-Up PreActResNet-18" and card["provenance"]["robustbench"]["robust_accuracy"] == pytest.approx(0.3975)
    assert data["metrics"]["accuracy"]["n"] == 4


def test_cli_bad_name_exits_2_with_one_line(robustbench, cifar_root):
    from pagbench.cli import build_cli

    result = CliRunner().invoke(
        build_cli(), ["evaluate", "--model", "robustbench:Wong2020Fats", "--dataset", "cifar10", "--data-root", str(cifar_root), "--num-images", "4", "--no-progress"]
    )
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "did you mean robustbench:cifar10/Linf/Wong2020Fast" in result.output


@pytest.mark.filterwarnings("ignore:could not get RobustBench's model information")
def test_failed_download_leaves_no_file_behind(robustbench, cifar10, tmp_path, monkeypatch):
    """Online, the file is fetched through RobustBench's downloader; a page saved in its place is refused."""
    from pagbench_plugins.robustbench_models import build, modelinfo

    utils, _ = robustbench
    monkeypatch.delenv("PAGBENCH_OFFLINE")

    def no_network(url):
        raise OSError("no network in tests")

    monkeypatch.setattr(modelinfo, "_fetch", no_network)
    calls = []

    def fake_download(gdrive_id, path):
        calls.append(gdrive_id)
        with open(path, "w") as stream:
            stream.write("<html>Google Drive can't scan this file for viruses</html>")

    monkeypatch.setattr(utils, "download_gdrive_new", fake_download)
    with pytest.raises(PagbenchError, match="download of robustbench:cifar10/Linf/Wong2020Fast .* is not a weights file .*HTML page"):
        load_model("robustbench:Wong2020Fast", cifar10, "cpu", {"model_dir": str(tmp_path)})
    assert calls == ["1Re--_lf3jCEw9bnQqGkjw3J7v2tSZKrv"] and not list((tmp_path / "cifar10" / "Linf").iterdir())
    assert build.INSTALL.startswith("pip install 'pagbench[robustbench]'")


# --------------------------------------------------------------------------- without robustbench
def test_plugin_import_is_lazy(isolated_cache):
    """The card from a name alone reads a model_info file already in the default model directory."""
    write_model_info(isolated_cache / "robustbench" / "model_info", "cifar10/Linf/Carmon2019Unlabeled", dict(MADE_UP["Carmon2019Unlabeled"], architecture="Made-Up-WRN"))
    code = (
        "import sys, pagbench_plugins.robustbench_models as p; "
        "card = p._card('robustbench:cifar10/Linf/Carmon2019Unlabeled'); other = p._card('robustbench:Wong2020Fast'); "
        "print(card.architecture, round(card.strength, 6), other.architecture.replace(' ', '_'), other.strength, 'torch' in sys.modules, 'robustbench' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert output == ["Made-Up-WRN", str(round(8 / 255, 6)), "RobustBench_model", "None", "False", "False"]


def test_names_and_options_parse():
    from pagbench_plugins.robustbench_models.spec import parse_name

    assert parse_name("robustbench:Carmon2019Unlabeled", {}, "cifar10").key == "cifar10/Linf/Carmon2019Unlabeled"
    assert parse_name("robustbench:cifar100/L2/X", {}, "cifar10").key == "cifar100/L2/X"
    assert parse_name("robustbench:linf/CIFAR100/X", {}, None).key == "cifar100/Linf/X"
    spec = parse_name("robustbench:X", {"threat_model": "l2", "dataset": "imagenet"}, "cifar10")
    assert spec.key == "imagenet/L2/X" and spec.dataset_source == "--model-option dataset"
    spec = parse_name("robustbench:X", {}, "synthetic")
    assert spec.dataset == "cifar10" and "RobustBench's default" in spec.dataset_source
    assert parse_name("robustbench:corruptions/Standard", {}, "cifar10").regime == "standard"


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("robustbench:", {}, "RobustBench models are named robustbench:NAME"),
        ("robustbench:cifar11/Linf/X", {}, "'cifar11' is not a RobustBench dataset"),
        ("robustbench:X", {"threat_model": "Linf2"}, "threat model 'Linf2' is not one of Linf, L2, corruptions"),
        ("robustbench:L2/X", {"threat_model": "Linf"}, "names threat model L2 but --model-option threat_model=Linf"),
        ("robustbench:X", {"replace_head": True}, "does not take --replace-head"),
        ("robustbench:cifar100/Hendrycks2019Using", {}, "100-class classifier .* but dataset 'synthetic' has 10 classes"),
    ],
)
def test_bad_names_and_options_fail_in_one_line(synthetic, name, options, message):
    with pytest.raises(PagbenchError, match=message) as caught:
        load_model(name, synthetic, "cpu", options)
    assert "\n" not in str(caught.value)


def test_missing_package_says_how_to_install(synthetic, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "robustbench" else real(name, *a))
    with pytest.raises(PagbenchError, match=r"not installed: pip install 'pagbench\[robustbench\]' && pip install --no-deps robustbench==1\.1\.1"):
        load_model("robustbench:Wong2020Fast", synthetic, "cpu", {})


def _spec(key):
    from pagbench_plugins.robustbench_models.spec import parse_name

    return parse_name(f"robustbench:{key}", {}, None)


def test_model_info_files_are_converted(tmp_path):
    from pagbench_plugins.robustbench_models import modelinfo

    info_dir, model_dir = tmp_path / "info", tmp_path / "models"
    write_model_info(info_dir, "cifar10/L2/Made", {"name": "Made-Up L2 Paper", "eps": "0.5", "clean_acc": "91.5", "autoattack_acc": "70.25",
                                                   "external": None, "additional_data": False, "number_forward_passes": 2, "venue": "N/A"})
    info, found = modelinfo.find(_spec("cifar10/L2/Made"), {"model_info": str(info_dir)}, model_dir)
    assert found["info_source"] == "--model-option model_info" and info["paper"] == "Made-Up L2 Paper"
    assert info["eps"] == 0.5 and info["eps_text"] == "0.5" and info["clean_accuracy"] == pytest.approx(0.915)
    assert info["robust_accuracy"] == pytest.approx(0.7025) and info["robust_accuracy_field"] == "autoattack_acc"
    assert info["number_forward_passes"] == 2 and info["additional_data"] is False

    write_model_info(model_dir / "model_info", "cifar100/corruptions/Made", {"name": "Made-Up Corruptions", "clean_acc": "70.0", "corruptions_acc": "45.5", "eps": None})
    info, found = modelinfo.find(_spec("cifar100/corruptions/Made"), {"model_info": str(info_dir)}, model_dir)  # not in the option's folder
    assert found["info_source"] == "model directory" and info["robust_accuracy"] == pytest.approx(0.455) and "eps" not in info

    info, found = modelinfo.find(_spec("imagenet/Linf/Nowhere"), {}, model_dir)
    assert info is None and found["info_source"].startswith("none: pass --model-option model_info=DIR")
    assert any("PAGBENCH_OFFLINE" in tried for tried in found["info_tried"])
    with pytest.raises(PagbenchError, match="model_info=.*no such directory"):
        modelinfo.find(_spec("cifar10/Linf/X"), {"model_info": str(tmp_path / "absent")}, model_dir)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"clean_acc": "90",', "is not valid JSON"),
        ('["a", "list"]', "holds a JSON list, not an object"),
        ('{"clean_acc": "ninety"}', "field 'clean_acc' is 'ninety', not a number"),
        ('{"eps": "8/zero"}', "field 'eps' is '8/zero', not a number"),
    ],
)
def test_malformed_model_info_names_the_file(tmp_path, text, message):
    from pagbench_plugins.robustbench_models import modelinfo

    path = tmp_path / "model_info" / "cifar10" / "Linf" / "X.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(PagbenchError, match=message) as caught:
        modelinfo.find(_spec("cifar10/Linf/X"), {}, tmp_path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_model_info_downloaded_online_once(tmp_path, monkeypatch):
    from pagbench_plugins.robustbench_models import modelinfo

    monkeypatch.delenv("PAGBENCH_OFFLINE")
    urls = []

    def fake_fetch(url):
        urls.append(url)
        return json.dumps({"name": "Made-Up Download", "eps": "4/255", "clean_acc": "60.0", "autoattack_acc": "30.0"}).encode()

    monkeypatch.setattr(modelinfo, "_fetch", fake_fetch)
    info, found = modelinfo.find(_spec("imagenet/Linf/Made"), {}, tmp_path)
    saved = tmp_path / "model_info" / "imagenet" / "Linf" / "Made.json"
    assert urls == ["https://raw.githubusercontent.com/RobustBench/robustbench/master/model_info/imagenet/Linf/Made.json"]
    assert found["info_source"] == f"downloaded from {urls[0]}" and found["info_file"] == str(saved.resolve())
    assert info["eps"] == pytest.approx(4 / 255) and info["clean_accuracy"] == pytest.approx(0.6)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["Made.json"]  # no temporary file left
    info, found = modelinfo.find(_spec("imagenet/Linf/Made"), {}, tmp_path)  # read from the model directory now
    assert found["info_source"] == "model directory" and len(urls) == 1


@pytest.mark.parametrize("reply", [OSError("timed out"), b"<html>404: Not Found</html>"])
def test_failed_model_info_download_is_a_warning(tmp_path, monkeypatch, reply):
    from pagbench_plugins.robustbench_models import modelinfo

    monkeypatch.delenv("PAGBENCH_OFFLINE")

    def fake_fetch(url):
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(modelinfo, "_fetch", fake_fetch)
    with pytest.warns(UserWarning, match="could not get RobustBench's model information for robustbench:cifar10/Linf/Made"):
        info, found = modelinfo.find(_spec("cifar10/Linf/Made"), {}, tmp_path)
    assert info is None and found["info_source"].startswith("none:")
    assert not (tmp_path / "model_info" / "cifar10" / "Linf").exists() or not list((tmp_path / "model_info" / "cifar10" / "Linf").iterdir())


def test_the_board_card_shows_what_robustbench_records_beside_the_pag_metrics(tmp_path):
    """The leaderboard's model card lists the clean and robust accuracy the card carries."""
    import pagbench
    from pagbench.leaderboard.render import render_all
    from pagbench.leaderboard.store import add_results, load_entries
    from pagbench.results.documents import write_result

    result = pagbench.evaluate("bayes", num_images=20, metrics=("accuracy", "score_cosine"))
    result["config"]["model_card"]["provenance"] = {"robustbench": {
        "paper": "A made-up paper", "threat_model": "Linf", "eps": 8 / 255, "clean_accuracy": 0.9, "robust_accuracy": 0.5}}
    write_result(result, tmp_path / "r.json")
    add_results([tmp_path / "r.json"], tmp_path / "lb")
    (card,) = [text for path, text in render_all(tmp_path / "lb", load_entries(tmp_path / "lb")).items() if path.startswith("cards/")]
    assert "| robustbench clean_accuracy | 0.9 |" in card and "| robustbench robust_accuracy | 0.5 |" in card
    assert "| robustbench threat_model | Linf |" in card and "score_cosine ± se" in card
