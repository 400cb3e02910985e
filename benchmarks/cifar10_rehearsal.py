"""The rehearsed CIFAR-10 run on this machine: time per stage and peak memory.

What ``pagbench evaluate --model robustbench:Wong2020Fast --dataset cifar10`` does with no
provider flags, against a mirror on 127.0.0.1 (tests/asset_mirror.py) under the test-only asset
table, for each image count:

* **download** — ``pagbench assets fetch --dataset cifar10`` from the mirror (a CIFAR-10 archive
  of python batches, the EDM pickle, an AlexNet-shaped state dict); plus the downloader's
  throughput on a 170 MB file against a bare ``urllib`` read of the same file (ratio);
* **load** — dataset (archive extraction), score and manifold providers, model (PreActResNet-18 in
  RobustBench's layout, random weights);
* **scores** — the edm provider's unconditional score at σ = 0.05 on the images (timed alone);
* **tangent spaces** — ``score-jacobian`` (k = 32, 4 iterations, oversampling 10): the
  evaluation's geometry time less the scores' time;
* **metrics** — the evaluation's model passes and every metric.

The EDM network is NVIDIA's 32×32 unconditional VP layout in a small configuration
(tests/fixtures/edm/vp-songunet-32-uncond.pkl) when pagbench reads it without trust, else the test
writer's Gaussian denoiser. ``--published-size`` also times the published DDPM++/VP SongUNet
(model_channels 128, channel_mult [2,2,2], 4 blocks, attention at 16×16, random weights): its
score pass per image, and one ``score-jacobian`` basis on ``--published-images`` images, with the
network passes counted against the floor of k passes.

Peak memory is the process's peak resident set size (``resource.getrusage``) after each stage.

    python benchmarks/cifar10_rehearsal.py [--images 16,64] [--published-size [--published-images 1]] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Stages:
    def __init__(self):
        self.rows = []

    def time(self, name, function):
        started = time.perf_counter()
        value = function()
        self.rows.append((name, time.perf_counter() - started, peak_rss_mib()))
        return value


def _network_bytes(tmp: Path) -> tuple[bytes, bool, str]:
    fixture = ROOT / "tests" / "fixtures" / "edm" / "vp-songunet-32-uncond.pkl"
    try:
        import pagbench_plugins.diffusion.edm_restricted  # noqa: F401  (pagbench reads NVIDIA's layout itself)

        if fixture.is_file():
            return fixture.read_bytes(), False, "NVIDIA-written VP SongUNet fixture (small configuration, no trust)"
    except ImportError:
        pass
    from tests.edm_pickle import write_edm_pickle

    write_edm_pickle(tmp / "net.pkl", resolution=32, channels=3, label_dim=0)
    return (tmp / "net.pkl").read_bytes(), True, "test writer's Gaussian denoiser (needs --trust-pickle)"


def _robustbench_dir(tmp: Path) -> Path:
    from pagbench_plugins.robustbench_models.build import import_robustbench
    from tests.test_robustbench_models import MADE_UP, save_in_robustbench_layout, write_model_info, zoo_network

    _, model_dicts, _ = import_robustbench()
    root = tmp / "robustbench"
    save_in_robustbench_layout(zoo_network(model_dicts, "Wong2020Fast", 0), "Wong2020Fast", root / "cifar10" / "Linf" / "Wong2020Fast.pt")
    write_model_info(root / "model_info", "cifar10/Linf/Wong2020Fast", MADE_UP["Wong2020Fast"])
    return root


def throughput(mirror, tmp: Path) -> dict:
    """The asset downloader against a bare urllib read of one 170 MB file from the mirror."""
    import urllib.request

    from pagbench.files import assets

    blob = os.urandom(170_000_000)
    mirror.files["/blob.bin"] = blob
    entry = assets.AssetEntry(name="blob", filename="blob.bin", url=mirror.url("/blob.bin"), size=len(blob), size_exact=True,
                              sha256=hashlib.sha256(blob).hexdigest())
    times = {"urllib": [], "assets.download": []}
    for repeat in range(3):
        started = time.perf_counter()
        with urllib.request.urlopen(mirror.url("/blob.bin")) as response, open(tmp / "bare.bin", "wb") as stream:
            while True:
                block = response.read(1 << 16)
                if not block:
                    break
                stream.write(block)
        times["urllib"].append(time.perf_counter() - started)
        started = time.perf_counter()
        path = assets.download(entry, tmp / f"root{repeat}", progress=False)
        times["assets.download"].append(time.perf_counter() - started)
        path.unlink()
    median = {key: sorted(values)[1] for key, values in times.items()}
    del mirror.files["/blob.bin"]
    return {"bytes": len(blob), **{f"{key}_s": value for key, value in median.items()},
            "ratio": median["assets.download"] / median["urllib"]}


def rehearse(count: int, tmp: Path, network: bytes, trust: bool, model_dir: Path) -> list:
    import pagbench
    from pagbench.files import assets
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import prepare

    from tests.asset_mirror import Mirror, alexnet_state_dict_bytes, cifar_archive

    run = tmp / f"run{count}"
    os.environ.update({"PAGBENCH_CACHE_DIR": str(run / "cache"), "PAGBENCH_OFFLINE": "0"})
    mirror = Mirror()
    stages = Stages()
    try:
        mirror.files.update({"/cifar.tar.gz": cifar_archive(count=count), "/edm.pkl": network, "/alexnet.pth": alexnet_state_dict_bytes()})
        table = run / "table.json"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(json.dumps({
            "cifar10-python": {"url": mirror.url("/cifar.tar.gz"), "sha256": hashlib.sha256(mirror.files["/cifar.tar.gz"]).hexdigest()},
            "edm-cifar10-32x32-uncond-vp": {"url": mirror.url("/edm.pkl")},
            "alexnet": {"url": mirror.url("/alexnet.pth"), "sha256": hashlib.sha256(mirror.files["/alexnet.pth"]).hexdigest()}}))
        os.environ[assets.OVERRIDE_ENV] = str(table)
        stages.time("download", lambda: [assets.download(entry, progress=False) for entry in assets.select("cifar10")])
        options = EvaluationOptions.create(model="robustbench:Wong2020Fast", dataset="cifar10", num_images=count, batch_size=count,
                                           model_options={"model_dir": str(model_dir)},
                                           provider_options={"trust_pickle": "1"} if trust else {})
        setup = stages.time("load", lambda: prepare(options))
        batch = setup.dataset.split("test").batch(list(range(count)))
        stages.time("scores", lambda: setup.score_provider.scores(batch.images, batch.labels, setup.sigma, setup.score_kind))
        scores_seconds = stages.rows[-1][1]
        # the evaluation proper: its geometry time is scores + tangent spaces (scores timed above)
        result = pagbench.evaluate("robustbench:Wong2020Fast", dataset="cifar10", num_images=count, batch_size=count,
                                   model_options={"model_dir": str(model_dir)}, provider_options={"trust_pickle": "1"} if trust else {})
        timing = result["timing"]
        stages.rows.append(("tangent spaces (geometry − scores)", timing["geometry_seconds"] - scores_seconds, peak_rss_mib()))
        stages.rows.append(("metrics (model passes + every metric)", timing["model_seconds"] + timing["metrics_seconds"], peak_rss_mib()))
        missing = sorted(set(("accuracy", "score_cosine", "lpips_alignment", "on_manifold_fraction", "manifold_robustness_off"))
                         - set(result["metrics"]))
        if missing:
            raise SystemExit(f"metrics missing: {missing}: {result.get('unavailable')}")
    finally:
        mirror.stop()
        os.environ.pop(assets.OVERRIDE_ENV, None)
    return stages.rows


def published_size(images: int, score_images: int) -> dict:
    """Score pass per image and one score-jacobian basis of the published-size SongUNet (random weights)."""
    import torch

    from pagbench_plugins.diffusion.edm_preconditioning import VPPrecond
    from pagbench_plugins.learned.geometry import denoiser_tangent_basis
    from pagbench_plugins.learned.score_jacobian import DEFAULTS, _jvp_friendly_attention

    torch.manual_seed(0)
    network = VPPrecond(32, 3, 0, model_type="SongUNet", model_channels=128, channel_mult=[2, 2, 2], num_blocks=4,
                        attn_resolutions=[16], dropout=0.13, augment_dim=9, embedding_type="positional",
                        encoder_type="standard", decoder_type="standard", resample_filter=[1, 1]).eval().requires_grad_(False)
    parameters = sum(p.numel() for p in network.parameters())
    sigma = 0.05

    def score(x):  # [0,1] units, unconditional
        x_m1 = 2 * x - 1
        s = torch.full((x.shape[0],), 2 * sigma)
        return 2 * (network(x_m1, s) - x_m1) / (2 * sigma) ** 2

    x = torch.rand(score_images, 3, 32, 32)
    with torch.no_grad():
        score(x[:1])
        started = time.perf_counter()
        score(x)
        per_image = (time.perf_counter() - started) / score_images
    calls = {"n": 0}
    k, iterations, oversampling = DEFAULTS["k"], DEFAULTS["iterations"], DEFAULTS["oversampling"]
    sigma_jacobian = DEFAULTS["sigma"]

    def denoise(z):
        calls["n"] += 1
        x_m1 = 2 * z - 1
        s = torch.full((z.shape[0],), 2 * sigma_jacobian)
        return z + sigma_jacobian ** 2 * 2 * (network(x_m1, s) - x_m1) / (2 * sigma_jacobian) ** 2

    figures = {"parameters": parameters, "score_seconds_per_image": per_image, "k": k, "iterations": iterations,
               "oversampling": oversampling, "tangent_images": images}
    if images:  # memory grows with (k + oversampling) × the network's activations: several GB at this size
        y = torch.rand(images, 3, 32, 32)
        with torch.enable_grad(), _jvp_friendly_attention():
            started = time.perf_counter()
            denoiser_tangent_basis(denoise, y, k, iterations, oversampling, chunk=images)
            tangent_seconds = time.perf_counter() - started
        figures.update(tangent_seconds_per_image=tangent_seconds / images, tangent_over_score_pass=tangent_seconds / images / per_image)
    figures["peak_rss_mib"] = peak_rss_mib()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="16,64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--published-size", action="store_true")
    parser.add_argument("--published-images", type=int, default=0, help="images for one published-size tangent basis (0: none)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ["PAGBENCH_DOWNLOAD_RETRY_DELAY"] = "0"
    for key in ("http_proxy", "HTTP_PROXY"):
        os.environ.pop(key, None)
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        os.environ["PAGBENCH_CACHE_DIR"] = str(tmp / "cache0")
        network, trust, what = _network_bytes(tmp)
        model_dir = _robustbench_dir(tmp)
        print(f"EDM network: {what}; torch threads {args.threads}")
        from tests.asset_mirror import Mirror

        mirror = Mirror()
        try:
            figures = throughput(mirror, tmp)
        finally:
            mirror.stop()
        print(f"downloader vs bare urllib, {figures['bytes'] / 1e6:.0f} MB from 127.0.0.1 (median of 3): "
              f"{figures['assets.download_s']:.2f} s vs {figures['urllib_s']:.2f} s, ratio {figures['ratio']:.2f} "
              f"(the downloader also hashes the file)")
        for count in [int(value) for value in args.images.split(",") if value]:
            rows = rehearse(count, tmp, network, trust, model_dir)
            print(f"\n{count} images: stage | seconds | peak RSS MiB")
            for name, seconds, rss in rows:
                print(f"  {name} | {seconds:.2f} | {rss:.0f}")
            print(f"  total | {sum(row[1] for row in rows):.2f} |")
    if args.published_size:
        figures = published_size(args.published_images, 4)
        print(f"\npublished-size SongUNet ({figures['parameters'] / 1e6:.1f} M parameters, random weights): score pass "
              f"{figures['score_seconds_per_image']:.3f} s/image; peak RSS {figures['peak_rss_mib']:.0f} MiB")
        if "tangent_seconds_per_image" in figures:
            print(f"  score-jacobian k={figures['k']} iterations={figures['iterations']} oversampling={figures['oversampling']}: "
                  f"{figures['tangent_seconds_per_image']:.1f} s/image (= {figures['tangent_over_score_pass']:.0f} score passes; "
                  f"floor k = {figures['k']})")


if __name__ == "__main__":
    main()
