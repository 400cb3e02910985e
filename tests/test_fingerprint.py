"""The one canonical fingerprint (pagbench.files.fingerprint) keeps every stored identifier bit-identical.

The expected values were computed by the code before the helper replaced its copies (issue 11):
model-store ids of zoo recipes and fitted estimators (stored models and the committed leaderboard
name them), geometry-cache keys, dataset fingerprints and leaderboard entry ids.
"""

import json
from pathlib import Path

import pytest

from pagbench.files.fingerprint import canonical_json, fingerprint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dataset, regime, strength, extra, expected", [
    ("synthetic", "standard", 0.0, {}, "resnet18-w8-synthetic-standard-0-s0-374f17da32"),
    ("synthetic", "pgd", 0.3, {}, "resnet18-w8-synthetic-pgd-0.3-s0-08bb028639"),
    ("cifar10", "gnorm", 0.01, {"preset": "paper"}, "resnet18-w64-cifar10-gnorm-0.01-s0-b041920054"),
    ("synthetic", "noise", 0.1, {"seed": 2, "epochs": 3}, "resnet18-w8-synthetic-noise-0.1-s2-fa03855344"),
    ("mnist-distractor", "pgd", 1.0, {}, "resnet18-w64-mnist-distractor-pgd-1-s0-5de0322d03"),
])
def test_zoo_recipe_ids_are_unchanged(dataset, regime, strength, extra, expected):
    from pagbench_plugins.zoo.recipes import recipe_for

    assert recipe_for(dataset, regime, strength, **extra).identifier == expected


def test_fitted_estimator_ids_are_unchanged():
    from pagbench_plugins.learned.store import AutoencoderRecipe, DenoiserRecipe, identifier

    assert identifier(DenoiserRecipe(dataset="synthetic")) == "denoiser-synthetic-w32-s0-3b121ca868"
    assert identifier(AutoencoderRecipe(dataset="synthetic", latent_dim=4, steps=3, width=8, batch_size=8)) == \
        "autoencoder-synthetic-k4-w8-s0-1747388419"


def test_cache_keys_and_dataset_fingerprints_are_unchanged():
    from pagbench.evaluation.cache import GeometryCache
    from pagbench.extensions.registry import datasets

    key = GeometryCache.key(kind="score", dataset="abc", sigma=0.1, indices=[1, 2], provider=None)
    assert key == "9bfb0dfb11a17b0eab92fb388525a6e50f1dcc78fa6fd50af8075fe97b4248e8"
    synthetic = datasets().get("synthetic").factory(None)
    assert synthetic.fingerprint == "51e1948febe6f516"
    assert fingerprint({"name": synthetic.name, "config": synthetic.config}, 16) == "51e1948febe6f516"


def test_committed_entry_ids_and_content_hashes_are_the_compact_spelling():
    from pagbench.leaderboard.store import CONTENT_HASH

    paths = sorted((ROOT / "leaderboard" / "entries").glob("*/*.json"))
    assert paths
    for path in paths:
        entry = json.loads(path.read_text())
        assert fingerprint(entry["entry_key"], 12, compact=True, strict=True) == entry["entry_id"] == path.stem.rsplit("--", 1)[1]
        body = {name: value for name, value in entry.items() if name != CONTENT_HASH}
        assert fingerprint(body, compact=True, strict=True, ascii=False) == entry[CONTENT_HASH], path.name


def test_canonical_json_spellings():
    value = {"b": [1, 1.0, 0.1, 1e-05], "a": "σ"}
    assert canonical_json(value) == '{"a": "\\u03c3", "b": [1, 1.0, 0.1, 1e-05]}'
    assert canonical_json(value, compact=True, ascii=False) == '{"a":"σ","b":[1,1.0,0.1,1e-05]}'
    assert canonical_json({"path": Path("x")}) == '{"path": "x"}'  # non-JSON values as str ...
    with pytest.raises(TypeError):
        canonical_json({"path": Path("x")}, strict=True)  # ... unless strict
    with pytest.raises(ValueError):
        canonical_json(float("nan"), strict=True)
    assert fingerprint(value) == fingerprint({"a": "σ", "b": [1, 1.0, 0.1, 1e-05]}) and len(fingerprint(value, 10)) == 10
