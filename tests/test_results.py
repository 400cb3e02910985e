"""Result documents: schema validation with errors that name the file."""

import json

import pytest

import pagbench
from pagbench.errors import PagbenchError
from pagbench.results.documents import SCHEMA_VERSION, load_result, validate_result, write_result


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


# ----------------------------------------------------------------- the published JSON Schema
def _broken(result, edit):
    import copy

    document = json.loads(json.dumps(copy.deepcopy(result)))
    edit(document)
    return document


def test_pagbench_schema_prints_a_draft_2020_12_schema_that_a_real_result_follows(result, tmp_path):
    from click.testing import CliRunner

    from pagbench.cli import build_cli
    from pagbench.results.schema import result_schema
    from pagbench.results.schema import validate_result as follows_schema

    printed = CliRunner().invoke(build_cli(), ["schema"], catch_exceptions=False)
    assert printed.exit_code == 0
    schema = json.loads(printed.output)
    assert schema == result_schema() and schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    entry_only = {"entry_key", "entry_id", "content_sha256"}
    optional = {"per_image", "sanity"}  # sanity: absent in results made before pagbench checked them
    assert set(schema["required"]) | optional | entry_only == set(schema["properties"])
    from pagbench.results.documents import TOP_LEVEL_FIELDS

    assert set(schema["properties"]) == set(TOP_LEVEL_FIELDS) | entry_only  # the schema and results.py name the same fields
    assert follows_schema(json.loads(json.dumps(result))) is None
    with_images = pagbench.evaluate("bayes", num_images=5, per_image=True, metrics=("score_cosine",))
    assert follows_schema(json.loads(json.dumps(with_images))) is None
    written = load_result(write_result(result, tmp_path / "r.json"))
    assert follows_schema(written) is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("timing"), "(document) lacks timing"),
        (lambda d: d["metrics"]["score_cosine"].pop("n"), "metrics.score_cosine lacks n"),
        (lambda d: d["metrics"]["score_cosine"].update(value=True), "metrics.score_cosine.value must be number or null, got a boolean"),
        (lambda d: d["metrics"]["accuracy"].update(n=2.5), "metrics.accuracy.n must be integer"),
        (lambda d: d["metrics"]["accuracy"].update(n=-1), "metrics.accuracy.n must be >= 0"),
        (lambda d: d["metrics"]["accuracy"].update(higher_is_better="yes"), "higher_is_better must be boolean or null, got str"),
        (lambda d: d["metrics"]["accuracy"].update(colour="red"), "metrics.accuracy has an unknown field 'colour'"),
        (lambda d: d["config"].update(num_images="20"), "config.num_images must be integer, got str"),
        (lambda d: d["config"].update(gradient="grad"), "config.gradient is 'grad', expected one of logprob"),
        (lambda d: d["config"].pop("model"), "config lacks model"),
        (lambda d: d.update(schema_version=2), "schema_version is 2, expected 1"),
        (lambda d: d.update(warnings="none"), "warnings must be array, got str"),
        (lambda d: d["warnings"].append(3), "warnings[0] must be string, got int"),
        (lambda d: d["curves"]["manifold_robustness_on"]["mean"].append("x"), "curves.manifold_robustness_on.mean[1] must be number or null"),
        (lambda d: d["degenerate"].update(zero_gradient=None), "degenerate.zero_gradient must be integer, got null"),
        (lambda d: d.update(extra={}), "(document) has an unknown field 'extra'"),
        (lambda d: d["unavailable"].update(accuracy=1), "unavailable.accuracy must be string"),
    ],
)
def test_broken_results_fail_the_schema_in_one_line(result, edit, message):
    from pagbench.results.schema import validate_result as follows_schema

    with pytest.raises(PagbenchError) as error:
        follows_schema(_broken(result, edit), source="r.json")
    assert str(error.value).startswith("r.json: ") and message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)


def test_the_schema_agrees_with_jsonschema_where_it_is_installed(result):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is optional; the built-in validator reads the schema")
    from pagbench.results.schema import result_schema

    jsonschema.Draft202012Validator.check_schema(result_schema())
    jsonschema.validate(json.loads(json.dumps(result)), result_schema(), cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_broken(result, lambda d: d["metrics"]["accuracy"].update(value=True)), result_schema(),
                            cls=jsonschema.Draft202012Validator)


def test_every_committed_leaderboard_entry_follows_the_schema():
    from pathlib import Path

    from pagbench.results.schema import validate_result as follows_schema

    entries = sorted((Path(__file__).resolve().parents[1] / "leaderboard" / "entries").glob("*/*.json"))
    assert entries
    for path in entries:
        follows_schema(json.loads(path.read_text()), source=str(path))
