"""Gradient galleries: a PNG of the documented size, through the library and the CLI."""

import struct

import pytest
import torch
from click.testing import CliRunner

from pagbench import ModelCard, ModelEntry, ScoreProviderEntry, hookimpl
from pagbench.cli import build_cli
from pagbench.evaluation.scores import ScoreProvider

from .controls import ControlPlugin


def png_size(path):
    with open(path, "rb") as stream:
        header = stream.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_gallery_of_two_models_has_one_panel_per_image_and_column(register_plugin, tmp_path):
    from pagbench.leaderboard.gallery import compute_gallery, gallery_size, render_gallery

    register_plugin(ControlPlugin(), name="controls")
    data = compute_gallery(["bayes", "control-off"], num_images=3)
    assert data.images.shape == (3, 3, 16, 16) and data.score.shape == (3, 3, 16, 16)
    assert data.cosines["bayes"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert all(value < 0.9 for value in data.cosines["control-off"])  # off-manifold term: not aligned
    path = render_gallery(data, tmp_path / "figure.png")
    width, height = png_size(path)
    assert (width, height) == gallery_size(2, 3, with_score=True)
    assert width == 4 * 160  # input, two models, score
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
    render_gallery(data.subset(["control-off"]), tmp_path / "one.png", display="sum")
    assert png_size(tmp_path / "one.png") == gallery_size(1, 3)


def test_gallery_command_writes_the_png_and_rejects_bad_input(register_plugin, tmp_path):
    register_plugin(ControlPlugin(), name="controls")
    cli = build_cli()
    output = tmp_path / "out" / "fig.png"
    result = CliRunner().invoke(cli, ["gallery", "--model", "bayes", "--model", "control-on", "--num-images", "2",
                                      "--output", str(output)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert png_size(output)[0] == 4 * 160
    for args, message in (
        (["--model", "bayes", "--output", str(tmp_path / "fig.jpg")], "is a PNG file"),
        (["--model", "bayse", "--output", str(output)], "unknown model 'bayse'"),
        (["--model", "bayes", "--model", "bayes", "--output", str(output)], "each model once"),
        (["--model", "bayes", "--num-images", "0", "--output", str(output)], "--num-images must be positive"),
    ):
        result = CliRunner().invoke(cli, ["gallery", *args], catch_exceptions=False)
        assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_leaderboard_galleries_are_drawn_per_entry_linked_and_pruned(tmp_path):
    import json

    import pagbench
    from pagbench.leaderboard.gallery import draw_galleries
    from pagbench.leaderboard.render import build, gallery_path, overview_path
    from pagbench.leaderboard.store import add_results, load_entries

    source = tmp_path / "r.json"
    source.write_text(json.dumps(pagbench.evaluate("bayes", num_images=5, batch_size=5)))
    root = tmp_path / "lb"
    add_results([source], root)
    stale = root / "galleries" / "synthetic" / "gone--0123456789ab.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    report = draw_galleries(root, num_images=2)
    (entry,) = load_entries(root)
    assert sorted(report.written) == sorted([root / gallery_path(entry), root / overview_path("synthetic")])
    assert report.removed == [stale] and not stale.exists()
    build(root)
    board = (root / "README.md").read_text()
    assert f"[png]({gallery_path(entry)})" in board and f"({overview_path('synthetic')})" in board


def test_model_names_that_are_not_file_safe_get_their_own_card():
    from pathlib import Path

    from pagbench.leaderboard.render import card_path
    from pagbench.leaderboard.store import Entry

    def entry(model):
        return Entry(Path("x.json"), {"config": {"model": model, "dataset": "synthetic"}})

    assert card_path(entry("bayes")) == "cards/synthetic/bayes.md"
    assert card_path(entry("timm:resnet")) != card_path(entry("timm-resnet"))


# ------------------------------------------------------------- one pipeline with the runner
def test_gallery_cosines_are_the_runners_score_cosines_and_the_geometry_is_shared(register_plugin):
    import pagbench
    from pagbench.evaluation.cache import GeometryCache
    from pagbench.leaderboard.gallery import compute_gallery

    register_plugin(ControlPlugin(), name="controls")
    results = pagbench.evaluate(["bayes", "control-off"], num_images=8, batch_size=4, per_image=True, metrics=("score_cosine",))
    cache = GeometryCache(use_disk=False)
    data = compute_gallery(["bayes", "control-off"], num_images=3, first_image=2, cache=cache)
    for name, result in zip(("bayes", "control-off"), results):
        assert data.cosines[name] == pytest.approx(result["per_image"]["score_cosine"][2:5], rel=1e-12, abs=1e-12)
    assert cache.hits == 1  # the second model reads the first model's score: computed once


class _ProbeModels:
    """A linear classifier for any dataset's shape and classes, and a score taken at the dataset's
    score resolution (``Dataset.score_image_shape``), like EDM scores of ImageNet at 64×64."""

    @hookimpl
    def register_models(self, register):
        def factory(name, dataset, device):
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(dataset.dim, dataset.num_classes))

        register(ModelEntry("gallery-probe", factory, ModelCard("linear", "any")))

    @hookimpl
    def register_score_providers(self, register):
        register(ScoreProviderEntry("probe-score", lambda dataset, options: _ProbeScore(dataset), options=()))


class _ProbeScore(ScoreProvider):
    name = "probe-score"
    disk_cache = False

    def __init__(self, dataset):
        from pagbench.evaluation.scores import score_image_shape

        self.size = score_image_shape(dataset)[1:]

    def scores(self, images, labels, sigma, kind):
        from pagbench.evaluation.scores import resize_images

        return (0.5 - resize_images(images.double(), self.size))  # toward grey, at the score's resolution


def _fake_files(name, root):
    """Tiny files in the real on-disk formats (as tests/test_datasets.py writes them); None when
    the dataset needs no files."""
    from .test_datasets import write_cifar, write_mnist, write_npz

    if name == "cifar10":
        write_cifar(root / "cifar-10-batches-py")
    elif name.startswith("mnist-distractor"):
        write_mnist(root)
    elif name == "imagenet64":
        root.mkdir(parents=True, exist_ok=True)
        write_npz(root / "val_data.npz", 3, 0)
        write_npz(root / "train_data_batch_1.npz", 3, 1)
    elif name == "imagenet":
        from PIL import Image

        for wnid, color in (("n01440764", (255, 0, 0)), ("n01443537", (0, 0, 255))):
            folder = root / "val" / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (240, 260), color).save(folder / "ILSVRC2012_val_00000001.JPEG", format="JPEG")
    else:
        return None
    return str(root)


def _registered_datasets():
    from pagbench.extensions.registry import datasets

    return datasets().names()


@pytest.mark.parametrize("dataset", _registered_datasets())
@pytest.mark.parametrize("score_provider", [None, "probe-score"])
def test_a_gallery_over_every_dataset_is_a_picture_or_one_line(dataset, score_provider, register_plugin, tmp_path):
    from pagbench.errors import PagbenchError
    from pagbench.leaderboard.gallery import compute_gallery, gallery_size, render_gallery

    register_plugin(_ProbeModels(), name="gallery-probe")
    data_root = _fake_files(dataset, tmp_path / "data")
    try:
        data = compute_gallery(["gallery-probe"], dataset=dataset, num_images=2, data_root=data_root, score_provider=score_provider)
    except PagbenchError as error:  # e.g. a score provider that needs weights nobody fitted here
        assert "\n" not in str(error) and score_provider is None
        return
    if score_provider is not None:
        assert data.score is not None and all(abs(value) <= 1 for value in data.cosines["gallery-probe"])
    else:
        assert data.score is not None or data.score_note
    path = render_gallery(data, tmp_path / "g.png")
    assert png_size(path) == gallery_size(1, 2, with_score=data.score is not None)


def test_imagenet_gallery_compares_the_gradient_at_the_scores_resolution(register_plugin, tmp_path):
    """ImageNet is 224×224, its score 64×64: the gradient is resized like the runner's score_cosine."""
    import pagbench
    from pagbench.leaderboard.gallery import compute_gallery

    register_plugin(_ProbeModels(), name="gallery-probe")
    root = _fake_files("imagenet", tmp_path / "data")
    data = compute_gallery(["gallery-probe"], dataset="imagenet", num_images=2, data_root=root, score_provider="probe-score")
    assert data.gradients["gallery-probe"].shape == (2, 3, 224, 224) and data.score.shape == (2, 3, 64, 64)
    result = pagbench.evaluate("gallery-probe", dataset="imagenet", num_images=2, data_root=root, score_provider="probe-score",
                               metrics=("score_cosine",), per_image=True)
    assert data.cosines["gallery-probe"] == pytest.approx(result["per_image"]["score_cosine"], rel=1e-12)
