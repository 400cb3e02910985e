"""Output paths and cache folders are checked before any work; only regular files are replaced;
files get the umask's mode.

A device node (a private copy of /dev/null made with mknod in tmp_path, never the real one), a
FIFO, a path under /proc and a cache folder that cannot be created are refused in one line with
exit code 2 before the model is evaluated (a model that counts its forward passes proves it),
and nothing is written. ``write_atomic`` refuses to replace anything but a regular file, and
writes with mode ``0o666 & ~umask``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagbench.errors import PagbenchError
from pagbench.files.paths import check_writable_file, check_writable_folder, current_umask, write_atomic, write_json_atomic
from .cli_checks import one_line_error


def _cli(*args, env=None):
    from pagbench.cli import build_cli

    return CliRunner().invoke(build_cli(), [str(arg) for arg in args], env=env)


def _evaluate(*args, env=None):
    return _cli("evaluate", "--model", "counting", "--num-images", "4", "--batch-size", "4", "--metric", "accuracy",
                "--no-progress", *args, env=env)


def _null_device(tmp_path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return node


def test_a_device_node_is_never_replaced(tmp_path, counting_model):
    node = _null_device(tmp_path)
    one_line_error(_evaluate("--output", node), f"cannot write {node}", "not a regular file")
    assert stat.S_ISCHR(node.stat().st_mode) and counting_model == []  # still the device; nothing evaluated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temporary left behind
    with pytest.raises(PagbenchError, match="not a regular file"):
        write_json_atomic(node, {"a": 1})
    assert stat.S_ISCHR(node.stat().st_mode)


def test_a_fifo_and_a_folder_are_refused_before_any_work(tmp_path, counting_model):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    one_line_error(_evaluate("--output", fifo), f"cannot write {fifo}", "not a regular file")
    folder = tmp_path / "folder"
    folder.mkdir()
    one_line_error(_evaluate("--output", folder), "it is a folder")
    assert counting_model == [] and stat.S_ISFIFO(fifo.stat().st_mode) and list(folder.iterdir()) == []
    with pytest.raises(PagbenchError, match="not a regular file"):
        write_atomic(fifo, lambda stream: stream.write(b"x"))
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("flag", ["--output", "--output-dir"])
def test_an_output_under_proc_is_refused_before_any_work(flag, counting_model):
    target = "/proc/pagbench-result.json" if flag == "--output" else "/proc/pagbench-results"
    one_line_error(_evaluate(flag, target), "cannot create files in /proc")
    assert counting_model == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_cache_folder_that_cannot_be_created_is_refused_before_any_work(tmp_path, counting_model):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder's parent should be")
    for cache, fragment in ((blocker / "cache", "not a folder"), ("/proc/pagbench-cache", "cannot create files in /proc")):
        outcome = _evaluate("--output", tmp_path / "out.json", env={"PAGBENCH_CACHE_DIR": str(cache)})
        one_line_error(outcome, "cache directory (PAGBENCH_CACHE_DIR)", fragment)
    assert counting_model == [] and not (tmp_path / "out.json").exists()


def test_a_regular_file_is_replaced_and_results_get_the_umasks_mode(tmp_path, counting_model):
    target = tmp_path / "result.json"
    target.write_text("old")
    saved = os.umask(0o027)
    try:
        assert current_umask() == 0o027  # read without changing it
        assert os.umask(0o027) == 0o027
        outcome = _evaluate("--output", target)
    finally:
        os.umask(saved)
    assert outcome.exit_code == 0, outcome.output
    assert target.read_text().startswith("{") and counting_model  # evaluated, and the old file replaced
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_write_atomic_uses_the_umask(tmp_path, mask):
    saved = os.umask(mask)
    try:
        path = write_atomic(tmp_path / "sub" / "file.bin", lambda stream: stream.write(b"data"))
    finally:
        os.umask(saved)
    assert path.read_bytes() == b"data" and stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_symbolic_link_to_a_device_is_refused_and_its_target_kept(tmp_path):
    node = _null_device(tmp_path)
    link = tmp_path / "link.json"
    link.symlink_to(node)
    with pytest.raises(PagbenchError, match="not a regular file"):
        check_writable_file(link)
    with pytest.raises(PagbenchError, match="not a regular file"):
        write_json_atomic(link, {"a": 1})
    assert link.is_symlink() and stat.S_ISCHR(node.stat().st_mode)


def test_check_writable_folder_creates_nothing(tmp_path):
    check_writable_folder(tmp_path / "a" / "b", "--output-dir")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(PagbenchError, match="not a folder"):
        check_writable_folder(tmp_path / "f" / "b", "--output-dir")


def test_the_cli_refuses_a_device_node_in_one_stderr_line_in_a_fresh_process(tmp_path):
    """The real command line (a subprocess): exit 2, one line on stderr, no traceback, node kept."""
    node = _null_device(tmp_path)
    env = {**os.environ, "PAGBENCH_CACHE_DIR": str(tmp_path / "cache")}
    outcome = subprocess.run([sys.executable, "-m", "pagbench", "evaluate", "--model", "bayes", "--num-images", "4",
                              "--no-progress", "--output", str(node)], capture_output=True, text=True, env=env, timeout=300)
    assert outcome.returncode == 2 and outcome.stdout == "", (outcome.stdout, outcome.stderr)
    assert outcome.stderr.strip().splitlines() == [f"Error: cannot write {node}: it exists and is not a regular file "
                                                   "(a device, pipe or socket); pagbench only replaces regular files"]
    assert stat.S_ISCHR(node.stat().st_mode)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", [
    ["fit-score", "--steps", "5", "--width", "8", "--batch-size", "8"],
    ["fit-manifold", "--latent-dim", "4", "--steps", "5", "--width", "8", "--batch-size", "8"],
], ids=["fit-score", "fit-manifold"])
def test_fitting_refuses_a_cache_folder_that_cannot_be_created_before_it_fits(command, monkeypatch):
    import pagbench_plugins.learned.fit as fit

    steps = []
    monkeypatch.setattr(fit, "_loop", lambda *args, **kwargs: steps.append(1) or [])  # would fit: must not be reached
    outcome = _cli(*command, env={"PAGBENCH_CACHE_DIR": "/proc/pagbench-cache"})
    one_line_error(outcome, "cache directory (PAGBENCH_CACHE_DIR) /proc/pagbench-cache", "cannot create files in /proc")
    assert steps == []
