"""pagbench's own EDM networks against pickles written by NVIDIA's code (tests/fixtures/edm, see its
README): agreement with NVIDIA's outputs, loading without trust and without running anything from
the file, hostile files, forward-mode AD, score-jacobian on a loaded network, and the published
configurations' parameter trees."""

import gzip
import hashlib
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pagbench.errors import PagbenchError

from .edm_pickle import rewrite_edm_pickle

FIXTURES = Path(__file__).parent / "fixtures" / "edm"
NAMES = ["vp-songunet-32-uncond", "ve-ncsnpp-16-cond", "edm-songunet-skip-16-cond", "edm-adm-8-cond", "iddpm-adm-8-uncond"]
#: sha256 over "name:[shape]" lines of NVIDIA's state_dict in its published configurations, computed
#: with NVIDIA's code (with the parameter counts; see tests/fixtures/edm/README.md).
PUBLISHED = {
    "cifar10-ddpmpp-vp": dict(
        precond="VPPrecond", parameters=55_733_891, keys=425,
        tree="0ccb351b414e7f23cbd44f04700623415e979bd7196266ad3df2cf384cb3f540",
        kwargs=dict(img_resolution=32, img_channels=3, label_dim=0, use_fp16=False, model_type="SongUNet",
                    embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1,
                    resample_filter=[1, 1], model_channels=128, channel_mult=[2, 2, 2], augment_dim=9, dropout=0.13)),
    "imagenet64-adm-edm": dict(
        precond="EDMPrecond", parameters=295_899_267, keys=553,
        tree="71b8ca0dac75a4649a7b5f35dc2be67b3d036b5b9f6a5efbda05f3c7119aba88",
        kwargs=dict(img_resolution=64, img_channels=3, label_dim=1000, use_fp16=True, model_type="DhariwalUNet",
                    model_channels=192, channel_mult=[1, 2, 3, 4], dropout=0.1)),
}


def fixture_bytes(name):
    plain = FIXTURES / f"{name}.pkl"
    return plain.read_bytes() if plain.is_file() else gzip.decompress((FIXTURES / f"{name}.pkl.gz").read_bytes())


def reference(name):
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def write(tmp_path, data, name="net.pkl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load(path, trust=False):
    from pagbench_plugins.diffusion.edm import load_network_pickle, network_of

    contents, _ = load_network_pickle(str(path), trust)
    return network_of(contents, str(path))


#: float32 agreement with the stored outputs of NVIDIA's code: they were computed with this CPU's
#: AVX-512 kernels, ours run the AVX2 kernels `import pagbench` pins (pagbench/numerics.py), and a
#: deep UNet's rounding then differs by 1.4e-6 of the largest output (measured on vp-songunet-32-uncond).
AGREEMENT = 1e-5


def relative(ours, theirs):
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edm")
    return {name: load(write(folder, fixture_bytes(name), f"{name}.pkl")) for name in NAMES}


# ------------------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("name", NAMES)
def test_fixture_loads_without_trust_and_matches_nvidias_outputs(tmp_path, name):
    from pagbench_plugins.diffusion.edm import source_record
    from pagbench_plugins.diffusion.edm_networks import UNETS

    path = write(tmp_path, fixture_bytes(name))
    network, ref = load(path), reference(name)
    assert type(network.model) in UNETS.values() and not network.training
    assert sum(p.numel() for p in network.parameters()) == int(ref["parameters"])
    captured = []
    network.model.register_forward_hook(lambda module, args, output: captured.append(output))
    for index, sigma in enumerate(ref["sigma"].tolist()):
        sigmas = torch.full([2], sigma)
        assert relative(network(ref["x"], sigmas, ref.get("labels")), ref["denoised"][index]) <= AGREEMENT
        assert relative(captured[-1], ref["raw"][index]) <= AGREEMENT
        if "augment_labels" in ref:
            out = network(ref["x"], sigmas, ref.get("labels"), augment_labels=ref["augment_labels"])
            assert relative(out, ref["denoised_augment"][index]) <= AGREEMENT
    record = source_record(str(path))
    placeholder = f"<NVlabs EDM source omitted (CC BY-NC-SA 4.0); sha256 of the original: {ref['module_src_sha256']}>"
    assert record["loaded_with"].startswith("pagbench's own implementation")
    assert record["module_src_sha256"] == hashlib.sha256(placeholder.encode()).hexdigest()
    assert record["class_name"].split("/")[1] == type(network.model).__name__


def test_the_augment_branch_and_the_fp16_flag_matter():
    """Known differences, so the agreement above is not vacuous: augment labels change the output;
    use_fp16 networks stay float32 off CUDA (NVIDIA's rule)."""
    ref = reference("vp-songunet-32-uncond")
    assert relative(ref["denoised"][2], ref["denoised_augment"][2]) > 1e-3
    network = load_from_bytes("edm-songunet-skip-16-cond")
    assert network.use_fp16
    out = network(torch.zeros(1, 3, 16, 16), torch.ones(1), None)
    assert out.dtype == torch.float32


def load_from_bytes(name):
    from pagbench_plugins.diffusion.edm_restricted import own_network_contents

    return own_network_contents(fixture_bytes(name), name)[0]["ema"]


# ------------------------------------------------------------------------------ nothing runs
PAYLOAD = "open(os.environ['PAGBENCH_TEST_MARKER'], 'w').write('ran'); os.system('touch \"$PAGBENCH_TEST_MARKER.sh\"')"


def test_module_src_payload_never_runs_on_the_restricted_path(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("PAGBENCH_TEST_MARKER", str(marker))
    source = f"import os\n{PAYLOAD}\n"
    hostile = write(tmp_path, rewrite_edm_pickle(fixture_bytes("vp-songunet-32-uncond"), module_src=source))
    for trust in (False, True):  # published classes load as pagbench's own even when trusted
        network = load(hostile, trust)
        assert not marker.exists() and not Path(f"{marker}.sh").exists()
        ref = reference("vp-songunet-32-uncond")
        assert relative(network(ref["x"], torch.full([2], 0.5), None), ref["denoised"][2]) <= AGREEMENT
    # control: the same payload in a class pagbench does not implement is refused without trust …
    foreign = write(tmp_path, rewrite_edm_pickle(fixture_bytes("vp-songunet-32-uncond"), module_src=source,
                                                 class_names={"VPPrecond": "MyPrecond"}), "foreign.pkl")
    with pytest.raises(PagbenchError, match="MyPrecond.*--trust-pickle"):
        load(foreign)
    assert not marker.exists()
    # … and does run when trusted (so the assertions above could fail)
    with pytest.raises(PagbenchError):
        load(foreign, trust=True)  # the payload defines no class; it ran first
    assert marker.read_text() == "ran" and Path(f"{marker}.sh").exists()


# --------------------------------------------------------------------------------- hostile files
def set_kwarg(key, value):
    def edit(contents):
        contents["ema"].state["_init_kwargs"][key] = value
    return edit


def drop_kwarg(key):
    def edit(contents):
        del contents["ema"].state["_init_kwargs"][key]
    return edit


def tensor_edit(path, change):
    def edit(contents):
        node = contents["ema"]
        *parents, table, name = path.split("/")
        for part in parents:
            node = node.state["_modules"][part]
        change(node.state[table], name)
    return edit


def submodule(path, change):
    def edit(contents):
        node = contents["ema"]
        for part in path.split("/"):
            node = node.state["_modules"][part]
        change(node)
    return edit


HOSTILE = {
    "negative channels": (set_kwarg("model_channels", -16), "model_channels must be in [1, 4096], got -16"),
    "huge resolution": (set_kwarg("img_resolution", 1 << 20), "img_resolution must be in [1, 4096]"),
    "resolution not divisible": (set_kwarg("img_resolution", 33), "img_resolution 33 is not divisible by 2^1"),
    "unknown key": (set_kwarg("exec_this", "import os"), "unknown constructor argument(s) for VPPrecond with SongUNet: exec_this"),
    "wrong type": (set_kwarg("channel_mult", "12"), "channel_mult must be a list, got str"),
    "bool for an int": (set_kwarg("num_blocks", True), "num_blocks must be an integer, got bool"),
    "nan dropout": (set_kwarg("dropout", float("nan")), "dropout must be finite"),
    "unknown model type": (set_kwarg("model_type", "os.system"), "model_type must be one of SongUNet, DhariwalUNet"),
    "unknown embedding": (set_kwarg("embedding_type", "sinusoid"), "embedding_type must be one of positional, fourier"),
    "no resolution": (drop_kwarg("img_resolution"), "VPPrecond records no img_resolution"),
    "arguments differ from tensors": (set_kwarg("channel_mult", [1, 1]), "does not match pagbench's implementation"),
    "tensor shape": (tensor_edit("model/map_layer0/_parameters/weight", lambda table, name: table.__setitem__(name, torch.zeros(3, 3))),
                     "model.map_layer0.weight has shape [3, 3], pagbench's [64, 16]"),
    "missing tensor": (tensor_edit("model/map_layer1/_parameters/bias", lambda table, name: table.pop(name)),
                       "missing: model.map_layer1.bias"),
    "unexpected tensor": (tensor_edit("model/map_layer1/_parameters/extra", lambda table, name: table.__setitem__(name, torch.zeros(1))),
                          "unexpected: model.map_layer1.extra"),
    "non-finite tensor": (tensor_edit("model/map_layer1/_parameters/bias", lambda table, name: table[name].fill_(float("inf"))),
                          "model.map_layer1.bias has non-finite values"),
    "integer tensor": (tensor_edit("model/map_layer1/_parameters/bias", lambda table, name: table.__setitem__(name, torch.zeros(64, dtype=torch.long))),
                       "model.map_layer1.bias is not a floating-point tensor"),
    "stride-0 view": (tensor_edit("model/map_layer1/_parameters/weight", lambda table, name: table.__setitem__(name, torch.zeros(1).expand(64, 64))),
                      "model.map_layer1.weight is not stored in full (a view of 4 bytes)"),
    "bigger than the file": (set_kwarg("model_channels", 4096), "more than a"),
    "cyclic module tree": (submodule("model/enc", lambda record: record.state["_modules"].__setitem__("16x16_block0", record)),
                           "model.enc.16x16_block0 is torch.nn.ModuleDict, pagbench expects UNetBlock"),
    "attribute differs": (submodule("model/enc/16x16_block0", lambda record: record.state.__setitem__("num_heads", 4)),
                          "model.enc.16x16_block0.num_heads = 4 (pagbench's: 1)"),
    "class swapped": (submodule("model/map_layer0", lambda record: setattr(record, "class_name", "Conv2d")),
                      "model.map_layer0 is Conv2d, pagbench expects Linear"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_one_line_errors(tmp_path, case):
    edit, message = HOSTILE[case]
    path = write(tmp_path, rewrite_edm_pickle(fixture_bytes("vp-songunet-32-uncond"), edit=edit))
    with pytest.raises(PagbenchError) as error:
        load(path)
    text = str(error.value)
    assert message in text and "\n" not in text and "--trust-pickle would run the file's own code" in text


def test_a_published_architecture_evaluates_through_the_cli_without_trust(tmp_path):
    import json

    from pagbench.cli import build_cli

    path = write(tmp_path, fixture_bytes("ve-ncsnpp-16-cond"))
    out = tmp_path / "result.json"
    outcome = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--num-images", "8", "--no-progress",
                                               "--score-provider", "edm", "--provider-option", f"path={path}",
                                               "--gradient", "logit", "--metric", "score_cosine", "--output", str(out)])
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(out.read_text())
    files = result["config"]["provider_files"]
    assert [entry["sha256"] for entry in files] == [hashlib.sha256(path.read_bytes()).hexdigest()]
    assert files[0]["loaded_with"].startswith("pagbench's own implementation")  # the result says how, not only what
    assert files[0]["class_name"] and len(files[0]["module_src_sha256"]) == 64
    assert result["metrics"]["score_cosine"]["n"] == 8


def test_file_provided_names_cannot_break_the_one_line_error(tmp_path):
    edit = submodule("model/map_layer0", lambda record: setattr(record, "class_name", "Evil\nError: forged" + "x" * 500))
    path = write(tmp_path, rewrite_edm_pickle(fixture_bytes("vp-songunet-32-uncond"), edit=edit))
    with pytest.raises(PagbenchError) as error:
        load(path)
    text = str(error.value)
    assert "\n" not in text and "class Evil\\nError: forgedxxx" in text and "x" * 100 not in text and "--trust-pickle" in text


def test_hostile_file_through_the_cli_is_one_line_and_writes_nothing(tmp_path):
    from pagbench.cli import build_cli

    path = write(tmp_path, rewrite_edm_pickle(fixture_bytes("ve-ncsnpp-16-cond"), edit=set_kwarg("model_channels", 0)))
    out = tmp_path / "result.json"
    outcome = CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--num-images", "4", "--no-progress",
                                               "--score-provider", "edm", "--provider-option", f"path={path}",
                                               "--gradient", "logit", "--metric", "score_cosine", "--output", str(out)])
    assert outcome.exit_code == 2, outcome.output
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "model_channels must be in [1, 4096], got 0" in lines[0] and "Traceback" not in outcome.output
    assert not out.exists()


def test_a_foreign_global_is_refused_without_running_it(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return os.system, ("echo should-not-run",)

    path = write(tmp_path, pickle.dumps({"ema": Boom()}))
    with pytest.raises(PagbenchError, match=r"refers to (posix|os|nt)\.system.*--trust-pickle"):
        load(path)


# --------------------------------------------------------------------------- forward-mode AD
def test_jvp_and_vmap_through_every_network_agree_with_reverse_mode(networks):
    from torch.func import jacrev, jvp, vmap

    generator = torch.Generator().manual_seed(0)
    for name, network in networks.items():
        ref = reference(name)
        x, labels = ref["x"][:1], None if ref.get("labels") is None else ref["labels"][:1]
        sigma = torch.full([1], 0.3)

        def denoise(z):
            return network(z, sigma, labels)

        tangents = torch.randn((3, *x.shape), generator=generator)
        out, forward = jvp(denoise, (x,), (tangents[0],))
        assert torch.equal(out, denoise(x))
        batched = vmap(lambda v: jvp(denoise, (x,), (v,))[1])(tangents)
        assert relative(batched[0], forward) <= 1e-5
        if x[0].numel() <= 768:  # reverse mode on the small ones: J·v from the full Jacobian
            jacobian = jacrev(denoise)(x).reshape(x.numel(), x.numel())
            for index in range(3):
                reverse = (jacobian @ tangents[index].reshape(-1)).reshape(x.shape)
                assert relative(batched[index], reverse) <= 1e-4, name


def test_score_jacobian_runs_on_a_fixture_network_through_the_provider_api(tmp_path, synthetic):
    """Class-conditional tangent bases of the VE/NCSN++ fixture (3x16x16, 10 classes, as the
    synthetic data; attention at 8x8) through the registry, against the same randomised subspace
    iteration done with the explicit symmetrised Jacobian (float64, from reverse mode). A random
    network's spectrum has no gap at k, so the known answer is the iteration's subspace, not the
    converged top-k eigenspace."""
    from torch.func import jacrev

    from pagbench.extensions.registry import manifold_providers
    from pagbench_plugins.learned.geometry import image_seed

    path = write(tmp_path, fixture_bytes("ve-ncsnpp-16-cond"))
    k, oversampling, iterations = 4, 10, 3
    options = {"score_provider": "edm", "path": str(path), "k": str(k), "iterations": str(iterations), "sigma": "0.1",
               "oversampling": str(oversampling), "conditional": "1"}
    provider = manifold_providers().get("score-jacobian").factory(synthetic, options)
    split = synthetic.split("test")
    images, labels = split.images[:2], split.labels[:2]
    basis = provider.tangent_basis(images, labels)
    assert basis.shape == (2, k, synthetic.dim)
    assert torch.allclose(basis @ basis.transpose(1, 2), torch.eye(k, dtype=basis.dtype).expand(2, k, k), atol=1e-6)
    network = load(path)
    for index in range(2):  # the provider's denoiser in [0,1] units: x + σ²·s = (D(2x−1; 2σ) + 1)/2
        image = images[index].float()
        one_hot = torch.nn.functional.one_hot(labels[index : index + 1], 10).float()

        def denoise(z):
            return (network(2 * z[None] - 1, torch.full([1], 0.2), one_hot)[0] + 1) / 2

        jacobian = jacrev(denoise)(image).reshape(synthetic.dim, synthetic.dim).double()
        symmetric = (jacobian + jacobian.T) / 2
        generator = torch.Generator().manual_seed(image_seed(image, 0))
        vectors = torch.linalg.qr(torch.randn(k + oversampling, synthetic.dim, generator=generator).double().T).Q
        for _ in range(iterations):
            vectors = torch.linalg.qr(symmetric @ vectors).Q
        _, ritz = torch.linalg.eigh(vectors.T @ symmetric @ vectors)
        expected = vectors @ ritz[:, -k:]
        projector = basis[index].double().T @ basis[index].double()
        assert float((projector - expected @ expected.T).abs().max()) < 1e-5  # measured 4e-7; one iteration more: 0.02


# ------------------------------------------------------------------------ published configurations
def tree_digest(network):
    lines = [f"{key}:{list(value.shape)}" for key, value in network.state_dict().items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines)


def build_published(name, device):
    from pagbench_plugins.diffusion.edm_preconditioning import PRECONDITIONERS

    config = PUBLISHED[name]
    with torch.device(device):
        return PRECONDITIONERS[config["precond"]](**config["kwargs"])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_configurations_have_nvidias_parameter_tree(name):
    network = build_published(name, "meta")  # no memory: names and shapes only
    assert sum(p.numel() for p in network.parameters()) == PUBLISHED[name]["parameters"]
    assert tree_digest(network) == (PUBLISHED[name]["tree"], PUBLISHED[name]["keys"])


@pytest.mark.slow
def test_jvp_through_the_published_cifar10_songunet():
    from torch.func import jvp

    torch.manual_seed(0)
    network = build_published("cifar10-ddpmpp-vp", "cpu").eval().requires_grad_(False)
    assert sum(p.numel() for p in network.parameters()) == 55_733_891
    x = torch.randn(1, 3, 32, 32)
    tangent = torch.randn(1, 3, 32, 32)
    sigma = torch.full([1], 0.2)
    out, forward = jvp(lambda z: network(z, sigma, None), (x,), (tangent,))
    step = 1e-2  # float32 central difference: measured 3.4e-5 at this step (3.5e-3 at 0.1, 7.6e-5 at 0.001)
    difference = (network(x + step * tangent, sigma, None) - network(x - step * tangent, sigma, None)) / (2 * step)
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(forward).all()
    assert relative(forward, difference) < 1e-3
