"""Concurrent ``leaderboard add`` on one board: a lock on the board and a merge by entry key and
``created``, so parallel processes lose no row and the newer result of a row wins."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "leaderboard" / "entries" / "synthetic" / "bayes--42ce4d5d182f.json"
PROCESSES, PER_PROCESS, SHARED = 4, 15, 15

#: One worker: adds its result files in one call (every stored entry is read before any is written:
#: without the board lock, a slower process then overwrites the rows a faster one just wrote).
WORKER = """
import sys
from pagbench.leaderboard.store import add_results
add_results(sys.argv[2:], sys.argv[1])
"""


def result_for(model: str, created: str, score: float) -> dict:
    document = json.loads(COMMITTED.read_text())
    for name in ("entry_key", "entry_id", "content_sha256"):
        document.pop(name)
    document["config"]["model"] = model
    document["created"] = created
    document["metrics"]["score_cosine"]["value"] = score
    return document


def write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_parallel_adds_lose_no_row_and_the_newer_result_of_a_row_wins(tmp_path):
    from pagbench.leaderboard.store import load_entries

    root = tmp_path / "board"
    jobs = []
    for process in reversed(range(PROCESSES)):  # the newest versions start first, the oldest arrive last
        files = []
        # shared rows first, so they collide: process p's version is created at second p (the last
        # process holds the newest) and carries score p/10
        for index in range(PER_PROCESS):
            files.append(write(tmp_path / f"p{process}" / f"own{index}.json",
                               result_for(f"model-p{process}-{index}", "2026-11-30T11:00:00+00:00", 0.5)))
        for row in range(SHARED):
            files.append(write(tmp_path / f"p{process}" / f"shared{row}.json",
                               result_for(f"shared-{row}", f"2026-11-30T12:00:0{process}+00:00", process / 10)))
        jobs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(root), *map(str, files)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for job in jobs:
        _, errors = job.communicate(timeout=600)
        assert job.returncode == 0, errors

    entries = load_entries(root)
    models = sorted(entry.model for entry in entries)
    expected = sorted([f"model-p{p}-{i}" for p in range(PROCESSES) for i in range(PER_PROCESS)] +
                      [f"shared-{row}" for row in range(SHARED)])
    assert models == expected  # all 60 own rows and one per shared row
    assert len(entries) == PROCESSES * PER_PROCESS + SHARED
    for entry in entries:
        if entry.model.startswith("shared-"):
            assert entry.result["created"] == f"2026-11-30T12:00:0{PROCESSES - 1}+00:00"
            assert entry.value("score_cosine") == pytest.approx((PROCESSES - 1) / 10)
    assert not list(root.rglob("*.tmp*")) and not [p for p in (root / "entries" / "synthetic").iterdir() if p.name.startswith(".")]


def test_a_tie_in_created_is_broken_the_same_way_whatever_the_order(tmp_path):
    from pagbench.leaderboard.store import add_results, load_entries

    same_time = "2026-11-30T12:00:00+00:00"
    first = write(tmp_path / "a.json", result_for("tied", same_time, 0.1))
    second = write(tmp_path / "b.json", result_for("tied", same_time, 0.2))
    winners = []
    for order, name in (((first, second), "ab"), ((second, first), "ba")):
        root = tmp_path / name
        for path in order:
            add_results([path], root)
        (entry,) = load_entries(root)
        winners.append(entry.value("score_cosine"))
        (together,) = load_entries(add_results(list(order), tmp_path / f"{name}-one-call")[0].entry_path.parents[2])
        assert together.value("score_cosine") == entry.value("score_cosine")
    assert winners[0] == winners[1]


def test_an_older_result_added_later_keeps_the_newer_entry(tmp_path):
    from pagbench.leaderboard.store import add_results, load_entries

    root = tmp_path / "board"
    add_results([write(tmp_path / "new.json", result_for("m", "2026-11-30T12:00:05+00:00", 0.3))], root)
    (outcome,) = add_results([write(tmp_path / "old.json", result_for("m", "2026-11-30T12:00:01+00:00", 0.1))], root)
    assert outcome.action == "kept-newer"
    (entry,) = load_entries(root)
    assert entry.value("score_cosine") == pytest.approx(0.3)
    assert (root / ".lock").is_file()


def _hold(root, ready, release):
    from pagbench.leaderboard.store import board_lock

    with board_lock(root):
        ready.set()
        release.wait(60)


def test_board_lock_is_exclusive_between_processes(tmp_path):
    import multiprocessing

    from pagbench.leaderboard.store import LOCK_FILE

    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(120)
        import fcntl

        with open(tmp_path / LOCK_FILE, "a") as handle:
            with pytest.raises(BlockingIOError):  # held by the other process
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            release.set()
            holder.join(120)
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once that process let go
    finally:
        release.set()
        holder.join(120)
