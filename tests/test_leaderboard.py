"""The leaderboard: entry keys, add/replace/dedupe, bad input, the generated board and its check
mode, verify, and the committed board being up to date."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagbench.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def bayes_result(tmp_path_factory):
    """A real result document of the Bayes-optimal model on 20 images (computed once)."""
    import pagbench

    from .conftest import env

    with env(PAGBENCH_CACHE_DIR=str(tmp_path_factory.mktemp("cache"))):
        return pagbench.evaluate("bayes", num_images=20, batch_size=20, per_image=True)


@pytest.fixture
def result(bayes_result):
    return copy.deepcopy(bayes_result)


@pytest.fixture
def run():
    cli = build_cli()

    def invoke(*args):
        return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)

    return invoke


def write(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def variant(result, model=None, created=None, regime=None, strength=None, **metrics):
    """A copy of ``result`` with another model name, time, card and metric values."""
    document = copy.deepcopy(result)
    if model is not None:
        document["config"]["model"] = model
        document["config"]["model_card"].update(architecture="resnet18", regime=regime or "standard", strength=strength)
    if created is not None:
        document["created"] = created
    for name, value in metrics.items():
        if isinstance(value, tuple):
            value, stderr = value
        else:
            stderr = 0.01
        document["metrics"][name] = {**document["metrics"].get(name, {"n": 20, "excluded": 0, "higher_is_better": True}),
                                     "value": value, "stderr": stderr}
    return document


# ------------------------------------------------------------------------------------ entry key
def test_entry_key_has_the_number_changing_fields_only(result):
    from pagbench.leaderboard.store import ENTRY_KEY_FIELDS, entry_id, entry_key

    key = entry_key(result)
    # the configuration's fields, then those the metrics declare part of the key
    assert tuple(key)[: len(ENTRY_KEY_FIELDS)] == ENTRY_KEY_FIELDS
    assert set(key) - set(ENTRY_KEY_FIELDS) == {"robustness_epsilons", "headline_epsilon", "noise_levels", "lpips_random_backbone"}
    assert key["score"] == "posterior" and key["sigma"] == 0.0  # resolved, not "auto" / None
    assert key["robustness_epsilons"] == [1.0] and key["headline_epsilon"] == 1.0  # resolved from metric_settings
    other = copy.deepcopy(result)
    other["config"].update(batch_size=7, device="cuda:0", torch_version="x")
    other["created"] = "2000-01-01T00:00:00+00:00"
    assert entry_id(entry_key(other)) == entry_id(key)
    for field, value in (("sigma", 0.1), ("num_images", 21), ("gradient", "logit"), ("seed", 1), ("model", "other")):
        changed = copy.deepcopy(result)
        changed["config"][field] = value
        assert entry_id(entry_key(changed)) != entry_id(key), field


# ----------------------------------------------------------------------------- add and replace
def test_add_stores_a_trimmed_validated_entry_with_a_deterministic_name(run, result, tmp_path):
    from pagbench.leaderboard.store import entry_stem
    from pagbench.results.documents import validate_result

    source = write(tmp_path / "r.json", result)
    outcome = run("leaderboard", "add", source, "--dir", tmp_path / "lb")
    assert outcome.exit_code == 0, outcome.output
    assert "added" in outcome.output
    stored = tmp_path / "lb" / "entries" / "synthetic" / f"{entry_stem(result)}.json"
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]
    assert stored.name.startswith("bayes--")
    entry = json.loads(stored.read_text())
    validate_result(entry)
    assert "per_image" not in entry and entry["entry_key"]["model"] == "bayes"
    assert entry["metrics"] == result["metrics"]


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: d["timing"].update(total_seconds="fast"), "timing"),
        (lambda d: d.pop("created"), "created"),
        (lambda d: d["config"].update(num_images="500"), "num_images"),
    ],
)
def test_add_checks_the_published_schema_and_writes_nothing(run, result, tmp_path, break_it, message):
    broken = copy.deepcopy(result)
    break_it(broken)
    outcome = run("leaderboard", "add", write(tmp_path / "r.json", broken), "--dir", tmp_path / "lb")
    assert outcome.exit_code == 2 and message in outcome.output and len(outcome.output.strip().splitlines()) == 1
    assert not (tmp_path / "lb").exists() or not any((tmp_path / "lb").rglob("*.json"))


def test_adding_the_same_result_twice_keeps_one_unchanged_entry(run, result, tmp_path):
    source = write(tmp_path / "r.json", result)
    run("leaderboard", "add", source, "--dir", tmp_path / "lb")
    before = snapshot(tmp_path / "lb")
    outcome = run("leaderboard", "add", source, source, "--dir", tmp_path / "lb")
    assert outcome.exit_code == 0 and "unchanged" in outcome.output
    assert snapshot(tmp_path / "lb") == before and len([name for name in before if name != ".lock"]) == 1  # one entry (and the board's lock)


def test_same_configuration_replaces_the_older_entry_and_never_the_newer(result, tmp_path):
    from pagbench.leaderboard.store import add_results, load_entries

    root = tmp_path / "lb"
    old = write(tmp_path / "old.json", variant(result, created="2025-01-01T00:00:00+00:00", accuracy=0.5))
    new = write(tmp_path / "new.json", variant(result, created="2025-06-01T00:00:00+00:00", accuracy=0.6))
    assert [o.action for o in add_results([old], root)] == ["added"]
    assert [o.action for o in add_results([new], root)] == ["replaced"]
    assert [o.action for o in add_results([old], root)] == ["kept-newer"]
    (entry,) = load_entries(root)
    assert entry.value("accuracy") == 0.6
    # both in one call: the newer wins whatever the order
    other = tmp_path / "other"
    outcomes = add_results([new, old], other)
    assert sorted(o.action for o in outcomes) == ["added", "superseded"]
    assert load_entries(other)[0].value("accuracy") == 0.6


def test_a_different_configuration_becomes_its_own_row(result, tmp_path):
    from pagbench.leaderboard.store import add_results, load_entries

    other = copy.deepcopy(result)
    other["config"]["gradient"] = "logit"
    other["config"]["score"] = "conditional"
    add_results([write(tmp_path / "a.json", result), write(tmp_path / "b.json", other)], tmp_path / "lb")
    entries = load_entries(tmp_path / "lb")
    assert len(entries) == 2 and {e.model for e in entries} == {"bayes"}
    assert len({e.path.name for e in entries}) == 2


# ------------------------------------------------------------------------------------ bad input
def _schema_2(result):
    return {**result, "schema_version": 2}


def _missing_metrics(result):
    return {key: value for key, value in result.items() if key != "metrics"}


def _missing_config_field(result):
    document = copy.deepcopy(result)
    del document["config"]["gradient"]
    return document


def _not_a_number(result):
    document = copy.deepcopy(result)
    document["metrics"]["accuracy"]["value"] = float("nan")
    return json.dumps(document)


def _escaping_dataset(result):
    document = copy.deepcopy(result)
    document["config"]["dataset"] = "../escape"
    return document


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda r: '{"schema_version": 1, "config": ', "malformed JSON"),
        (_schema_2, "schema_version 2 is not supported"),
        (_missing_metrics, "missing field(s) metrics"),
        (_missing_config_field, "config lacks gradient"),
        (_escaping_dataset, "cannot be a folder name"),
        (_not_a_number, "contains NaN"),
        (lambda r: b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"),
        (lambda r: "[1, 2]", "not a JSON object"),
    ],
    ids=["malformed", "schema-2", "missing-field", "missing-config-field", "path-escape", "nan", "binary", "not-an-object"],
)
def test_bad_results_are_one_line_errors_naming_the_file_and_write_nothing(run, result, tmp_path, make, message):
    root = tmp_path / "lb"
    run("leaderboard", "add", write(tmp_path / "first.json", variant(result, model="resnet18-synthetic-standard-0")), "--dir", root)
    before = snapshot(root)
    good = write(tmp_path / "good.json", result)
    bad = write(tmp_path / "bad.json", make(result))
    outcome = run("leaderboard", "add", good, bad, "--dir", root)
    assert outcome.exit_code == 2
    assert len(outcome.output.strip().splitlines()) == 1 and "Traceback" not in outcome.output
    assert str(bad) in outcome.output and message in outcome.output
    assert snapshot(root) == before  # the good file was not added either; nothing half-written
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("synthetic/notes.txt", "hello", "not a leaderboard entry"),
        ("synthetic/bayes--000000000000.json", None, "file name does not match"),
        ("synthetic/broken--0123456789ab.json", "{", "malformed JSON"),
        ("stray.json", "{}", "foreign file in the entries folder"),
        ("other-dataset/ENTRY", None, "is in the folder of 'other-dataset'"),
    ],
    ids=["foreign-file", "renamed-entry", "malformed-entry", "file-outside-dataset-folder", "wrong-dataset-folder"],
)
def test_foreign_or_broken_files_in_the_store_fail_the_build_naming_them(run, result, tmp_path, name, content, message):
    from pagbench.leaderboard.store import add_results, entry_stem

    root = tmp_path / "lb"
    add_results([write(tmp_path / "r.json", result)], root)
    assert run("leaderboard", "build", "--dir", root).exit_code == 0
    before = snapshot(root)
    name = name.replace("ENTRY", entry_stem(result) + ".json")
    intruder = write(root / "entries" / name, content if content is not None else json.dumps(result))
    outcome = run("leaderboard", "build", "--dir", root)
    assert outcome.exit_code == 2 and len(outcome.output.strip().splitlines()) == 1
    assert str(intruder) in outcome.output and message in outcome.output
    intruder.unlink()
    assert snapshot(root) == before  # README and cards untouched
    (root / "entries" / ".gitkeep").write_text("")  # dotfiles are ignored
    assert run("leaderboard", "build", "--check", "--dir", root).exit_code == 0


# ----------------------------------------------------------------------------------- the board
def test_build_renders_sorted_tables_and_check_fails_when_stale(run, result, tmp_path):
    from pagbench.leaderboard.store import add_results

    root = tmp_path / "lb"
    standard = variant(result, model="resnet18-synthetic-standard-0", accuracy=0.8, score_cosine=(0.5, 0.01))
    add_results([write(tmp_path / "a.json", standard), write(tmp_path / "b.json", result)], root)
    check = run("leaderboard", "build", "--check", "--dir", root)
    assert check.exit_code == 1 and "stale" in check.output  # nothing built yet
    assert run("leaderboard", "build", "--dir", root).exit_code == 0
    board = (root / "README.md").read_text()
    assert run("leaderboard", "build", "--check", "--dir", root).exit_code == 0
    assert run("leaderboard", "build", "--dir", root).exit_code == 0 and (root / "README.md").read_text() == board  # deterministic

    assert "## synthetic" in board and "Sorted by `score_cosine`" in board and "Regime-label rule" in board
    rows = [line for line in board.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert "[bayes](cards/synthetic/bayes.md)" in rows[0] and "1.000 ± 0.000" in rows[0]
    assert "resnet18-synthetic-standard-0" in rows[1] and "0.500 ± 0.010" in rows[1] and "| 0.800 |" in rows[1]
    assert "n/a<sup>1</sup>" in rows[0] and "1. LPIPS AlexNet backbone weights not found" in board
    assert (root / "cards" / "synthetic" / "bayes.md").is_file()

    (root / "README.md").write_text(board.replace("0.800", "0.900"))
    check = run("leaderboard", "build", "--check", "--dir", root)
    assert check.exit_code == 1 and "README.md" in check.output
    run("leaderboard", "build", "--dir", root)
    # a new entry makes the board stale; a removed entry leaves a stale card that build deletes
    other = copy.deepcopy(result)
    other["config"]["seed"] = 1
    add_results([write(tmp_path / "c.json", other)], root)
    assert run("leaderboard", "build", "--check", "--dir", root).exit_code == 1
    run("leaderboard", "build", "--dir", root)
    assert "seed=1" in (root / "README.md").read_text()
    for path in (root / "entries" / "synthetic").glob("resnet18*"):
        path.unlink()
    check = run("leaderboard", "build", "--check", "--dir", root)
    assert check.exit_code == 1 and "cards/synthetic/resnet18-synthetic-standard-0.md" in check.output
    run("leaderboard", "build", "--dir", root)
    assert not (root / "cards" / "synthetic" / "resnet18-synthetic-standard-0.md").exists()


def test_board_links_galleries_that_exist_and_warns_about_mixed_dataset_versions(result, tmp_path):
    from pagbench.leaderboard.render import gallery_path, render_board
    from pagbench.leaderboard.store import add_results, load_entries

    root = tmp_path / "lb"
    other = variant(result, model="resnet18-synthetic-standard-0")
    other["config"]["dataset_fingerprint"] = "feedfacefeedface"
    add_results([write(tmp_path / "a.json", result), write(tmp_path / "b.json", other)], root)
    entries = load_entries(root)
    assert "[png]" not in render_board(entries, root)
    bayes = next(e for e in entries if e.model == "bayes")
    write(root / gallery_path(bayes), "png")
    board = render_board(entries, root)
    assert f"[png]({gallery_path(bayes)})" in board
    assert "rows come from 2 versions of this dataset" in board


def test_board_labels_a_regime_sweep(result, tmp_path):
    from pagbench.leaderboard.render import render_board
    from pagbench.leaderboard.store import add_results, load_entries

    ratio = "manifold_robustness_off_on_ratio"
    sweep = [
        variant(result, "resnet18-synthetic-standard-0", None, "standard", 0.0, accuracy=0.87, score_cosine=0.53, **{ratio: 0.6}),
        variant(result, "resnet18-synthetic-noise-0.03", None, "noise", 0.03, accuracy=0.86, score_cosine=0.53, **{ratio: 0.6}),
        variant(result, "resnet18-synthetic-noise-0.3", None, "noise", 0.3, accuracy=0.87, score_cosine=0.59, **{ratio: 0.3}),
        variant(result, "resnet18-synthetic-noise-1", None, "noise", 1.0, accuracy=0.51, score_cosine=0.51, **{ratio: 0.1}),
    ]
    add_results([write(tmp_path / f"{i}.json", document) for i, document in enumerate(sweep)], tmp_path / "lb")
    board = render_board(load_entries(tmp_path / "lb"), tmp_path / "lb")
    row = {line.split("](")[0].split("[")[-1]: line for line in board.splitlines() if line.startswith("| ") and "](cards/" in line}
    assert "| noise 0.3 |" in row["resnet18-synthetic-noise-0.3"] and "| Bayes-aligned |" in row["resnet18-synthetic-noise-0.3"]
    assert "| weak |" in row["resnet18-synthetic-noise-0.03"] and "| excessive |" in row["resnet18-synthetic-noise-1"]
    assert "| standard | 0.870 |" in row["resnet18-synthetic-standard-0"]


def test_check_mode_does_not_import_torch(tmp_path, result):
    from pagbench.leaderboard.store import add_results

    add_results([write(tmp_path / "r.json", result)], tmp_path / "lb")
    code = (
        "import sys; from pagbench.cli import main; "
        f"sys.argv=['pagbench','leaderboard','build','--dir',{str(tmp_path / 'lb')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', [m for m in ('torch','matplotlib','numpy') if m in sys.modules])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in output


def test_committed_board_is_up_to_date():
    from pagbench.leaderboard.render import build

    report = build(ROOT / "leaderboard", check=True)
    assert report.clean, f"run `pagbench leaderboard build`: stale {report.stale}, removed {report.removed}"


# ---------------------------------------------------------------------------------------- verify
def test_verify_reproduces_a_bayes_entry_and_catches_a_tampered_one(run, result, tmp_path):
    from pagbench.leaderboard.store import add_results, load_entries

    root = tmp_path / "lb"
    add_results([write(tmp_path / "r.json", result)], root)
    (entry,) = load_entries(root)
    same = run("leaderboard", "verify", entry.path, "--no-progress", "--dir", root)
    assert same.exit_code == 0, same.output
    assert "reproduces" in same.output and "not compared" not in same.output.split("lpips")[0]
    fewer = run("leaderboard", "verify", f"synthetic/{entry.stem}", "--num-images", "10", "--no-progress", "--dir", root)
    assert fewer.exit_code == 0, fewer.output

    # a hand edit is caught by the entry's content hash, before anything is evaluated
    document = json.loads(entry.path.read_text())
    document["metrics"]["accuracy"]["value"] = 0.1
    entry.path.write_text(json.dumps(document, indent=2))
    for command in (("verify", entry.path, "--no-progress"), ("build",)):
        refused = run("leaderboard", *command, "--dir", root)
        assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
        assert str(entry.path) in refused.output and "does not match its content_sha256" in refused.output
        assert "pagbench leaderboard add RESULT" in refused.output and f"pagbench leaderboard reseal {entry.path}" in refused.output
    # resealed on purpose, the tampered value is still caught by verify's re-evaluation
    resealed = run("leaderboard", "reseal", entry.path, "--dir", root)
    assert resealed.exit_code == 0 and "resealed" in resealed.output
    assert json.loads(entry.path.read_text())["metrics"]["accuracy"]["value"] == 0.1
    tampered = run("leaderboard", "verify", entry.path, "--no-progress", "--dir", root)
    assert tampered.exit_code == 1 and "does not reproduce: accuracy" in tampered.output


def test_every_entry_carries_a_content_hash_and_a_damaged_one_is_refused_then_replaced_by_add(run, result, tmp_path):
    from pagbench.leaderboard.store import CONTENT_HASH, add_results, content_digest, load_entries

    root = tmp_path / "lb"
    source = write(tmp_path / "r.json", result)
    add_results([source], root)
    (entry,) = load_entries(root)
    document = json.loads(entry.path.read_text())
    assert list(document)[-1] == CONTENT_HASH and document[CONTENT_HASH] == content_digest(document)
    intact = entry.path.read_bytes()
    assert run("leaderboard", "build", "--dir", root).exit_code == 0
    board = snapshot(root)
    # a changed number (a hand edit, a bad merge), then an entry without the field (hand-written or older)
    edited = copy.deepcopy(document)
    edited["metrics"]["score_cosine"]["stderr"] += 0.5
    for damaged, problem in ((json.dumps(edited, indent=2).encode(), "does not match its content_sha256"),
                             (json.dumps({k: v for k, v in document.items() if k != CONTENT_HASH}).encode(), "has no content_sha256")):
        entry.path.write_bytes(damaged)
        for command in (("build",), ("build", "--check"), ("gallery",)):
            outcome = run("leaderboard", *command, "--dir", root)
            assert outcome.exit_code == 2 and len(outcome.output.strip().splitlines()) == 1, outcome.output
            assert f"{entry.path}: " in outcome.output and problem in outcome.output
        assert {k: v for k, v in snapshot(root).items() if not k.startswith("entries/")} == \
            {k: v for k, v in board.items() if not k.startswith("entries/")}  # board and cards untouched
    # re-adding the result replaces the damaged entry with the intact one
    added = run("leaderboard", "add", source, "--dir", root)
    assert added.exit_code == 0 and "replaced" in added.output
    assert entry.path.read_bytes() == intact
    assert run("leaderboard", "build", "--check", "--dir", root).exit_code == 0


def test_verify_of_a_missing_entry_is_a_one_line_error(run, tmp_path):
    outcome = run("leaderboard", "verify", "nothing-here", "--dir", tmp_path)
    assert outcome.exit_code == 2 and "nothing-here: no such entry" in outcome.output


def test_verify_tolerance_grows_with_the_difference_in_image_count():
    from pagbench.leaderboard.verify import VERIFY_ABSOLUTE_TOLERANCE, tolerance_for

    assert tolerance_for({"stderr": 0.02}, {"stderr": 0.02}) == VERIFY_ABSOLUTE_TOLERANCE
    assert tolerance_for({"stderr": 0.01}, {"stderr": 0.02}) == pytest.approx(1e-3 + 3 * (0.02**2 - 0.01**2) ** 0.5)


def test_attribution_and_precision_join_the_key_only_when_not_the_defaults(result):
    from pagbench.leaderboard.store import entry_id, entry_key

    plain = entry_id(entry_key(result))
    for changes in ({"attribution": "raw-gradient"}, {"attribution": None}, {"dtype": "float32"}):
        same = copy.deepcopy(result)
        same["config"].update(changes)
        assert entry_id(entry_key(same)) == plain, changes
    for changes in ({"attribution": "smoothgrad"}, {"attribution_options": {"samples": "8"}}, {"dtype": "float64"}):
        other = copy.deepcopy(result)
        other["config"].update(changes)
        assert entry_id(entry_key(other)) != plain, changes


def test_a_committed_entry_made_by_an_older_pagbench_still_verifies(tmp_path):
    """Entries made before --dtype (their config.dtype was a description) still verify."""
    import shutil

    from pagbench.leaderboard.store import load_entry, reseal_entries
    from pagbench.leaderboard.verify import verify_entry

    source = ROOT / "leaderboard" / "entries" / "synthetic" / "bayes--42ce4d5d182f.json"
    path = tmp_path / "entries" / "synthetic" / source.name
    path.parent.mkdir(parents=True)
    shutil.copy(source, path)
    old = json.loads(path.read_text())
    old["config"]["dtype"] = "float32 model, float64 gradient weights and metrics"
    for name in ("attribution", "attribution_options", "attribution_settings", "sanity_thresholds", "sigmas", "precision"):
        old["config"].pop(name, None)
    path.write_text(json.dumps(old, indent=2))
    reseal_entries([path])
    report = verify_entry(load_entry(path), num_images=60)
    assert report.reproduces and report.compared, report
