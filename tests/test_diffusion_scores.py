"""EDM network pickles (own unpickler, trust flag, unit conversion) and the diffusers ε-score."""

import json
import pickle

import pytest
import torch
from click.testing import CliRunner

from pagbench.errors import PagbenchError
from pagbench.extensions.registry import score_providers

from .edm_pickle import write_edm_pickle


def provider(dataset, **options):
    return score_providers().get("edm").factory(dataset, options)


def exact_score(images, labels, means, std, sigma):
    mean = means[labels] if labels is not None else means[0].expand_as(images)
    return -(images.double() - mean) / (std**2 + sigma**2)


@pytest.mark.parametrize("label_dim", [10, 0])
def test_edm_pickle_scores_match_the_exact_gaussian_score_in_pixel_units(tmp_path, synthetic, label_dim):
    import sys

    path = tmp_path / "edm-tiny.pkl"
    means, std = write_edm_pickle(path, label_dim=label_dim)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    scores = provider(synthetic, path=str(path), trust_pickle="1")
    batch = synthetic.split("test").batch(list(range(8)))
    for sigma in (0.02, 0.1):
        if label_dim:
            got = scores.scores(batch.images, batch.labels, sigma, "conditional")
            assert torch.allclose(got, exact_score(batch.images, batch.labels, means, std, sigma), rtol=1e-4, atol=1e-3)
        else:
            got = scores.scores(batch.images, batch.labels, sigma, "unconditional")
            assert torch.allclose(got, exact_score(batch.images, None, means, std, sigma), rtol=1e-4, atol=1e-3)
    assert "torch_utils" not in sys.modules  # stand-ins are removed after the embedded code ran


def test_objects_whose_code_cannot_run_here_do_not_stop_the_network_from_loading(tmp_path, synthetic):
    # EDM2 snapshots hold their training loss, whose module imports training-only torch_utils parts
    path = tmp_path / "edm2-like.pkl"
    means, std = write_edm_pickle(path, label_dim=10, training_loss=True)
    scores = provider(synthetic, path=str(path), trust_pickle="1")
    batch = synthetic.split("test").batch(list(range(4)))
    got = scores.scores(batch.images, batch.labels, 0.05, "conditional")
    assert torch.allclose(got, exact_score(batch.images, batch.labels, means, std, 0.05), rtol=1e-4, atol=1e-3)
    broken = tmp_path / "broken.pkl"
    write_edm_pickle(broken, loss_as_ema=True)
    with pytest.raises(PagbenchError, match=r"ema \(TrainingLoss\) cannot be reconstructed here: .*training_stats"):
        provider(synthetic, path=str(broken), trust_pickle="1")


def test_an_installed_torch_utils_can_read_the_embedded_source(tmp_path, synthetic, monkeypatch):
    # with NVlabs' packages importable their persistent_class runs, and it reads its module's source
    import sys

    from pagbench_plugins.diffusion import edm

    path = tmp_path / "edm.pkl"
    write_edm_pickle(path, label_dim=0)
    package = tmp_path / "site" / "torch_utils"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "persistence.py").write_text("import inspect, sys\n\n\ndef persistent_class(cls):\n"
                                            "    cls.module_source = inspect.getsource(sys.modules[cls.__module__])\n"
                                            "    return cls\n")
    monkeypatch.setattr(edm, "_MODULES", {})  # execute the source again, now with this torch_utils
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        scores = provider(synthetic, path=str(path), trust_pickle="1")
        assert "class GaussianPrecond(torch.nn.Module):" in scores.network.module_source
    finally:
        for name in ("torch_utils", "torch_utils.persistence"):
            sys.modules.pop(name, None)


def test_a_pickle_is_refused_without_trust_before_anything_is_unpickled(tmp_path, synthetic):
    marker = tmp_path / "ran"

    class SideEffect:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ema": SideEffect()}))
    with pytest.raises(PagbenchError, match="--trust-pickle"):
        provider(synthetic, path=str(path))
    assert not marker.exists()
    with pytest.raises(PagbenchError, match="builtins.exec, which pagbench does not load"):
        provider(synthetic, path=str(path), trust_pickle="1")
    assert not marker.exists()


def run_cli(*args):
    from pagbench.cli import build_cli

    return CliRunner().invoke(build_cli(), ["evaluate", "--model", "bayes", "--num-images", "20", "--no-progress", *args])


def one_line_error(result, text):
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert text in result.output, result.output


def test_edm_end_to_end_and_bad_input(tmp_path):
    path = tmp_path / "edm.pkl"
    write_edm_pickle(path, label_dim=10)
    out = tmp_path / "r.json"
    ok = run_cli("--score-provider", "edm", "--provider-option", f"path={path}", "--trust-pickle", "--gradient", "logit",
                 "--metric", "score_cosine", "--output", str(out))
    assert ok.exit_code == 0, ok.output
    import json

    result = json.loads(out.read_text())
    assert result["config"]["sigma"] == 0.05 and result["config"]["score_provider"] == "edm"

    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={path}"), "--trust-pickle")
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={path}", "--trust-pickle", "--gradient", "logit",
                           "--sigma", "0"), "needs --sigma > 0")
    # posterior needs the unconditional score, which a conditional EDM net does not give
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={path}", "--trust-pickle"), "no unconditional score")
    html = tmp_path / "edm-cifar10-32x32-cond-vp.pkl"
    html.write_text("<!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={html}", "--trust-pickle"), "is an HTML page")
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(path.read_bytes()[:500])
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={truncated}", "--trust-pickle"), "cannot be unpickled")
    small = tmp_path / "small.pkl"
    write_edm_pickle(small, resolution=8)
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={small}", "--trust-pickle"), "works on 3x8x8 images")
    grey = tmp_path / "grey.pkl"
    write_edm_pickle(grey, channels=1)
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={grey}", "--trust-pickle"), "works on 1x16x16 images")
    one_line_error(run_cli("--score-provider", "edm", "--provider-option", f"path={tmp_path / 'none.pkl'}", "--trust-pickle"), "not found")


def test_epsilon_score_of_a_vp_model_is_the_ve_score_at_the_closest_sigma():
    from pagbench_plugins.diffusion.providers import epsilon_score

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas = torch.cumprod(1 - betas, 0)
    mean_m1, spread = 0.2, 0.4  # data N(0.2, 0.4²) in [−1,1] units

    def optimal_epsilon(x_t, step, labels):  # E[ε | x_t] for Gaussian data
        a = alphas[step]
        return (1 - a).sqrt() * (x_t.double() - a.sqrt() * mean_m1) / (a * spread**2 + 1 - a)

    images = torch.rand(4, 3, 8, 8)
    score, step = epsilon_score(optimal_epsilon, alphas, images, None, 0.05)
    sigma_t = float(((1 - alphas[step]) / alphas[step]).sqrt())
    assert abs(sigma_t - 0.1) < 0.005  # σ₋₁ = 2σ
    mean, std, sigma01 = (mean_m1 + 1) / 2, spread / 2, sigma_t / 2
    assert torch.allclose(score, -(images.double() - mean) / (std**2 + sigma01**2), rtol=1e-5, atol=1e-4)


def test_diffusers_provider_needs_its_extra(synthetic, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)  # as if not installed, even where it is
    with pytest.raises(PagbenchError, match=r"pip install 'pagbench\[diffusers\]'"):
        score_providers().get("diffusers").factory(synthetic, {"path": "x"})


def tiny_unet(diffusers, seed, channels=3, classes=None):
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=classes)
    with torch.no_grad():  # the output convolution starts at zero: make ε̂ non-trivial
        for parameter in unet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return unet.eval()


@pytest.mark.parametrize("classes", [None, 10])
def test_a_saved_diffusers_pipeline_gives_minus_epsilon_over_sigma_in_pixel_units(tmp_path, synthetic, classes):
    diffusers = pytest.importorskip("diffusers")
    unet = tiny_unet(diffusers, 0, classes=classes)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2" if classes else "linear")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    scores = score_providers().get("diffusers").factory(synthetic, {"path": str(tmp_path / "pipe")})
    assert (scores.has_conditional, scores.has_unconditional) == (bool(classes), not classes)
    batch = synthetic.split("test").batch(list(range(4)))
    labels = batch.labels if classes else None
    alphas = scheduler.alphas_cumprod.double()
    sigmas = ((1 - alphas) / alphas).sqrt()
    for sigma in (0.02, 0.3):
        step = int(torch.argmin((sigmas - 2 * sigma).abs()))  # σ₋₁ = 2σ
        x_t = scheduler.add_noise(2 * batch.images - 1, torch.zeros_like(batch.images), torch.full((4,), step))
        with torch.no_grad():
            epsilon = unet(x_t, torch.full((4,), step), class_labels=labels).sample.double()
        got = scores.scores(batch.images, batch.labels, sigma, "conditional" if classes else "unconditional")
        assert torch.allclose(got, 2 * -epsilon / sigmas[step], rtol=1e-4, atol=1e-4)

    # cached scores follow the weights, not the path
    (tmp_path / "copy").mkdir()
    tiny_unet(diffusers, 0, classes=classes).save_pretrained(tmp_path / "copy")
    scheduler.save_pretrained(tmp_path / "copy")
    same = score_providers().get("diffusers").factory(synthetic, {"path": str(tmp_path / "copy")})
    assert same.fingerprint == scores.fingerprint
    tiny_unet(diffusers, 1, classes=classes).save_pretrained(tmp_path / "copy")
    assert score_providers().get("diffusers").factory(synthetic, {"path": str(tmp_path / "copy")}).fingerprint != scores.fingerprint


def test_diffusers_end_to_end_and_bad_input(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000)
    diffusers.DDPMPipeline(unet=tiny_unet(diffusers, 0), scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    out = tmp_path / "r.json"
    ok = run_cli("--score-provider", "diffusers", "--provider-option", f"path={tmp_path / 'pipe'}", "--gradient", "logsumexp",
                 "--metric", "score_cosine", "--output", str(out))
    assert ok.exit_code == 0, ok.output
    # the result records the requested σ and the σ_t/2 of the timestep really used
    config = json.loads(out.read_text())["config"]
    alphas = scheduler.alphas_cumprod.double()
    sigmas = ((1 - alphas) / alphas).sqrt()
    assert config["sigma"] == 0.05 and config["sigma_used"] == pytest.approx(float(sigmas[(sigmas - 0.1).abs().argmin()]) / 2)
    assert config["sigma_used"] != config["sigma"]
    diffusers.DDPMPipeline(unet=tiny_unet(diffusers, 0, channels=1), scheduler=scheduler).save_pretrained(tmp_path / "grey")
    one_line_error(run_cli("--score-provider", "diffusers", "--provider-option", f"path={tmp_path / 'grey'}", "--gradient", "logsumexp"),
                   "works on 1x16x16 images")
    diffusers.DDPMPipeline(unet=tiny_unet(diffusers, 0, classes=7), scheduler=scheduler).save_pretrained(tmp_path / "seven")
    one_line_error(run_cli("--score-provider", "diffusers", "--provider-option", f"path={tmp_path / 'seven'}", "--gradient", "logit"),
                   "the UNet has 7 classes, the dataset 10")
    one_line_error(run_cli("--score-provider", "diffusers", "--provider-option", f"path={tmp_path / 'none'}"), "not found")


def test_imagenet_is_scored_at_64_pixels_and_the_gradient_resized_alike(tmp_path, register_plugin):
    from PIL import Image

    import pagbench
    from pagbench import ModelCard, ModelEntry, hookimpl

    for index, wnid in enumerate(("n01440764", "n01443537")):
        folder = tmp_path / "val" / wnid
        folder.mkdir(parents=True)
        for copy in range(2):
            Image.new("RGB", (256, 300), (60 * index + 20 * copy, 90, 200 - 50 * index)).save(folder / f"img{copy}.JPEG")
    pickle_path = tmp_path / "edm64.pkl"
    write_edm_pickle(pickle_path, resolution=64, label_dim=2)

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(2, 3 * 224 * 224, generator=torch.Generator().manual_seed(0)) / 400)

        def forward(self, images):
            return images.flatten(1) @ self.weight.T

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register(ModelEntry("tiny-linear-224", lambda name, dataset, device: Linear(), ModelCard("linear", "imagenet")))

    register_plugin(Plugin(), name="tiny")
    result = pagbench.evaluate("tiny-linear-224", dataset="imagenet", data_root=str(tmp_path), num_images=4, gradient="logit",
                               score_provider="edm", metrics=("score_cosine",), per_image=True,
                               provider_options={"path": str(pickle_path), "trust_pickle": "1"})
    # by hand: the logit gradient is the weight row; resized by area averaging to 64×64
    from pagbench_plugins.metrics.score_cosine import cosine
    from pagbench.extensions.registry import datasets
    from pagbench.evaluation.scores import resize_images

    dataset = datasets().get("imagenet").factory(str(tmp_path))
    batch = dataset.split("test").batch([0, 1, 2, 3])
    means, std = write_edm_pickle(tmp_path / "again.pkl", resolution=64, label_dim=2)
    small = resize_images(batch.images, (64, 64))
    score = exact_score(small, batch.labels, means, std, 0.05)
    gradient = resize_images(Linear().weight.detach()[batch.labels].reshape(4, 3, 224, 224), (64, 64))
    expected = cosine(gradient, score)
    assert result["per_image"]["score_cosine"] == pytest.approx(expected.tolist(), abs=1e-4)
