"""Default result paths keep every character of a model name that contains a dot."""

from pagbench.results.documents import default_result_path


def test_model_names_with_a_decimal_strength_keep_their_name(tmp_path):
    result = {"config": {"model": "resnet18-digits-distractor-noise-0.5", "dataset": "digits-distractor"}}
    first = default_result_path(result, tmp_path)
    assert first.name.startswith("resnet18-digits-distractor-noise-0.5-") and first.suffix == ".json"
    first.parent.mkdir(parents=True)
    first.write_text("{}")
    assert default_result_path(result, tmp_path) != first
