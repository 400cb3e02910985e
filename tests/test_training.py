"""Training loop, model store, resume, and the zoo resolving names to recipes."""

import json

import pytest
import torch

from pagbench.errors import PagbenchError
from pagbench.training import TrainingRecipe, is_trained, recipe_dir, train

TINY = dict(dataset="synthetic", width=4, epochs=2, lr=0.05, batch_size=256, lr_milestones=(1,), augment="none")


@pytest.fixture(scope="module")
def synthetic():
    """The embedded distribution with a small training split, so training tests stay quick."""
    from pagbench_plugins.synthetic.dataset import build_dataset

    return build_dataset(train_size=1000, test_size=200)


def build(synthetic):
    from pagbench_plugins.zoo.build import architecture

    return lambda recipe: (lambda: architecture(recipe, synthetic))


def test_training_is_deterministic_and_resumes_exactly_after_an_interruption(synthetic):
    from pagbench_plugins.regimes import noise_loss

    recipe = TrainingRecipe(regime="noise", strength=0.1, **TINY)
    reference, record = train(recipe, build(synthetic)(recipe), synthetic, noise_loss, progress=False)
    reference_state = {k: v.clone() for k, v in reference.state_dict().items()}
    assert json.loads((recipe_dir(recipe) / "recipe.json").read_text())["test_accuracy"] == record["test_accuracy"]

    # same recipe with another seed-free twin: wipe the store, interrupt in epoch 2, resume
    for path in recipe_dir(recipe).iterdir():
        path.unlink()
    calls = {"n": 0}
    steps_per_epoch = -(-len(synthetic.split("train")) // recipe.batch_size)

    def interrupting(model, images, labels, strength):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 2:
            raise KeyboardInterrupt
        return noise_loss(model, images, labels, strength)

    with pytest.raises(KeyboardInterrupt):
        train(recipe, build(synthetic)(recipe), synthetic, interrupting, progress=False)
    assert (recipe_dir(recipe) / "checkpoint.pt").exists() and not is_trained(recipe)
    resumed, record = train(recipe, build(synthetic)(recipe), synthetic, noise_loss, progress=False)
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, reference_state[key]), key


def test_weights_load_with_weights_only(synthetic):
    from pagbench_plugins.regimes import standard_loss

    recipe = TrainingRecipe(regime="standard", **{**TINY, "epochs": 1})
    train(recipe, build(synthetic)(recipe), synthetic, standard_loss, progress=False)
    state = torch.load(recipe_dir(recipe) / "weights.pt", weights_only=True)
    assert "head.weight" in state


@pytest.mark.parametrize("field, value", [("epochs", 0), ("strength", -1.0), ("lr", 0.0), ("batch_size", 0)])
def test_bad_recipes_are_rejected(field, value, synthetic):
    recipe = TrainingRecipe(**{**TINY, field: value})
    with pytest.raises(PagbenchError):
        train(recipe, build(synthetic)(recipe), synthetic, None, progress=False)
    assert not recipe_dir(recipe).exists()


def test_zoo_names_parse_and_reject_nonsense():
    from pagbench_plugins.zoo.recipes import parse_name, recipe_for

    assert parse_name("resnet18-synthetic-noise-0.1") == ("synthetic", "noise", 0.1, 0)
    assert parse_name("resnet18-digits-distractor-pgd-1-s3") == ("digits-distractor", "pgd", 1.0, 3)
    assert recipe_for("synthetic", "noise", 0).regime == "standard"
    with pytest.raises(PagbenchError, match="not a number"):
        parse_name("resnet18-synthetic-noise-big")


@pytest.mark.slow
def test_zoo_model_trains_on_first_use_then_loads(monkeypatch):
    import pagbench
    from pagbench_plugins.zoo import recipes

    monkeypatch.setitem(recipes.DATASET_DEFAULTS, "synthetic", {**{k: v for k, v in TINY.items() if k != "dataset"}, "epochs": 1})
    first = pagbench.evaluate("resnet18-synthetic-gnorm-0.01", num_images=50)
    assert first["config"]["model_card"]["regime"] == "gnorm" and first["config"]["model_card"]["strength"] == 0.01
    second = pagbench.evaluate("resnet18-synthetic-gnorm-0.01", num_images=50)
    assert second["metrics"] == first["metrics"]
    with pytest.raises(PagbenchError, match="trained on 'synthetic', not on 'example"):
        from pagbench.models import load_model

        class Other:
            name = "example-other"

        load_model("resnet18-synthetic-gnorm-0.01", Other())
