"""Leaderboard entries are files strangers hand us: every class of hostile entry from issue 18 is
refused at ``leaderboard add`` (one line, exit 2, nothing written) or rendered inert, and the
generated markdown stays well formed."""

import copy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagbench.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "leaderboard" / "entries" / "synthetic" / "bayes--42ce4d5d182f.json"


@pytest.fixture
def result():
    """A real result: the committed Bayes entry without its entry fields (no evaluation needed)."""
    document = json.loads(COMMITTED.read_text())
    for name in ("entry_key", "entry_id", "content_sha256"):
        document.pop(name)
    document["created"] = "2026-11-30T12:00:00+00:00"
    return document


@pytest.fixture
def run():
    cli = build_cli()

    def invoke(*args):
        return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)

    return invoke


def write(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def changed(result, change):
    document = copy.deepcopy(result)
    change(document)
    return document


def set_model(name):
    return lambda d: d["config"].update(model=name)


def set_metric(name, part, value):
    return lambda d: d["metrics"][name].update({part: value})


def set_card(name, value):
    return lambda d: d["config"]["model_card"].update({name: value})


# (class of hostile entry, how it is made, the one line that refuses it)
REFUSED = [
    ("html in the model name", set_model("<script>alert(1)</script>"), "is not allowed on the leaderboard"),
    ("javascript: link as the model name", set_model("javascript:alert(1)//x(y)"), "is not allowed on the leaderboard"),
    ("LF in the model name", set_model("bayes\n# owned"), "holds the control or bidi character U+000A"),
    ("CR in a provider option", lambda d: d["config"]["provider_options"].update(path="a\rb"),
     "config.provider_options.path holds the control or bidi character U+000D"),
    ("LF in an object key", lambda d: d["config"]["provider_options"].update({"a\nb": "1"}),
     "(a key) holds the control or bidi character U+000A"),
    ("NUL in the card description", set_card("description", "nice\x00model"), "holds the control or bidi character U+0000"),
    ("right-to-left override in the name", set_model("bayes\u202egnp.exe"), "holds the control or bidi character U+202E"),
    ("bidi isolate in the card", set_card("source", "a\u2066b"), "holds the control or bidi character U+2066"),
    ("created in the year 9999", lambda d: d.update(created="9999-01-01T00:00:00+00:00"), "lies in the future"),
    ("score of 1e308", set_metric("score_cosine", "value", 1e308), "metrics.score_cosine.value = 1e+308 is outside what "
                                                                    "score_cosine can take ([-1, 1])"),
    ("cosine above 1", set_metric("score_cosine", "value", 1.5), "outside what score_cosine can take ([-1, 1])"),
    ("accuracy below 0", set_metric("accuracy", "value", -0.1), "outside what accuracy can take ([0, 1])"),
    ("1e308 in an undeclared output", lambda d: d["metrics"].update(
        plugin_metric={"value": 1e308, "stderr": 0.0, "n": 20, "higher_is_better": True}),
     "metrics.plugin_metric.value = 1e+308 is outside what plugin_metric can take"),
    ("negative stderr", set_metric("score_cosine", "stderr", -0.01), "metrics.score_cosine.stderr is negative"),
    ("negative count", set_metric("score_cosine", "n", -1), "metric 'score_cosine' n is not a count"),
    ("schema_version true", lambda d: d.update(schema_version=True), "schema_version True is not supported"),
    ("schema_version 1.0", lambda d: d.update(schema_version=1.0), "schema_version is 1.0, expected 1"),
    ("name beginning with ../", set_model("../bayes"), "is not allowed on the leaderboard"),
    ("name with .. inside", set_model("checkpoint:a/../../etc"), "no '..'"),
    ("10,000-character name", set_model("a" * 10_000), "is 10000 characters long"),
    ("name too long for an entry file", set_model("a" * 300), "model name is 300 characters long (at most 200)"),
    ("non-ASCII name", set_model("bayes-é"), "is not allowed on the leaderboard"),
    ("strength 'abc'", set_card("strength", "abc"), "config.model_card.strength 'abc' is not a finite number >= 0"),
    ("strength true", set_card("strength", True), "config.model_card.strength True is not a finite number >= 0"),
    ("negative strength", set_card("strength", -1.0), "is not a finite number >= 0"),
    ("seed 'x' on the card", set_card("seed", "x"), "config.model_card.seed 'x' is not an integer"),
    ("score provider with a backtick", lambda d: d["config"].update(score_provider="ana`lytic"), "config.score_provider"),
    ("dataset fingerprint with a pipe", lambda d: d["config"].update(dataset_fingerprint="ab|cd"), "config.dataset_fingerprint"),
    ("sigma grid of text", lambda d: d["metric_settings"].update(score_cosine={"sigmas": ["x"]}),
     "metric_settings.score_cosine.sigmas is not a list of finite numbers"),
]


@pytest.mark.parametrize("label, change, message", REFUSED, ids=[item[0] for item in REFUSED])
def test_a_hostile_entry_is_refused_at_add_in_one_line_and_nothing_is_written(run, result, tmp_path, label, change, message):
    root = tmp_path / "lb"
    good = write(tmp_path / "good.json", result)
    assert run("leaderboard", "add", good, "--dir", root).exit_code == 0
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    hostile = write(tmp_path / "hostile.json", changed(result, change))
    outcome = run("leaderboard", "add", hostile, "--dir", root)
    assert outcome.exit_code == 2, outcome.output
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in outcome.output, outcome.output
    assert str(hostile) in lines[0] and message in lines[0], lines[0]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_duplicate_json_keys_are_refused(run, tmp_path, result):
    text = json.dumps(result)
    duplicated = text.replace('"schema_version": 1', '"schema_version": 1, "schema_version": 1', 1)
    assert duplicated != text
    hostile = write(tmp_path / "dup.json", duplicated)
    outcome = run("leaderboard", "add", hostile, "--dir", tmp_path / "lb")
    assert outcome.exit_code == 2 and len(outcome.output.strip().splitlines()) == 1
    assert f"{hostile}: malformed JSON (key 'schema_version' appears twice in one object)" in outcome.output
    assert not (tmp_path / "lb").exists()


def test_an_integer_of_ten_thousand_digits_is_one_line(run, tmp_path, result):
    text = json.dumps(result).replace('"seed": 0', '"seed": ' + "9" * 10_000, 1)
    outcome = run("leaderboard", "add", write(tmp_path / "digits.json", text), "--dir", tmp_path / "lb")
    assert outcome.exit_code == 2 and len(outcome.output.strip().splitlines()) == 1 and "malformed JSON" in outcome.output


def test_a_hand_placed_hostile_entry_is_refused_by_build_in_one_line_naming_it(run, result, tmp_path):
    from pagbench.leaderboard.store import entry_stem, make_entry, seal_entry

    root = tmp_path / "lb"
    assert run("leaderboard", "add", write(tmp_path / "good.json", result), "--dir", root).exit_code == 0
    assert run("leaderboard", "build", "--dir", root).exit_code == 0
    board = (root / "README.md").read_bytes()
    # sealed correctly and named where its key says: only the semantic checks can catch it
    hostile = make_entry(changed(result, set_model("planted")))
    hostile["created"] = "9999-12-31T00:00:00+00:00"
    hostile = seal_entry(hostile)
    path = write(root / "entries" / "synthetic" / (entry_stem(hostile) + ".json"), hostile)
    for command in (("build",), ("build", "--check")):
        outcome = run("leaderboard", *command, "--dir", root)
        assert outcome.exit_code == 2, outcome.output
        assert outcome.output.strip().splitlines() == [f"Error: {path}: created '9999-12-31T00:00:00+00:00' lies in the future "
                                                       f"(this machine's clock says {outcome.output.split('clock says ')[1].strip()}"]
    assert (root / "README.md").read_bytes() == board


# ------------------------------------------------------------------------------ inert rendering
NASTY = "<img src=x onerror=alert(1)> | `code` *bold* _it_ [click](javascript:alert(1)) & \\| ## not a heading"


def cells(row: str) -> list[str]:
    """A markdown table row split at its unescaped pipes (a backslash escapes the next character)."""
    parts, current, index = [], "", 0
    while index < len(row):
        char = row[index]
        if char == "\\" and index + 1 < len(row):
            current += row[index : index + 2]
            index += 2
            continue
        if char == "|":
            parts.append(current)
            current = ""
        else:
            current += char
        index += 1
    parts.append(current)
    return parts[1:-1]  # a row starts and ends with a pipe


def check_well_formed(text: str, headings: set[str]) -> None:
    """Every table row has its header's column count; the only lines starting with ``#`` are
    ``headings``; no raw tag, no non-http link."""
    lines = text.splitlines()
    header = None
    for line in lines:
        if line.startswith("|"):
            if header is None:
                header = len(cells(line))
            assert len(cells(line)) == header, line
        else:
            header = None
        if line.lstrip().startswith("#"):
            assert line in headings, line
    assert "<img" not in text and "<script" not in text
    for target in re.findall(r"(?<!\\)\]\(([^)]*)\)", text):  # every link: http(s), or a file pagbench wrote
        assert re.match(r"^(https?://\S+|[A-Za-z0-9._/-]+)$", target), target


def test_hostile_text_that_is_allowed_is_rendered_inert_on_the_board_and_the_card(run, result, tmp_path, register_plugin):
    from pagbench import hookimpl
    from pagbench.extensions.records import ModelCard, ModelFamily
    from pagbench.leaderboard.render import escape_text

    class Zoo:  # a model family whose cards' provenance records the model cards show (card_fields)
        @hookimpl
        def register_models(self, register):
            fields = ("paper", "clean_accuracy", "robust_accuracy", "link")
            register(ModelFamily(prefix="hostile-zoo:", factory=lambda name, dataset: None,
                                 card=lambda name: ModelCard(architecture="-", dataset="synthetic"),
                                 card_fields={"zoo <x>": fields, "good": fields}))

    register_plugin(Zoo(), name="hostile-zoo")
    root = tmp_path / "lb"
    document = changed(result, set_model("nasty-model"))
    card = document["config"]["model_card"]
    card.update(description=NASTY, source="# heading?", licence="MIT | GPL", regime="<b>bold</b>",
                provenance={"zoo <x>": {"clean_accuracy": 0.5, "paper": NASTY, "link": "javascript:alert(1)"},
                            "good": {"robust_accuracy": 0.4, "link": "https://example.org/paper"}})
    document["unavailable"] = {"lpips_alignment": "# broken | row <script>x</script>"}
    document["config"]["provider_options"] = {"note": "a|b"}
    add = run("leaderboard", "add", write(tmp_path / "nasty.json", document), "--dir", root)
    assert add.exit_code == 0, add.output
    assert run("leaderboard", "add", write(tmp_path / "good.json", result), "--dir", root).exit_code == 0
    assert run("leaderboard", "build", "--dir", root).exit_code == 0
    board = (root / "README.md").read_text()
    check_well_formed(board, {"# pagbench leaderboard", "## synthetic"})
    card_text = (root / "cards" / "synthetic" / "nasty-model.md").read_text()
    check_well_formed(card_text, {"# nasty-model on synthetic", "## Entries"})
    # exact inert forms
    assert escape_text(NASTY) == ("&lt;img src=x onerror=alert(1)&gt; \\| \\`code\\` \\*bold\\* \\_it\\_ "
                                  "\\[click\\](javascript:alert(1)) &amp; \\\\\\| ## not a heading")
    assert f"| description | {escape_text(NASTY)} |" in card_text
    assert "| source | \\# heading? |" in card_text
    assert "| zoo &lt;x&gt; link | javascript:alert(1) |" in card_text  # shown as text, not a link
    assert "| good link | [https://example.org/paper](https://example.org/paper) |" in card_text
    assert "2. \\# broken \\| row &lt;script&gt;x&lt;/script&gt;" in board
    assert "&lt;b&gt;bold&lt;/b&gt;" in board
    assert "note=a\\|b" in board


def test_escape_text_known_answers():
    from pagbench.leaderboard.render import code, escape_text, link

    assert escape_text("resnet18-synthetic-noise-0.1") == "resnet18-synthetic-noise-0.1"
    assert escape_text("#1 | x") == "\\#1 \\| x"
    assert escape_text("  # x") == "  \\# x"
    assert escape_text("a\nb\r\x00c") == "a b  c"
    assert escape_text("\\|") == "\\\\\\|"  # an escape in the text cannot undo ours
    assert link("paper", "https://arxiv.org/abs/2305.19101") == "[paper](https://arxiv.org/abs/2305.19101)"
    for url in ("javascript:alert(1)", "data:text/html,<b>", "http://x.org/a) [y](javascript:z", "HTTPS://x", "//x.org"):
        assert link("paper", url) == escape_text(url), url  # text, never a link
    assert code("analytic") == "`analytic`" and code("a`b") == "a\\`b"


def test_committed_entries_pass_the_entry_checks():
    from pagbench.leaderboard.store import load_entries
    from pagbench.leaderboard.verify import load_seed_results

    committed = sorted((ROOT / "leaderboard" / "entries").glob("*/*.json"))
    assert committed and len(load_entries(ROOT / "leaderboard")) == len(committed)  # every one passes
    assert load_seed_results(sorted((ROOT / "docs" / "sweeps").glob("synthetic-*")))
