"""The reference site builds with every relative link and anchor resolved, and the top-level
documents link only to files that exist."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra: pip install -e '.[test]'")
    pytest.importorskip("material", reason="mkdocs-material is in the test extra")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("index.html", "reference/cli.html", "reference/hooks.html", "concepts.html"):
        assert (tmp_path / "site" / page).is_file(), page
    hooks = (tmp_path / "site" / "reference" / "hooks.html").read_text(encoding="utf-8")
    assert "register_metrics" in hooks and "register_datasets" in hooks


def test_a_broken_link_fails_the_strict_build(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra")
    pytest.importorskip("material", reason="mkdocs-material is in the test extra")
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "docs" / "concepts.md").write_text("# Concepts\n\nSee [nowhere](no-such-page.md).\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=copy, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0 and "no-such-page.md" in result.stderr


@pytest.mark.parametrize("document", ["README.md", "CONTRIBUTING.md", "leaderboard/README.md", "benchmarks/README.md"])
def test_relative_links_in_top_level_documents_resolve(document):
    path = ROOT / document
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{document} links to missing files: {broken}"
