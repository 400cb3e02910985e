"""Issue 11's bugs, each pinned by a test that failed before the fix: the CLI keeps third-party
warnings visible, ``prepare`` does no heavy work for LPIPS, the headline ε is the one asked for,
the shape probe runs on the evaluated split."""

import json
import subprocess
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner

import pagbench
from pagbench import ModelCard, ModelEntry, hookimpl
from pagbench.errors import DegenerateImagesWarning, PagbenchError
from pagbench.evaluation.metrics import Metric, MetricOutput

CARD = ModelCard(architecture="test", dataset="synthetic")


class NanLogits(torch.nn.Module):
    """The Bayes model with NaN logits for the images whose first pixel exceeds 0.5."""

    def __init__(self, distribution):
        super().__init__()
        from pagbench_plugins.synthetic.providers import BayesClassifier

        self.bayes = BayesClassifier(distribution)

    def forward(self, images):
        logits = self.bayes(images)
        return torch.where((images[:, 0, 0, 0] > 0.5)[:, None], torch.full_like(logits, float("nan")), logits)


class Chatty(Metric):
    name = "chatty"
    higher_is_better = None

    def compute(self, context):
        warnings.warn("a third-party library has something to say", FutureWarning)
        return MetricOutput({self.name: torch.zeros(context.images.shape[0], dtype=torch.float64)})


class Plugin:
    @hookimpl
    def register_models(self, register):
        register(ModelEntry("nan-logits", lambda name, dataset, device: NanLogits(dataset.distribution), CARD))

    @hookimpl
    def register_metrics(self, register):
        register(Chatty())


@pytest.fixture
def plugin(register_plugin):
    register_plugin(Plugin(), name="issue-11-plugin")


def test_the_cli_keeps_third_party_warnings_and_silences_only_its_degenerate_image_warning(plugin, tmp_path):
    from pagbench.cli import build_cli

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        invoked = CliRunner().invoke(build_cli(), ["evaluate", "--model", "nan-logits", "--num-images", "40", "--metric", "chatty",
                                                   "--metric", "score_cosine", "--no-progress", "--output", str(tmp_path / "r.json")])
    assert invoked.exit_code == 0, invoked.output
    categories = {type(item.message) for item in caught}
    assert FutureWarning in categories  # before: simplefilter("ignore") swallowed it
    assert DegenerateImagesWarning not in categories
    assert "degenerate gradients" in invoked.output  # the table reports what the warning would have said
    assert json.loads((tmp_path / "r.json").read_text())["degenerate"]["nonfinite_logits"] > 0


def test_the_library_still_warns_about_degenerate_images(plugin):
    with pytest.warns(DegenerateImagesWarning, match="degenerate"):
        pagbench.evaluate("nan-logits", num_images=20, metrics=("score_cosine",))


def test_prepare_neither_imports_lpips_nor_builds_alexnet(tmp_path):
    """Availability is decided from the backbone file alone; the network is built on the first batch."""
    backbone = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, backbone)
    code = (
        "import sys, pagbench\n"
        "from pagbench.evaluation.options import EvaluationOptions\n"
        "from pagbench.evaluation.runner import prepare\n"
        "setup = prepare(EvaluationOptions(model='bayes', num_images=10))\n"
        "assert 'lpips_alignment' in [m.name for m in setup.metrics], setup.unavailable\n"
        "print('lpips' in sys.modules)\n"
    )
    env = {"PAGBENCH_LPIPS_BACKBONE": str(backbone), "PAGBENCH_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    import os

    env.update({key: value for key, value in os.environ.items() if key.startswith(("PAGBENCH_CACHE", "HOME", "XDG", "PAGBENCH_PLUGINS"))})
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == "False"


def test_a_missing_backbone_is_still_unavailable_at_prepare(tmp_path, monkeypatch):
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import prepare

    monkeypatch.setenv("PAGBENCH_LPIPS_BACKBONE", str(tmp_path / "missing.pth"))
    monkeypatch.setenv("PAGBENCH_OFFLINE", "1")
    setup = prepare(EvaluationOptions(model="bayes", num_images=10))
    assert str(tmp_path / "missing.pth") in setup.unavailable["lpips_alignment"]


def test_a_headline_epsilon_of_zero_is_refused_not_replaced_by_the_default():
    with pytest.raises(PagbenchError, match="headline-epsilon"):
        pagbench.evaluate("bayes", num_images=10, metrics=("manifold_robustness",), headline_epsilon=0.0)


def test_the_shape_probe_runs_on_the_evaluated_split(monkeypatch):
    from pagbench.models import loading as models
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import prepare

    probed = []
    original = models.check_output_shape

    def recording(model, dataset, device, split=None):
        probed.append(split)
        return original(model, dataset, device, split=split)

    monkeypatch.setattr(models, "check_output_shape", recording)
    prepare(EvaluationOptions(model="bayes", split="train", num_images=10, metrics=("accuracy",)))
    prepare(EvaluationOptions(model="bayes", split="test", num_images=10, metrics=("accuracy",)))
    assert probed == ["train", "test"]
