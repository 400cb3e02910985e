"""The static web leaderboard (pagbench/leaderboard/site.py) without a browser: escaping, links, the pages'
shape for hostile entries, the SVG curves, determinism and ``leaderboard build --check``."""

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagbench.cli import build_cli
from pagbench.leaderboard.store import Entry, entry_stem
from pagbench.leaderboard.site import CSP, curve_plots, esc, link, page_path, render_site, safe_url, text

from .site_cases import BOARD, IMG, JS_LINK, SCRIPT, hostile_results, parse, template_result, with_curves


def entries_of(documents, root: Path) -> list[Entry]:
    return [Entry(root / "entries" / d["config"]["dataset"] / f"{entry_stem(d)}.json", d) for d in documents]


@pytest.fixture
def board_copy(tmp_path):
    """A copy of the committed leaderboard's entries and galleries (its site and markdown are rebuilt)."""
    root = tmp_path / "lb"
    shutil.copytree(BOARD / "entries", root / "entries")
    shutil.copytree(BOARD / "galleries", root / "galleries")
    return root


def run(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args], catch_exceptions=False)


# ------------------------------------------------------------------------------------ escaping
def test_esc_escapes_markup_and_both_quotes():
    assert esc("<a href=\"x\" title='y'>&</a>") == "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
    assert esc("nul\x00\ud800") == "nul\ufffd\ufffd"  # writable as UTF-8, no raw control characters


def test_text_isolates_direction_and_cuts_long_text_keeping_it_in_the_title():
    assert text("\u202eevil") == "<bdi>\u202eevil</bdi>"
    cut = text("<" * 300, limit=10)
    assert cut == f'<bdi title="{"&lt;" * 300}">{"&lt;" * 10}…</bdi>'


@pytest.mark.parametrize("url, safe", [
    ("https://example.org/a?b=1&c=2", True), ("http://example.org", True), ("HTTPS://EXAMPLE.ORG/", False),
    ("javascript:alert(1)", False), (" javascript:alert(1)", False), ("JaVaScRiPt:alert(1)", False),
    ("data:text/html,<script>", False), ("vbscript:x", False), ("//example.org/x", False), ("/relative", False),
    ("https://", False), ("https://exa mple.org", False), ("https://example.org/\"onmouseover=x", False),
    ("https://example.org/\nx", False), ("https://example.org/" + "a" * 2048, False), (None, False), (42, False),
])
def test_only_absolute_http_urls_are_links(url, safe):
    assert safe_url(url) == (url if safe else None)
    rendered = link(url)
    assert rendered.startswith("<a href=") is safe
    if not safe:
        assert "<a" not in rendered


def test_a_link_escapes_its_url_and_label():
    assert link("https://example.org/?a=1&b=2", "<b>") == \
        '<a href="https://example.org/?a=1&amp;b=2" rel="noopener noreferrer nofollow"><bdi>&lt;b&gt;</bdi></a>'


# ------------------------------------------------------------------------------- hostile board
def _rendered_hostile(tmp_path):
    documents = list(hostile_results().values())
    return render_site(entries_of(documents, tmp_path), tmp_path)


def test_hostile_entries_render_as_text_with_tables_of_one_shape(tmp_path):
    files = _rendered_hostile(tmp_path)
    pages = {path: data.decode("utf-8") for path, data in files.items() if path.endswith(".html")}
    assert len(pages) == 1 + len(hostile_results())
    for path, page in pages.items():
        parsed = parse(page)
        scripts = [attributes for tag, attributes in parsed.tags if tag == "script"]
        assert scripts == [{"src": "../" * path.count("/", len("site/")) + "site.js", "defer": None}], path
        handlers = [(tag, name) for tag, attributes in parsed.tags for name in attributes if name.lower().startswith("on")]
        assert handlers == [], path
        for tag, attributes in parsed.tags:
            if tag == "a":
                href = attributes["href"]
                assert href.startswith(("http://", "https://", "#")) or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", href), (path, href)
            if tag == "img":
                assert attributes["src"].startswith("../"), (path, attributes)
        assert not any(tag in ("svg", "x", "pwned-marker") and "onload" in attributes for tag, attributes in parsed.tags)
        assert f'content="{esc(CSP)}"' in page
        assert "<script>window" not in page and "<img src=x" not in page
    index = parse(pages["site/index.html"])
    header = [cells for section, cells in index.rows if section == "head"]
    body = [cells for section, cells in index.rows if section == "body"]
    assert len(header) == 1 and len(body) == len(hostile_results())
    assert set(body) == {header[0]}


def test_what_each_hostile_field_renders_as(tmp_path):
    files = _rendered_hostile(tmp_path)
    index = files["site/index.html"].decode()
    assert esc("evil-script" + SCRIPT) in index
    assert esc(IMG) in index  # description and source are in the row's search text, escaped
    links_page = next(data.decode() for path, data in files.items() if "evil-links" in path)
    assert '<a href="https://example.org/paper?a=1&amp;b=2"' in links_page  # the good link stays a link
    assert f"<bdi>{esc(JS_LINK)}</bdi>" in links_page and 'href="javascript' not in links_page.lower()
    assert "href=\" javascript" not in links_page.lower() and "href=\"data:" not in links_page
    assert "Recorded by <bdi>robustbench</bdi>" in links_page  # RobustBench's paper and robust accuracy are shown
    long_row = re.search(r'<a href="synthetic/(A+)--[0-9a-f]{12}\.html"><bdi title="(A+)">(A+)…</bdi>', index)
    assert long_row and len(long_row.group(2)) == 10_000 and len(long_row.group(3)) == 160 and len(long_row.group(1)) < 120
    assert "<bdi>rtl-\u202egnp.exe</bdi>" in index
    assert esc("pipe|model\nnew line | --- |") in index


def test_a_dataset_name_that_is_no_folder_name_gets_a_hashed_folder(tmp_path):
    document = template_result()
    for dataset, folder in (("../../etc", "-..-etc"), ("..", "dataset"), ("a b/<c>", "a-b-c")):
        document["config"]["dataset"] = dataset
        (entry,) = entries_of([document], tmp_path)
        assert re.fullmatch(re.escape(folder) + r"--[0-9a-f]{6}/resnet18-synthetic-noise-0\.3--[0-9a-f]{12}\.html", page_path(entry))


# ---------------------------------------------------------------------------------------- plots
def _polylines(svg: str) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, point.split(","))) for point in points.split()]
            for points in re.findall(r'<polyline class="curve"[^>]* points="([^"]*)"', svg)]


def test_curves_are_inline_svg_with_one_point_per_grid_value(tmp_path):
    (entry,) = entries_of([with_curves(template_result())], tmp_path)
    plots = curve_plots(entry)
    assert len(plots) == 2  # the ε curves (on and off in one plot) and the σ curve
    robustness = next(plot for plot in plots if "manifold_robustness over epsilons" in plot)
    off, on = _polylines(robustness)  # series in name order: off, on
    assert len(on) == len(off) == 5
    assert [x for x, _ in on] == sorted(x for x, _ in on)  # x increases along the grid
    assert "(log scale)" in robustness  # ε spans a factor 100
    assert all(y_on <= y_off for (_, y_on), (_, y_off) in zip(on, off))  # on ≥ off everywhere: drawn higher (smaller y)
    sigma = next(plot for plot in plots if "score_cosine over sigmas" in plot)
    (curve,) = _polylines(sigma)
    assert len(curve) == 4 and [y for _, y in curve] == sorted(y for _, y in curve)  # cosine falls with σ: y grows


def test_a_committed_entry_has_its_single_epsilon_point_drawn(tmp_path):
    (entry,) = entries_of([template_result()], tmp_path)
    (plot,) = curve_plots(entry)
    assert [len(line) for line in _polylines(plot)] == [1, 1]
    assert plot.count("<circle") == 2


# --------------------------------------------------------------------------------- build, check
def test_build_writes_the_site_deterministically_and_check_names_what_differs(board_copy):
    assert run("leaderboard", "build", "--dir", board_copy).exit_code == 0
    site = board_copy / "site"
    first = {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}
    assert {"index.html", "site.css", "site.js"} <= set(first)
    assert len([name for name in first if name.startswith("synthetic/")]) == len(list((board_copy / "entries" / "synthetic").iterdir()))
    assert not re.search(rb"20\d\d-\d\d-\d\dT\d\d:\d\d", first["index.html"])  # no build timestamps
    assert run("leaderboard", "build", "--dir", board_copy, "--check").exit_code == 0
    shutil.rmtree(site)
    assert run("leaderboard", "build", "--dir", board_copy).exit_code == 0
    assert {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()} == first

    page = next(site.glob("synthetic/*.html"))
    page.write_bytes(page.read_bytes().replace(b"Model card", b"Model cart"))
    (site / "stray.html").write_text("<p>left over</p>")
    result = run("leaderboard", "build", "--dir", board_copy, "--check")
    assert result.exit_code == 1
    assert f"stale: {board_copy}/site/{page.relative_to(site).as_posix()}" in result.output
    assert f"not generated by any entry: {board_copy}/site/stray.html" in result.output
    assert (site / "stray.html").exists()  # --check writes nothing
    assert run("leaderboard", "build", "--dir", board_copy).exit_code == 0
    assert not (site / "stray.html").exists()
    assert run("leaderboard", "build", "--dir", board_copy, "--check").exit_code == 0


def test_the_index_is_in_the_board_rank_and_carries_each_metric_as_its_sort_value(board_copy):
    from pagbench.leaderboard.render import sort_key
    from pagbench.leaderboard.store import load_entries

    entries = sorted(load_entries(board_copy), key=sort_key)
    index = render_site(list(reversed(entries)), board_copy)["site/index.html"].decode()
    header = re.findall(r"<th[ >].*?</th>", re.search(r"<thead><tr>(.*?)</tr></thead>", index).group(1))
    column = next(i for i, cell in enumerate(header) if 'data-output="score_cosine"' in cell)
    rows = re.findall(r"<tr data-rank=.*?</tr>", index)
    models = [re.search(r'<td class="model">.*?<bdi>([^<]+)</bdi>', row).group(1) for row in rows]
    assert models == [entry.model for entry in entries]  # the board's order, whatever order the entries came in
    cells = [re.findall(r"<td[ >].*?</td>", row) for row in rows]
    assert all(len(row) == len(header) for row in cells)
    values = [float(re.search(r'data-sort="([^"]*)"', row[column]).group(1)) for row in cells]
    assert values == [entry.value("score_cosine") for entry in entries]  # exact: written with 17 digits


def test_a_bad_entry_stops_the_build_before_anything_is_written(board_copy):
    assert run("leaderboard", "build", "--dir", board_copy).exit_code == 0
    before = (board_copy / "site" / "index.html").read_bytes()
    victim = next((board_copy / "entries" / "synthetic").glob("*.json"))
    victim.write_text(victim.read_text().replace('"num_images": 500', '"num_images": 501', 1))
    result = CliRunner().invoke(build_cli(), ["leaderboard", "build", "--dir", str(board_copy)])
    assert result.exit_code != 0 and victim.name in result.output
    assert (board_copy / "site" / "index.html").read_bytes() == before


def test_the_assets_are_package_data():
    import tomllib

    config = tomllib.loads((BOARD.parent / "pyproject.toml").read_text())
    assert "pagbench.leaderboard.site_static" in config["tool"]["setuptools"]["packages"]
    patterns = config["tool"]["setuptools"]["package-data"]["pagbench.leaderboard.site_static"]
    assert "*.css" in patterns and "*.js" in patterns
    for name in ("site.css", "site.js"):
        assert (BOARD.parent / "pagbench" / "leaderboard" / "site_static" / name).is_file()


def test_the_reproduce_command_finds_the_entry_and_asks_for_the_trust_it_needs(tmp_path):
    from pagbench.leaderboard.store import find_entry
    from pagbench.leaderboard.site import reproduce_command

    (entry,) = entries_of([template_result()], BOARD)
    command = reproduce_command(entry)
    assert command == f"pagbench leaderboard verify synthetic/{entry.stem}"
    assert find_entry(command.split()[-1], BOARD).result["entry_id"] == entry.id  # the committed entry it names
    document = template_result()
    document["config"]["trust_required"] = ["--trust-pickle"]
    (trusted,) = entries_of([document], tmp_path)
    assert reproduce_command(trusted).endswith(" --trust-pickle")


def test_the_index_shows_seed_intervals_and_the_sanity_legend(tmp_path):
    import copy

    from pagbench.evaluation.sanity import FLAGS

    documents = []
    for seed, cosine in ((0, 0.5), (1, 0.6), (2, 0.55)):
        document = copy.deepcopy(template_result())
        document["config"]["model"] = f"resnet18-synthetic-noise-0.3-seed{seed}"
        document["config"]["model_card"]["seed"] = seed
        document["metrics"]["score_cosine"].update(value=cosine, stderr=0.01 * (seed + 1))
        documents.append(document)
    index = render_site(entries_of(documents, tmp_path), tmp_path)["site/index.html"].decode()
    seeds = re.search(r'<table class="seeds">.*?</table>', index).group(0)
    header = re.findall(r"<th>(.*?)</th>", seeds)
    (row,) = re.findall(r"<tbody><tr>(.*?)</tr>", seeds)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1] == "0,1,2"
    assert cells[header.index("score_cosine ± se")] == "0.550 [0.500, 0.600] ± 0.020"  # mean [min, max] ± mean se
    legend = re.search(r'<summary>Sanity flags</summary>.*?</details>', index).group(0)
    assert re.findall(r"<li><code>([a-z_]+)</code>", legend) == [flag.name for flag in FLAGS]


def test_plugin_columns_show_the_cells_their_hook_computes(board_copy):
    from pagbench.leaderboard.render import entry_columns, sort_key
    from pagbench.leaderboard.store import load_entries

    entries = sorted(load_entries(board_copy), key=sort_key)
    index = render_site(entries, board_copy)["site/index.html"].decode()
    header = re.findall(r"<th[ >].*?</th>", re.search(r"<thead><tr>(.*?)</tr></thead>", index).group(1))
    rows = [re.findall(r"<td[ >].*?</td>", row) for row in re.findall(r"<tr data-rank=.*?</tr>", index)]
    columns = entry_columns()
    assert [column.name for column in columns] == ["regime label"]  # the zoo's, the one built-in EntryColumn
    for column in columns:
        position = header.index(f"<th>{column.name}</th>")
        cells = column.cells([entry.result for entry in entries])
        assert [re.sub(r"</?bdi>|</?td>", "", row[position]) for row in rows] == [cell.replace("*", "") for cell in cells]
        assert "Bayes-aligned" in cells and "excessive" in cells


def test_the_entry_page_shows_the_weights_digest_and_what_was_done_to_the_input(tmp_path):
    document = template_result()
    document["config"]["weights_sha256"] = "ab" * 32
    document["config"]["model_card"]["provenance"] = {"input": {"normalize": {"mean": [0.5], "std": [0.25]}, "resize": 32,
                                                                "clamp": True}}
    (entry,) = entries_of([document], tmp_path)
    page = render_site([entry], tmp_path)[f"site/{page_path(entry)}"].decode()
    assert f"Weights digest (SHA-256 of the evaluated model's weights): <code>{'ab' * 32}</code>" in page
    assert ("<dt><bdi>input</bdi></dt><dd><dl><dt><bdi>normalize</bdi></dt><dd><dl><dt><bdi>mean</bdi></dt><dd>0.5</dd>"
            "<dt><bdi>std</bdi></dt><dd>0.25</dd></dl></dd><dt><bdi>resize</bdi></dt><dd>32</dd>"
            "<dt><bdi>clamp</bdi></dt><dd>True</dd></dl></dd>") in page
    made_before_digests = template_result()
    made_before_digests["config"].pop("weights_sha256")
    (older,) = entries_of([made_before_digests], tmp_path)
    assert "not recorded (the entry predates it)" in render_site([older], tmp_path)[f"site/{page_path(older)}"].decode()
