"""Entry documents for the web-leaderboard tests: a committed entry as a template, entries with
multi-point ε and σ curves, and hostile entries (script tags, event handlers, ``javascript:``
links, ``|`` and newlines, a 10,000-character name, right-to-left overrides, broken Unicode).

Every payload that could run sets ``window.__pwned`` (and some the title, or add a
``<pwned-marker>`` element), so a browser test can assert that none ran.
"""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "leaderboard"
TEMPLATE = BOARD / "entries" / "synthetic" / "resnet18-synthetic-noise-0.3--9192c73c9d09.json"
#: Fields of a stored entry that a result document does not have.
ENTRY_ONLY = ("entry_key", "entry_id", "content_sha256")

SCRIPT = "<script>window.__pwned='script';document.title='pwned'</script>"
IMG = "<img src=x onerror=\"window.__pwned='img';document.body.appendChild(document.createElement('pwned-marker'))\">"
BREAKOUT = "\"><svg onload=\"window.__pwned='attr'\"><x a='"
JS_LINK = "javascript:window.__pwned='link'"


def template_result() -> dict:
    """The committed noise-0.3 entry as a result document (what `leaderboard add` takes)."""
    document = json.loads(TEMPLATE.read_text())
    for name in ENTRY_ONLY:
        document.pop(name, None)
    return document


def with_curves(document: dict) -> dict:
    """``document`` with a 5-point ε grid (on/off curves) and a 4-point σ curve of score_cosine."""
    document = copy.deepcopy(document)
    epsilons = [0.1, 0.3, 1.0, 3.0, 10.0]
    on = [0.01, 0.05, 0.29, 0.8, 1.2]
    off = [0.001, 0.01, 0.04, 0.3, 1.1]
    document["curves"]["manifold_robustness_on"] = {"x": epsilons, "mean": on, "stderr": [0.001] * 5, "n": [500] * 5}
    document["curves"]["manifold_robustness_off"] = {"x": epsilons, "mean": off, "stderr": [0.001] * 5, "n": [500] * 5}
    document["metric_settings"]["manifold_robustness"]["epsilons"] = epsilons
    sigmas = [0.01, 0.05, 0.1, 0.25]
    document["curves"]["score_cosine"] = {"x": sigmas, "mean": [0.7, 0.65, 0.6, 0.5], "stderr": [0.01] * 4, "n": [500] * 4}
    document["metric_settings"]["score_cosine"] = {"sigmas": sigmas, "headline_sigma": 0.0, "sigmas_used": sigmas}
    return document


def _named(document: dict, model: str) -> dict:
    document = copy.deepcopy(document)
    document["config"]["model"] = model
    return document


def _card(document: dict, **fields) -> dict:
    document["config"]["model_card"].update(fields)
    return document


def hostile_results() -> dict[str, dict]:
    """Case name → a hostile result document (each a different model, so each its own row)."""
    base = template_result()
    cases = {}
    cases["script tag in the model name"] = _named(base, "evil-script" + SCRIPT)
    cases["img onerror in description and source"] = _card(_named(base, "evil-img"), description=IMG, source=IMG)
    cases["attribute breakout in architecture and regime"] = _card(_named(base, "evil-attr"), architecture=BREAKOUT,
                                                                     regime="x' onmouseover='window.__pwned=1")
    links = _card(_named(base, "evil-links"), provenance={
        "robustbench": {"paper": "Evil " + SCRIPT, "link": JS_LINK, "threat_model": "Linf", "clean_accuracy": 0.9,
                        "robust_accuracy": 0.5},
        "homepage": " JaVaScRiPt:window.__pwned='link2'",
        "data": "data:text/html,<script>window.__pwned='data'</script>",
        "vb": "vbscript:msgbox(1)",
        "good": "https://example.org/paper?a=1&b=2",
        IMG: "key that is markup"})
    cases["javascript:, data: and good links in the provenance"] = links
    cases["pipes and newlines"] = _card(_named(base, "pipe|model\nnew line | --- |"), description="a | b\n| --- |\n\n# heading")
    cases["10,000-character name"] = _named(base, "A" * 10_000)
    cases["right-to-left override"] = _card(_named(base, "rtl-\u202egnp.exe"), description="\u202eevil\u202c text", source="\u2067x\u2069")
    version = _named(base, "evil-version")
    version["pagbench_version"] = "</title>" + SCRIPT
    version["unavailable"]["lpips_alignment"] = "<b>bold</b>" + SCRIPT
    version["sanity"]["raised"] = [IMG]
    cases["script in version, reason and sanity flag"] = version
    curves = with_curves(_named(base, "evil-curves"))
    curves["curves"]["manifold_robustness_" + SCRIPT] = {"x": [1.0], "mean": [0.5], "stderr": [0.1], "n": [1]}
    cases["script in a curve name"] = curves
    cases["control characters and a lone surrogate"] = _card(_named(base, "evil-controls"), description="nul\x00 bell\x07 \ud800 end")
    return cases


class PageParser(HTMLParser):
    """Collects every tag with its attributes and the cell counts of each ``table.board`` row."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[tuple[str, int]] = []  # ("head" | "body", cells)
        self._section = None
        self._in_board = False
        self._cells = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._in_board = "board" in (attributes.get("class") or "").split()
        elif self._in_board and tag in ("thead", "tbody"):
            self._section = "head" if tag == "thead" else "body"
        elif self._in_board and tag == "tr":
            self._cells = 0
        elif self._in_board and tag in ("td", "th") and self._cells is not None:
            self._cells += 1

    def handle_endtag(self, tag):
        if self._in_board and tag == "tr" and self._cells is not None:
            self.rows.append((self._section, self._cells))
            self._cells = None
        elif tag == "table":
            self._in_board = False


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser
