"""``pagbench gallery``: click over :func:`pagbench.leaderboard.gallery.gallery` (imported lazily, so
``pagbench --help`` imports neither torch nor matplotlib)."""

from __future__ import annotations

import click

from pagbench.errors import PagbenchError
from pagbench.evaluation.gradients import GRADIENTS
from pagbench.evaluation.scores import SCORE_KINDS


@click.command("gallery")
@click.option("--model", "models", multiple=True, required=True, help="Model name (repeatable; one column each).")
@click.option("--dataset", default=None, show_default=True)
@click.option("--split", default="test", show_default=True)
@click.option("--num-images", type=int, default=4, show_default=True, help="Rows: the first N images of the split.")
@click.option("--gradient", type=click.Choice(GRADIENTS), default=None, help="Default: the dataset's (else logprob), as for evaluate.")
@click.option("--score", type=click.Choice(("auto", *SCORE_KINDS)), default="auto", show_default=True)
@click.option("--sigma", type=float, default=None, help="Noise level of the score in [0,1] pixel units (default: the provider's).")
@click.option("--score-provider", default=None, help="Score provider (default: the dataset's).")
@click.option("--provider-option", "provider_option", multiple=True, help="KEY=VALUE passed to the score provider.")
@click.option("--data-root", default=None, type=click.Path())
@click.option("--device", default="cpu", show_default=True)
@click.option("--display", type=click.Choice(["auto", "rgb", "sum"]), default="auto", show_default=True,
              help="3-channel gradients as rgb = (ĝ+1)/2 (auto) or sum = channel sum on a diverging map.")
@click.option("--title", default=None, help="Figure title (default: dataset, gradient and score).")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="The PNG to write.")
def gallery_command(models, output, display, title, provider_option, **options):
    """Gradient gallery: per image, the input, each model's input gradient and the score.

    Gradients and score are max-normalised (ĝ = g / max|g| per image) and share one
    colour scale; each gradient is labelled with its cosine to the score and the prediction.
    """
    from pagbench.leaderboard.gallery import gallery

    provider_options = {}
    for item in provider_option:
        if "=" not in item:
            raise PagbenchError(f"--provider-option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        provider_options[key] = value
    path = gallery(list(models), output, display=display, title=title, provider_options=provider_options, **options)
    click.echo(f"wrote {path}", err=True)
