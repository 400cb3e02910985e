"""Gradient galleries: a PNG of the documented size, through the library and the CLI."""

import struct

import pytest
from click.testing import CliRunner

from pagbench.cli import build_cli

from .controls import ControlPlugin


def png_size(path):
    with open(path, "rb") as stream:
        header = stream.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_gallery_of_two_models_has_one_panel_per_image_and_column(register_plugin, tmp_path):
    from pagbench.gallery import compute_gallery, gallery_size, render_gallery

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
    from pagbench.board import build, draw_galleries, gallery_path, overview_path
    from pagbench.leaderboard import add_results, load_entries

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

    from pagbench.board import card_path
    from pagbench.leaderboard import Entry

    def entry(model):
        return Entry(Path("x.json"), {"config": {"model": model, "dataset": "synthetic"}})

    assert card_path(entry("bayes")) == "cards/synthetic/bayes.md"
    assert card_path(entry("timm:resnet")) != card_path(entry("timm-resnet"))
