"""Sanity flags: each flag is raised by a model built to trigger it and not by a clean model."""

import pytest
import torch
import torch.nn as nn

from pagbench.evaluation import sanity
from pagbench.errors import PagbenchError

SHAPE = (3, 8, 8)
PIXELS = 3 * 8 * 8


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.round(torch.rand(8, *SHAPE, generator=generator) * 255) / 255  # on the 8-bit grid
    labels = torch.arange(8) % 10
    return images, labels


def linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, 10)).eval()


class Noisy(nn.Module):
    """A randomised model: noise added to the logits on every call."""

    def __init__(self):
        super().__init__()
        self.body = linear()

    def forward(self, x):
        return self.body(x) + 0.1 * torch.randn(x.shape[0], 10)


class GridGated(nn.Module):
    """A masked gradient: the logits are gated by exp(−10⁹‖x − round₂₅₅(x)‖²), 1 on the 8-bit grid and
    exactly 0 a tiny step off it, so the gradient is fine at the data and vanishes next to it."""

    def __init__(self):
        super().__init__()
        self.body = linear()

    def forward(self, x):
        off = x - torch.round(x * 255) / 255
        gate = torch.exp(-(off**2).flatten(1).sum(1, keepdim=True) * 1e9)
        return self.body(x) * gate


class Corner(nn.Module):
    """Looks at a 2×2 corner only: the gradient is exactly zero on 94% of the pixels."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 2 * 2, 10)

    def forward(self, x):
        return self.linear(x[:, :, :2, :2].flatten(1))


class StubbornDropout(nn.Module):
    """A module that ignores eval(): its dropout stays in train mode."""

    def __init__(self):
        super().__init__()
        self.body = linear()
        self.drop = nn.Dropout(0.5)

    def train(self, mode=True):
        super().train(mode)
        self.drop.training = True
        return self

    def forward(self, x):
        return self.drop(self.body(x))


def batchnorm_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def raised(flags):
    return sorted(name for name, item in flags.items() if item["raised"])


def test_a_clean_model_raises_no_flag(batch):
    flags = sanity.check_model(linear(), *batch)
    assert set(flags) == set(sanity.FLAG_NAMES) - {"degenerate_gradients"}
    assert raised(flags) == []
    assert flags["probability_outputs"]["value"] == 0.0 and flags["stochastic_forward"]["value"] == 0.0
    assert flags["vanishing_gradient"]["value"] == pytest.approx(1.0, abs=0.05)
    assert flags["sparse_gradient"]["value"] == 0.0 and flags["train_mode_layers"]["value"] == 0


def test_a_deterministic_model_with_nan_outputs_is_not_called_stochastic(batch):
    class HalfNan(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = linear()

        def forward(self, x):
            logits = self.body(x)
            return torch.where(torch.arange(len(x))[:, None] % 2 == 0, torch.full_like(logits, float("nan")), logits)

    flags = sanity.check_model(HalfNan().eval(), *batch)
    assert flags["stochastic_forward"]["value"] == 0.0 and not flags["stochastic_forward"]["raised"]


def test_softmax_outputs_raise_probability_outputs(batch):
    model = nn.Sequential(linear(), nn.Softmax(dim=1)).eval()
    flags = sanity.check_model(model, *batch)
    assert flags["probability_outputs"]["raised"] and flags["probability_outputs"]["value"] == 1.0
    assert "8 of 8" in flags["probability_outputs"]["detail"]


def test_a_randomised_model_raises_stochastic_forward_and_leaves_the_random_state(batch):
    state = torch.random.get_rng_state()
    flags = sanity.check_model(Noisy().eval(), *batch)
    assert torch.equal(state, torch.random.get_rng_state())
    assert flags["stochastic_forward"]["raised"] and flags["stochastic_forward"]["value"] > 1e-3
    assert not flags["probability_outputs"]["raised"]


def test_batchnorm_handed_over_in_train_mode_is_flagged_and_its_statistics_are_kept(batch):
    model = batchnorm_model()  # nn.Module starts in train mode: the user never called eval()
    handed_over = sanity.training_layers(model)
    assert handed_over["layers"] == ["1"] and handed_over["any_training"]
    model.eval()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    flags = sanity.check_model(model, *batch, handed_over=handed_over)
    assert flags["train_mode_layers"]["raised"] and flags["train_mode_layers"]["value"] == 1
    assert "1" in flags["train_mode_layers"]["detail"]
    assert all(torch.equal(before[name], buffer) for name, buffer in model.named_buffers())  # running stats restored
    assert not any(module.training for module in model.modules())

    clean = batchnorm_model().eval()  # handed over in eval mode
    flags = sanity.check_model(clean, *batch, handed_over=sanity.training_layers(clean))
    assert not flags["train_mode_layers"]["raised"]


def test_a_module_that_ignores_eval_is_flagged(batch):
    model = StubbornDropout().eval()
    assert model.drop.training
    flags = sanity.check_model(model, *batch)
    assert flags["train_mode_layers"]["raised"] and "still in train mode after eval(): drop" in flags["train_mode_layers"]["detail"]
    assert flags["stochastic_forward"]["raised"]


def test_a_train_mode_model_without_mode_dependent_layers_is_not_flagged(batch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, 10))  # train mode, but train and eval agree
    flags = sanity.check_model(model.eval(), *batch, handed_over=sanity.training_layers(model.train()))
    assert not flags["train_mode_layers"]["raised"]


def test_a_gradient_that_vanishes_under_tiny_noise_is_flagged(batch):
    flags = sanity.check_model(GridGated().eval(), *batch)
    assert flags["vanishing_gradient"]["raised"] and flags["vanishing_gradient"]["value"] < 1e-6
    assert not flags["sparse_gradient"]["raised"]


def test_a_gradient_zero_on_most_pixels_is_flagged(batch):
    flags = sanity.check_model(Corner().eval(), *batch)
    assert flags["sparse_gradient"]["raised"] and flags["sparse_gradient"]["value"] == pytest.approx(1 - 12 / PIXELS)
    assert not flags["vanishing_gradient"]["raised"]


def test_degenerate_gradients_from_the_counts():
    flag = sanity.degenerate_flag({"zero_gradient": 2, "nonfinite_gradient": 1, "nonfinite_logits": 0}, 10)
    assert flag["raised"] and flag["value"] == pytest.approx(0.3) and "3 of 10 images" in flag["detail"]
    assert not sanity.degenerate_flag({"zero_gradient": 0, "nonfinite_gradient": 0, "nonfinite_logits": 0}, 10)["raised"]
    record = sanity.sanity_record(None, {"zero_gradient": 1}, 100)
    assert record["raised"] == [] and list(record["flags"]) == ["degenerate_gradients"] and record["checked_images"] == 0


def test_thresholds_are_configurable_and_checked(batch):
    thresholds = sanity.resolve_thresholds({"probability_outputs": "1", "vanishing_gradient": 0})
    model = nn.Sequential(linear(), nn.Softmax(dim=1)).eval()
    flags = sanity.check_model(model, *batch, thresholds=thresholds)
    assert flags["probability_outputs"]["threshold"] == 1.0 and not flags["probability_outputs"]["raised"]
    for overrides, message in [({"probability_outputs": 2}, r"probability_outputs: expected a number in \[0, 1\], got 2"),
                               ({"stochastic_forward": -1}, r"in \[0, ∞\]"),
                               ({"sparse_gradient": "abc"}, "got 'abc'"),
                               ({"degenerate_gradients": float("nan")}, "expected a number"),
                               ({"probability_output": 0.5}, "did you mean probability_outputs")]:
        with pytest.raises(PagbenchError, match=message) as error:
            sanity.resolve_thresholds(overrides)
        assert "\n" not in str(error.value)


def test_check_batch_on_the_runner_s_first_batch_and_the_result_records_it():
    """The call the runner makes (``check_batch(setup, first context)``) and what results record."""
    import json

    import pagbench
    from pagbench.evaluation.cache import GeometryCache
    from pagbench.evaluation.options import EvaluationOptions
    from pagbench.evaluation.runner import iter_batches, prepare
    from pagbench.results.schema import validate_result as follows_schema

    setup = prepare(EvaluationOptions(model="bayes", num_images=10, metrics=("score_cosine",)))
    context = next(iter(iter_batches(setup, range(10), cache=GeometryCache())))
    checked = sanity.check_batch(setup, context)
    assert checked["checked_images"] == 10 and raised(checked["flags"]) == []
    result = pagbench.evaluate("bayes", num_images=10, metrics=("score_cosine",))
    assert "degenerate_gradients" in result["sanity"]["flags"] and result["sanity"]["raised"] == []
    result["sanity"] = sanity.sanity_record(checked, result["degenerate"], 10)
    assert list(result["sanity"]["flags"]) == list(sanity.FLAG_NAMES)
    assert follows_schema(json.loads(json.dumps(result))) is None


class TrainModeFails(nn.Module):
    """Handed over in train mode; its train-mode forward raises (as BatchNorm does on one image)."""

    def __init__(self):
        super().__init__()
        self.body = linear()
        self.norm = nn.BatchNorm1d(10)

    def forward(self, x):
        if self.training:
            raise ValueError("Expected more than 1 value per channel when training")
        return self.norm(self.body(x))


def test_a_train_mode_forward_that_raises_is_reported_unchecked_not_zero(batch):
    model = TrainModeFails()
    handed_over = sanity.training_layers(model)
    flags = sanity.check_model(model.eval(), *batch, handed_over=handed_over)
    entry = flags["train_mode_layers"]
    assert entry["value"] is None and not entry["raised"]
    assert "not compared: its train-mode forward raised ValueError: Expected more than 1 value" in entry["detail"]
