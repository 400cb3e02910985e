"""Result documents: schema validation with errors that name the file."""

import json

import pytest

import pagbench
from pagbench.errors import PagbenchError
from pagbench.results import SCHEMA_VERSION, load_result, validate_result, write_result


@pytest.fixture(scope="module")
def result():
    return pagbench.evaluate("bayes", num_images=20)


def test_a_fresh_result_validates_and_round_trips(result, tmp_path):
    path = write_result(result, tmp_path / "r.json")
    assert load_result(path)["metrics"] == json.loads(json.dumps(result["metrics"]))
    assert result["schema_version"] == SCHEMA_VERSION
    for key in ("pagbench_version", "plugins", "created", "timing", "degenerate", "curves"):
        assert key in result
    for key in ("model", "dataset", "split", "num_images", "seed", "batch_size", "device", "dtype", "gradient", "score", "sigma", "score_provider", "manifold_provider", "model_card"):
        assert key in result["config"], key
    for entry in result["metrics"].values():
        assert set(entry) >= {"value", "stderr", "n", "higher_is_better"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "malformed JSON"),
        ('{"schema_version": 99}', "schema_version 99 is not supported"),
        ('{"schema_version": 1, "config": {}}', "missing field"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_invalid_files_are_named_in_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PagbenchError, match=message) as error:
        load_result(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_metric_without_stderr_is_rejected(result):
    broken = json.loads(json.dumps(result))
    del broken["metrics"]["accuracy"]["stderr"]
    with pytest.raises(PagbenchError, match="metric 'accuracy' lacks"):
        validate_result(broken)


def test_an_invalid_result_is_not_written(result, tmp_path):
    broken = json.loads(json.dumps(result))
    broken["schema_version"] = 0
    with pytest.raises(PagbenchError):
        write_result(broken, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []
