"""The web leaderboard in a real browser: Debian's chromium driven through chromedriver by
selenium, on file:// URLs (nothing is fetched from the network; selenium is told where the
driver is, so it never tries to download one).

Sorting and filtering are checked against the entries' values, the model card's SVG curves for
drawn points, the console for errors (a blocked stylesheet or script under the page's
Content-Security-Policy shows up there too) and hostile entries for any payload that ran.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pagbench.leaderboard.store import Entry, entry_stem, load_entries
from pagbench.leaderboard.site import render_site, write_site

from .site_cases import BOARD, hostile_results, template_result, with_curves

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1400,1000")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def driver():
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install pagbench[test])")
    from selenium.webdriver.chrome.service import Service

    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # selenium manager must not look for a driver on the network
    profile = tempfile.mkdtemp(prefix="pagbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
        if offline is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = offline


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A copy of the committed board's entries and galleries with its site built."""
    root = tmp_path_factory.mktemp("board") / "leaderboard"
    shutil.copytree(BOARD / "entries", root / "entries")
    shutil.copytree(BOARD / "galleries", root / "galleries")
    write_site(render_site(load_entries(root), root), root)
    return root


def open_page(driver, path: Path):
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.resolve().as_uri())
    return driver


def console_errors(driver) -> list:
    return [record for record in driver.get_log("browser") if record["level"] in ("SEVERE", "ERROR")]


def visible_models(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table.board tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[1].querySelector('a bdi').textContent)")


def click_header(driver, output: str):
    driver.find_element("css selector", f'th[data-output="{output}"] button').click()


def entries_by_rank(root: Path) -> list[Entry]:
    from pagbench.leaderboard.render import sort_key

    return sorted(load_entries(root), key=sort_key)


def test_the_index_loads_with_its_css_and_js_and_no_console_errors(driver, board):
    open_page(driver, board / "site" / "index.html")
    assert driver.title == "pagbench leaderboard"
    assert visible_models(driver) == [entry.model for entry in entries_by_rank(board)]  # the board's rank
    collapse = driver.execute_script("return getComputedStyle(document.querySelector('table.board')).borderCollapse")
    assert collapse == "collapse"  # site.css was allowed by the CSP and applied
    thumbs = driver.execute_script("return Array.from(document.querySelectorAll('img.thumb')).map(i => [i.complete, i.naturalWidth])")
    assert thumbs and all(complete and width > 0 for complete, width in thumbs)  # every gallery thumbnail loaded
    assert console_errors(driver) == []


def test_sorting_by_score_cosine_orders_rows_by_the_entries_values(driver, board):
    open_page(driver, board / "site" / "index.html")
    entries = entries_by_rank(board)
    value = {entry.model: entry.value("score_cosine") for entry in entries}
    rank = {entry.model: index for index, entry in enumerate(entries)}
    click_header(driver, "score_cosine")
    descending = visible_models(driver)
    assert descending == sorted(value, key=lambda model: (-value[model], rank[model]))
    assert driver.find_element("css selector", 'th[data-output="score_cosine"]').get_attribute("aria-sort") == "descending"
    click_header(driver, "score_cosine")
    assert visible_models(driver) == sorted(value, key=lambda model: (value[model], rank[model]))
    click_header(driver, "manifold_robustness_off_on_ratio")  # lower is better: best (smallest) first
    ratio = {entry.model: entry.value("manifold_robustness_off_on_ratio") for entry in entries}
    assert visible_models(driver) == sorted(ratio, key=lambda model: (ratio[model], rank[model]))
    driver.find_element("css selector", "th[data-sortable] button").click()  # back to the rank
    assert visible_models(driver) == [entry.model for entry in entries]
    assert console_errors(driver) == []


def test_filtering_by_regime_and_text(driver, board):
    from selenium.webdriver.support.ui import Select

    open_page(driver, board / "site" / "index.html")
    entries = entries_by_rank(board)
    Select(driver.find_element("css selector", "select[data-filter=regime]")).select_by_value("noise")
    noise = [entry for entry in entries if entry.card.get("regime") == "noise"]
    assert len(noise) > 1 and visible_models(driver) == [entry.model for entry in noise]
    assert driver.find_element("css selector", "output[data-count]").text == f"{len(noise)} of {len(entries)} rows"
    box = driver.find_element("css selector", "input[data-filter=text]")
    box.send_keys("0.3")
    assert visible_models(driver) == ["resnet18-synthetic-noise-0.3"]
    Select(driver.find_element("css selector", "select[data-filter=regime]")).select_by_value("")
    expected = [entry.model for entry in entries if "0.3" in entry.model or "0.3" in (entry.card.get("description") or "")]
    assert len(expected) > 1 and visible_models(driver) == expected
    box.clear()
    box.send_keys("bayes")
    assert visible_models(driver) == ["bayes"]
    architecture = Select(driver.find_element("css selector", "select[data-filter=architecture]"))
    architecture.select_by_value(next(entry.card["architecture"] for entry in entries if entry.model != "bayes"))
    assert visible_models(driver) == []
    assert console_errors(driver) == []


def test_a_model_card_draws_its_curves_and_shows_its_gallery(driver, board, tmp_path):
    open_page(driver, board / "site" / "index.html")
    driver.find_element("link text", "resnet18-synthetic-noise-0.3").click()
    assert driver.title.startswith("resnet18-synthetic-noise-0.3 on synthetic")
    points = driver.execute_script("return Array.from(document.querySelectorAll('svg.plot polyline')).map(p => p.points.numberOfItems)")
    assert points == [1, 1]  # the committed entries have a one-point ε grid: off and on
    assert len(driver.find_elements("css selector", "svg.plot circle")) == 2
    gallery = driver.find_element("css selector", "img.gallery")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", gallery) > 0
    assert driver.find_element("css selector", "pre code").text == "pagbench leaderboard verify synthetic/" + next(
        entry.stem for entry in load_entries(board) if entry.model == "resnet18-synthetic-noise-0.3")
    assert console_errors(driver) == []

    # an entry with a 5-point ε grid and a 4-point σ curve: drawn, with one point per grid value
    document = with_curves(template_result())
    entry = Entry(tmp_path / "entries" / "synthetic" / f"{entry_stem(document)}.json", document)
    write_site(render_site([entry], tmp_path), tmp_path)
    open_page(driver, next((tmp_path / "site" / "synthetic").glob("*.html")))
    drawn = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg.plot')).map(svg => [svg.getAttribute('aria-label'),"
        " Array.from(svg.querySelectorAll('polyline')).map(p => [p.points.numberOfItems, p.getBBox().width > 0])])")
    assert dict(drawn) == {"manifold_robustness over epsilons": [[5, True], [5, True]],
                           "score_cosine over sigmas": [[4, True]]}
    assert console_errors(driver) == []


def _assert_nothing_ran(driver, title: str | None = None):
    """No payload ran: ``window.__pwned`` unset, no ``<pwned-marker>``, the title as generated
    (``title``; without it, at least not the payload's), only site.js as a script, anchors only
    to file/http(s) URLs."""
    state = driver.execute_script("return [typeof window.__pwned, document.title, document.querySelectorAll('pwned-marker').length,"
                                  " Array.from(document.scripts).map(s => s.getAttribute('src'))]")
    assert state[0] == "undefined" and state[2] == 0, state
    assert state[1] == title if title is not None else state[1] != "pwned", state
    assert [src.rsplit("/", 1)[-1] for src in state[3]] == ["site.js"]
    hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.protocol)")
    assert set(hrefs) <= {"file:", "http:", "https:"}, hrefs  # javascript: and data: are never anchors


def _assert_table_shape(driver):
    shape = driver.execute_script(
        "return Array.from(document.querySelectorAll('table.board')).map(t => [t.tHead.rows[0].cells.length,"
        " Array.from(t.tBodies[0].rows).map(r => r.cells.length)])")
    for header, rows in shape:
        assert rows and set(rows) == {header}


def _searchable(document: dict) -> str:
    card = document["config"]["model_card"]
    return " ".join(str(card.get(name) or "") for name in ("regime", "architecture", "description", "source")).lower() + \
        document["config"]["model"].lower()


def _check_hostile_site(driver, root: Path, documents: list[dict]) -> list[str]:
    """Load the index and every page of the site under ``root``: nothing ran, tables keep their
    shape, no console errors; filtering by the text ``<script>`` finds the rows holding it."""
    open_page(driver, root / "site" / "index.html")
    _assert_nothing_ran(driver, "pagbench leaderboard")
    _assert_table_shape(driver)
    assert len(visible_models(driver)) == len(documents)
    driver.find_element("css selector", "input[data-filter=text]").send_keys("<script>")  # payloads are searchable text
    shown = visible_models(driver)
    assert sorted(shown) == sorted(d["config"]["model"] for d in documents if "<script>" in _searchable(d))
    _assert_nothing_ran(driver, "pagbench leaderboard")
    errors = console_errors(driver)
    for page in sorted((root / "site").glob("*/*.html")):
        open_page(driver, page)
        _assert_nothing_ran(driver)
        errors += console_errors(driver)
    assert errors == []
    return shown


def test_hostile_entries_rendered_directly_run_no_script(driver, tmp_path):
    documents = list(hostile_results().values())
    entries = [Entry(tmp_path / "entries" / d["config"]["dataset"] / f"{entry_stem(d)}.json", d) for d in documents]
    write_site(render_site(entries, tmp_path), tmp_path)
    shown = _check_hostile_site(driver, tmp_path, documents)
    assert shown == ["evil-script<script>window.__pwned='script';document.title='pwned'</script>"]
    open_page(driver, next((tmp_path / "site" / "synthetic").glob("evil-links--*.html")))
    anchors = driver.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")
    assert "https://example.org/paper?a=1&b=2" in anchors
    body = driver.find_element("tag name", "body").text
    assert "javascript:window.__pwned='link'" in body and "data:text/html,<script>" in body  # shown as text


def test_hostile_entries_accepted_by_add_are_safe_on_the_built_site(driver, tmp_path):
    from click.testing import CliRunner

    from pagbench.cli import build_cli

    root = tmp_path / "lb"
    accepted, refused, documents = [], [], []
    for index, (case, document) in enumerate(hostile_results().items()):
        path = tmp_path / f"r{index}.json"
        path.write_text(json.dumps(document))
        result = CliRunner().invoke(build_cli(), ["leaderboard", "add", str(path), "--dir", str(root)])
        if result.exit_code == 0:
            accepted.append(case)
            documents.append(document)
        else:
            assert result.exit_code == 2 and "Traceback" not in result.output, (case, result.output)
            refused.append(case)
    if not accepted:
        pytest.fail(f"`leaderboard add` refused every hostile case ({refused}); nothing to check through the CLI")
    result = CliRunner().invoke(build_cli(), ["leaderboard", "build", "--dir", str(root)])
    assert result.exit_code == 0, result.output
    _check_hostile_site(driver, root, documents)


def test_the_content_security_policy_blocks_inline_script_and_style_from_file_urls(driver, tmp_path):
    """Defence in depth: were a payload ever left unescaped, the page's CSP would still stop it."""
    from pagbench.leaderboard.site import ASSETS, _page, asset_text

    for name in ASSETS:
        (tmp_path / name).write_text(asset_text(name))
    page = tmp_path / "inline.html"
    page.write_text(_page("inline", "<script>window.__pwned='inline'</script><p id=p style='color: rgb(255, 0, 0)'>x</p>"
                                    "<img src=x onerror=\"window.__pwned='img'\">", depth=0))
    open_page(driver, page)
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.execute_script("return getComputedStyle(document.getElementById('p')).color") != "rgb(255, 0, 0)"
    messages = " ".join(record["message"] for record in console_errors(driver))
    assert "Content Security Policy" in messages  # the browser says what it refused
