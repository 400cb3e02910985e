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
