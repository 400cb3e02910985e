"""Training loop, model store, resume, and the zoo resolving names to recipes."""

import json

import pytest
import torch

from pagbench.errors import PagbenchError
from pagbench_plugins.zoo.training import TrainingRecipe, is_trained, recipe_dir, train

TINY = dict(dataset="synthetic", width=4, epochs=2, lr=0.05, batch_size=256, lr_milestones=(1,), augment="none")


@pytest.fixture(scope="module")
def synthetic():
    """The embedded distribution with a small training split, so training tests stay quick."""
    from pagbench_plugins.synthetic.dataset import build_dataset

    return build_dataset(train_size=1000, test_size=200)


def build(synthetic):
    from pagbench_plugins.zoo.build import architecture

    return lambda recipe: (lambda: architecture(recipe, synthetic))


@pytest.mark.slow  # trains or fits a model
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
        from pagbench.models.loading import load_model

        class Other:
            name = "example-other"

        load_model("resnet18-synthetic-gnorm-0.01", Other())


def test_existing_recipe_ids_do_not_change_and_amp_enters_the_id_only_when_on():
    # ids of HEAD's pagbench/training.py before the GPU switches (committed leaderboard entries name them)
    assert TrainingRecipe(dataset="cifar10", regime="noise", strength=0.1).identifier == "resnet18-w64-cifar10-noise-0.1-s0-8cd4faeb04"
    pgd = TrainingRecipe(dataset="synthetic", regime="pgd", strength=0.3, width=8, regime_options={"steps": 3, "step_factor": 2.0},
                         dataset_version="1")
    assert pgd.identifier == "resnet18-w8-synthetic-pgd-0.3-s0-759dc8c12f"
    assert "amp" not in pgd.as_dict()
    bf16 = pgd.with_overrides(amp="bf16")
    assert bf16.as_dict()["amp"] == "bf16" and bf16.identifier != pgd.identifier


def test_amp_and_compile_reject_gnorm_with_the_reason(synthetic):
    from pagbench_plugins.zoo.training import TrainingOptions

    with pytest.raises(PagbenchError, match="fp16 excludes gnorm.*underflows"):
        TrainingRecipe(regime="gnorm", strength=0.1, amp="fp16", **TINY).validate()
    TrainingRecipe(regime="gnorm", strength=0.1, amp="bf16", **TINY).validate()
    with pytest.raises(PagbenchError, match="amp must be one of"):
        TrainingRecipe(amp="fp8", **TINY).validate()
    recipe = TrainingRecipe(regime="gnorm", strength=0.1, **TINY)
    with pytest.raises(PagbenchError, match="--compile excludes gnorm"):
        train(recipe, build(synthetic)(recipe), synthetic, None, progress=False, options=TrainingOptions(compile=True))
    assert not recipe_dir(recipe).exists()


def _per_example_augment(images, generator):
    """The loop the batched augmentation replaced (pagbench 0.1: one crop and flip per example)."""
    import torch.nn.functional as functional

    batch, _, height, width = images.shape
    padded = functional.pad(images, (4, 4, 4, 4), mode="reflect")
    rows = torch.randint(0, 9, (batch,), generator=generator)
    cols = torch.randint(0, 9, (batch,), generator=generator)
    crops = torch.stack([padded[i, :, rows[i] : rows[i] + height, cols[i] : cols[i] + width] for i in range(batch)])
    flips = torch.rand(batch, generator=generator) < 0.5
    crops[flips] = crops[flips].flip(-1)
    return crops


def test_batched_crop_and_flip_is_bit_identical_to_the_per_example_loop():
    from pagbench_plugins.zoo.training import augment

    images = torch.rand(37, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    recipe = TrainingRecipe(dataset="cifar10", augment="crop-flip")
    first, second = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(3):  # same draws in the same order: the generators stay in step
        batched, looped = augment(images, recipe, first), _per_example_augment(images, second)
        assert batched.is_contiguous() and torch.equal(batched, looped)
    assert torch.equal(first.get_state(), second.get_state())
    assert augment(images, TrainingRecipe(dataset="cifar10", augment="none"), first) is images


def test_resident_split_covers_in_memory_splits_only():
    from pagbench.evaluation.data import TensorSplit
    from pagbench_plugins.datasets.splits import Uint8Split
    from pagbench_plugins.zoo.training import resident_split

    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(6)
    uint8 = Uint8Split(images, labels)
    resident = resident_split(uint8, torch.device("cpu"))
    index = torch.tensor([4, 1, 1])
    got_images, got_labels = resident.batch(index)
    assert torch.equal(got_images, uint8.batch(index.tolist()).images) and torch.equal(got_labels, labels[index])
    assert resident_split(TensorSplit(images.float() / 255, labels), torch.device("cpu")) is not None

    class FileBacked(TensorSplit):  # a subclass may read differently: streamed, not resident
        pass

    assert resident_split(FileBacked(images.float(), labels), torch.device("cpu")) is None


@pytest.mark.slow
def test_device_data_and_host_batches_train_bit_identical_weights_without_per_step_syncs(synthetic, monkeypatch):
    from pagbench_plugins.regimes import noise_loss
    from pagbench_plugins.zoo.training import TrainingOptions

    syncs = {"n": 0}
    item, boolean = torch.Tensor.item, torch.Tensor.__bool__

    def counted(original):
        def wrapper(self, *args):
            syncs["n"] += 1
            return original(self, *args)
        return wrapper

    monkeypatch.setattr(torch.Tensor, "item", counted(item))
    monkeypatch.setattr(torch.Tensor, "__bool__", counted(boolean))
    states, histories, counts = [], [], []
    for device_data, batch_size in ((False, 100), (True, 100), (True, 500)):
        recipe = TrainingRecipe(regime="noise", strength=0.1, **{**TINY, "augment": "crop-flip", "epochs": 1, "batch_size": batch_size})
        for path in (recipe_dir(recipe).iterdir() if recipe_dir(recipe).exists() else []):
            path.unlink()
        syncs["n"] = 0
        model, record = train(recipe, build(synthetic)(recipe), synthetic, noise_loss, progress=False,
                              options=TrainingOptions(device_data=device_data))
        counts.append(syncs["n"])
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        histories.append(record["history"])
        assert record["execution"]["device_data"] is device_data and record["execution"]["deterministic"] is True
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    assert histories[0] == histories[1]
    assert counts[1] == counts[2]  # 10 steps or 2 steps per epoch: the same host syncs (per epoch, not per step)


@pytest.mark.slow
def test_bf16_autocast_and_channels_last_train_on_cpu(synthetic):
    from pagbench_plugins.regimes import gnorm_loss
    from pagbench_plugins.zoo.training import TrainingOptions

    recipe = TrainingRecipe(regime="gnorm", strength=0.01, amp="bf16", **{**TINY, "epochs": 1})  # double backward under autocast
    model, record = train(recipe, build(synthetic)(recipe), synthetic, gnorm_loss, progress=False,
                          options=TrainingOptions(channels_last=True))
    assert record["recipe"]["amp"] == "bf16" and record["execution"]["channels_last"] is True
    assert all(torch.isfinite(value).all() for value in model.state_dict().values() if value.is_floating_point())
    assert all(value.is_contiguous() for value in model.state_dict().values())  # stored weights in the default layout

    from pagbench_plugins.regimes import standard_loss

    fp16 = TrainingRecipe(regime="standard", amp="fp16", **{**TINY, "epochs": 1})  # with a GradScaler
    _, record = train(fp16, build(synthetic)(fp16), synthetic, standard_loss, progress=False)
    assert record["identifier"] != TrainingRecipe(regime="standard", **{**TINY, "epochs": 1}).identifier
    assert all(map(lambda h: h["loss"] == h["loss"], record["history"]))  # finite, not NaN


@pytest.mark.slow
def test_gpu_check_degrades_to_a_cpu_run_that_says_cuda_is_absent(tmp_path, capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("PAGBENCH_CACHE_DIR", str(tmp_path))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--cpu-only", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "CUDA absent" in out and "no GPU figures" in out
    for section in ("(a) CPU vs CUDA", "(b) training throughput", "(c) evaluation throughput", "(d) projected GPU-hours"):
        assert section in out, section
    assert "score_cosine" in out and "(CUDA absent: no comparison)" in out
    for regime in ("standard", "gnorm", "pgd-10"):
        assert f"  {regime:<9} fp32" in out
    assert "gnorm     fp16" in out and "excluded: gnorm's input-gradient penalty" in out
    assert "device-resident" in out and "images/s" in out
    assert "not a GPU projection: CUDA absent" in out and "device-hours" in out


def test_gpu_check_times_the_training_loops_own_step(monkeypatch):
    """benchmarks/gpu_check.py (b) measures ``training.training_step``, the step ``train`` runs,
    with the cifar10 recipe's regime options (pgd-10: 10 attack steps)."""
    import importlib.util
    from pathlib import Path

    import torch

    from pagbench_plugins.zoo import training

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = []
    real = training.training_step

    def counting(network, optimizer, scaler, loss_fn, images, labels, recipe, device_type, amp_dtype):
        seen.append((recipe.regime, recipe.regime_options, amp_dtype, type(optimizer).__name__, scaler is not None))
        return real(network, optimizer, scaler, loss_fn, images, labels, recipe, device_type, amp_dtype)

    monkeypatch.setattr(training, "training_step", counting)
    size = dict(width=4, batch=4, side=8, warmup=1, steps=1)
    assert module.step_throughput(torch.device("cpu"), "pgd-10", {"amp": "bf16"}, size) > 0
    assert seen == [("pgd", {"steps": 10, "step_factor": 2.0}, torch.bfloat16, "SGD", False)] * 2
