"""The sweep's submitit path against a real single-node Slurm (tests/slurm_cluster.py): a
4-task array merged exactly as the local launcher's sweep (weights bit for bit), a task
requeued mid-training that resumes from its last finished epoch, a failing task, ``scancel`` of
a running array, two arrays that need the same standard model, and a job no node can run.

Every sweep is tiny (the synthetic dataset, 1-2 epochs, 40 evaluation images, one thread per
job); the jobs run this venv's python with ``PAGBENCH_CACHE_DIR`` set to a folder they share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

pytest.importorskip("submitit")
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PAGBENCH = str(Path(sys.executable).parent / "pagbench")
TINY = ["--dataset", "synthetic", "--num-images", "40", "--no-progress", "--launcher", "submitit", "--cluster", "slurm",
        "--cpus-per-job", "1"]


def sweep_command(output: Path, *arguments: str) -> list[str]:
    return [PAGBENCH, "sweep", *TINY, "--output-dir", str(output), *arguments]


def environment(cluster, cache: Path) -> dict[str, str]:
    """What the sweep (and through sbatch's exported environment, its jobs) runs with."""
    return cluster.env(PAGBENCH_CACHE_DIR=str(cache), PAGBENCH_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def poll(condition, what: str, deadline_seconds: float = 300, process: subprocess.Popen | None = None):
    """Wait (bounded) until ``condition()`` is true; pauses on ``process`` when given."""
    deadline = time.monotonic() + deadline_seconds
    while not (value := condition()):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {process.returncode}) before {what}: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
    return value


def recipe_id(regime: str, strength: float, seed: int, epochs: int) -> str:
    from pagbench_plugins.zoo.recipes import recipe_for

    return recipe_for("synthetic", regime, strength, seed=seed, preset="cpu", epochs=epochs).identifier


def weights_digest(cache: Path, identifier: str) -> str:
    """:func:`pagbench.results.documents.weights_digest` (names, dtypes, shapes and bytes) of a stored model."""
    from types import SimpleNamespace

    from pagbench.results.documents import weights_digest as digest_of
    from pagbench.models.store import load_tensors

    state = load_tensors(cache / "models" / identifier / "weights.pt")
    return digest_of(SimpleNamespace(state_dict=lambda: state))


def manifest(output: Path) -> list[dict]:
    return json.loads((output / "submitit" / "jobs.json").read_text())["jobs"]


def metric_values(output: Path) -> dict[str, dict[str, float]]:
    values = {}
    for path in sorted(output.glob("*.json")):
        result = json.loads(path.read_text())
        values[path.name] = {name: metric["value"] for name, metric in result["metrics"].items()}
    return values


def leftovers(*folders: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes."""
    return [path for folder in folders for path in folder.rglob("*.tmp")]


SWEEP = ["--regime", "noise", "--strengths", "0.3", "--seeds", "2", "--epochs", "2"]  # 4 tasks: (0, 0.3) × seeds 0, 1
REQUEUED = ("standard", 0.0, 0)  # the task requeued while in its second epoch


@pytest.fixture(scope="module")
def swept(slurm_cluster, tmp_path_factory):  # noqa: F811
    """The 4-task sweep on Slurm (--max-parallel 2, one task requeued in epoch 2) and the same
    sweep with --launcher local in its own cache; wall times of both."""
    root = tmp_path_factory.mktemp("swept")
    slurm_cache, local_cache = root / "cache-slurm", root / "cache-local"
    slurm_out, local_out = root / "slurm", root / "local"
    env = environment(slurm_cluster, slurm_cache)
    requeued_id = recipe_id(*REQUEUED, epochs=2)
    checkpoint = slurm_cache / "models" / requeued_id / "checkpoint.pt"
    started = time.monotonic()
    process = subprocess.Popen(sweep_command(slurm_out, *SWEEP, "--max-parallel", "2", "--wait"), env=env, cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll(checkpoint.exists, "the epoch-1 checkpoint of the task to requeue", process=process)
    assert not (checkpoint.parent / "weights.pt").exists(), "the task finished before it could be requeued"
    job = next(item["job_id"] for item in manifest(slurm_out) if item["model"] == "resnet18-synthetic-standard-0")
    slurm_cluster.command("scontrol", "requeue", job)
    stdout, stderr = process.communicate(timeout=900)
    slurm_seconds = time.monotonic() - started
    started = time.monotonic()
    local = run([PAGBENCH, "sweep", "--dataset", "synthetic", "--num-images", "40", "--no-progress", *SWEEP,
                 "--output-dir", str(local_out)], environment(slurm_cluster, local_cache), root, timeout=900)
    local_seconds = time.monotonic() - started
    figures = {"slurm_seconds": round(slurm_seconds, 1), "local_seconds": round(local_seconds, 1), "requeued_job": job}
    print(f"\n4-task sweep: Slurm (--max-parallel 2, one requeue) {slurm_seconds:.1f} s, --launcher local {local_seconds:.1f} s")
    return dict(process=process, stdout=stdout, stderr=stderr, local=local, slurm_out=slurm_out, local_out=local_out,
                slurm_cache=slurm_cache, local_cache=local_cache, requeued_id=requeued_id, job=job, figures=figures)


def test_a_slurm_array_merges_exactly_like_the_local_sweep(swept):
    assert swept["process"].returncode == 0, swept["stderr"][-3000:]
    assert swept["local"].returncode == 0, swept["local"].stderr[-3000:]
    slurm_out, local_out = swept["slurm_out"], swept["local_out"]
    names = ["resnet18-synthetic-noise-0.3-s1.json", "resnet18-synthetic-noise-0.3.json",
             "resnet18-synthetic-standard-0-s1.json", "resnet18-synthetic-standard-0.json"]
    assert sorted(path.name for path in slurm_out.glob("*.json")) == names
    assert metric_values(slurm_out) == metric_values(local_out)  # every metric value, exactly
    assert (slurm_out / "sweep-noise.md").read_text() == (local_out / "sweep-noise.md").read_text()
    assert (slurm_out / "sweep-noise.png").stat().st_size > 10_000
    assert "| 0.3 | 2 |" in swept["stdout"]
    assert [item["state"] for item in manifest(slurm_out)] == ["done"] * 4
    assert "submitted 4 jobs (slurm:" in swept["stderr"] and "jobs: 4 finished, 0 running, 0 pending" in swept["stderr"]
    assert "Bypassing sacct" not in swept["stderr"]
    for regime, strength, seed in (("standard", 0.0, 0), ("standard", 0.0, 1), ("noise", 0.3, 0), ("noise", 0.3, 1)):
        identifier = recipe_id(regime, strength, seed, epochs=2)
        assert weights_digest(swept["slurm_cache"], identifier) == weights_digest(swept["local_cache"], identifier), identifier
    again = run([PAGBENCH, "sweep-report", str(slurm_out)], os.environ.copy(), slurm_out)
    assert again.returncode == 0 and (slurm_out / "sweep-noise.md").read_text() == (local_out / "sweep-noise.md").read_text()


def test_a_requeued_task_resumes_from_its_last_epoch_to_the_same_weights(swept):
    log = next(Path(item["stderr"]) for item in manifest(swept["slurm_out"]) if item["job_id"] == swept["job"])
    text = log.read_text()
    identifier = swept["requeued_id"]
    assert f"resuming {identifier} from epoch 1" in text, text[-3000:]
    assert text.count(f"{identifier} is not in the model store: training it now") == 2  # the first run and the requeued one
    slurm, local = weights_digest(swept["slurm_cache"], identifier), weights_digest(swept["local_cache"], identifier)
    print(f"\nrequeued {swept['job']} ({identifier}): resumed from epoch 1; weights sha256 {slurm} (requeued) {local} (uninterrupted)")
    assert slurm == local
    assert not (swept["slurm_cache"] / "models" / identifier / "checkpoint.pt").exists()  # removed once training finished


def test_a_failing_task_leaves_no_result_and_the_report_names_its_log(slurm_cluster, swept, tmp_path):  # noqa: F811
    cache, output = swept["slurm_cache"], tmp_path / "out"  # standard-0 and noise-0.3 (2 epochs) are stored there
    blocked = recipe_id("noise", 0.6, 0, epochs=2)
    (cache / "models" / f"{blocked}.lock").mkdir()  # its store lock cannot be taken: the task fails before training
    result = run(sweep_command(output, "--regime", "noise", "--strengths", "0.3,0.6", "--epochs", "2", "--max-parallel", "2", "--wait"),
                 environment(slurm_cluster, cache), tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert sorted(path.name for path in output.glob("*.json")) == ["resnet18-synthetic-noise-0.3.json", "resnet18-synthetic-standard-0.json"]
    failed = next(item for item in manifest(output) if item["model"] == "resnet18-synthetic-noise-0.6")
    assert failed["state"] == "failed" and failed["error"].startswith(f"cannot lock {cache}/models/{blocked}.lock"), failed
    assert f"cannot lock {cache}/models/{blocked}.lock" in Path(failed["stderr"]).read_text()  # the log named says why
    report = run([PAGBENCH, "sweep-report", str(output)], os.environ.copy(), tmp_path)
    assert report.returncode == 1, report.stderr
    assert f"job {failed['job_id']} (resnet18-synthetic-noise-0.6) failed: cannot lock " in report.stderr
    assert f"log: {failed['stderr']}" in report.stderr
    assert "| 0.3 | 1 |" in report.stdout  # what did finish is still rendered


def test_scancel_of_a_running_array_leaves_no_partial_files(slurm_cluster, tmp_path):  # noqa: F811
    cache, output = tmp_path / "cache", tmp_path / "out"
    training = recipe_id("standard", 0.0, 0, epochs=2)
    checkpoint = cache / "models" / training / "checkpoint.pt"
    process = subprocess.Popen(sweep_command(output, "--regime", "noise", "--strengths", "0", "--epochs", "2", "--no-report", "--wait"),
                               env=environment(slurm_cluster, cache), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll(checkpoint.exists, "the first epoch's checkpoint", process=process)
    job = manifest(output)[0]["job_id"]
    slurm_cluster.command("scancel", job.split("_")[0])
    _, stderr = process.communicate(timeout=300)
    slurm_cluster.wait_until_empty()
    assert process.returncode == 1, stderr[-3000:]
    assert f"job {job} (resnet18-synthetic-standard-0) failed: left the Slurm queue without a result" in stderr
    assert not list(output.glob("*.json")) and not leftovers(output, cache)
    assert not (cache / "models" / training / "weights.pt").exists()
    from pagbench.models.store import load_tensors

    assert load_tensors(checkpoint)["epoch"] == 1  # what is left is the whole resume checkpoint, nothing half-written


def test_two_arrays_needing_the_same_standard_model_train_it_once(slurm_cluster, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    env = environment(slurm_cluster, cache)
    outputs = [tmp_path / f"out-{index}" for index in range(2)]
    processes = [subprocess.Popen(sweep_command(output, "--regime", "noise", "--strengths", "0", "--epochs", "1", "--no-report", "--wait"),
                                  env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for output in outputs]
    streams = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [stderr[-2000:] for _, stderr in streams]
    standard = recipe_id("standard", 0.0, 0, epochs=1)
    logs = [Path(manifest(output)[0]["stderr"]).read_text() for output in outputs]
    assert sum(log.count(f"{standard} is not in the model store: training it now") for log in logs) == 1
    waited = sum(f"{standard} is being trained by another process: waiting" in log for log in logs)
    print(f"\ntwo arrays, one standard model: trained once; {waited} job(s) waited for the store's lock")
    first, second = (json.loads((output / "resnet18-synthetic-standard-0.json").read_text())["metrics"] for output in outputs)
    assert first == second


def test_a_job_no_node_can_run_is_refused_before_anything_is_submitted(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811
    from pagbench_plugins.zoo.launchers import slurm_nodes

    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    cpus = max(node.cpus for node in slurm_nodes() if node.partition == "debug")
    env = environment(slurm_cluster, tmp_path / "cache")
    output = tmp_path / "out"
    command = [PAGBENCH, "sweep", "--regime", "noise", "--strengths", "0.3", "--launcher", "submitit", "--cluster", "slurm",
               "--output-dir", str(output)]
    too_many = run([*command, "--cpus-per-job", str(cpus + 1)], env, tmp_path)
    assert too_many.returncode == 2 and too_many.stderr.strip().splitlines() == [
        f"Error: asks for {cpus + 1} CPUs per job; partition debug's largest node has {cpus} (--cpus-per-job)"]
    gpus = run([*command, "--gpus-per-job", "1"], env, tmp_path)
    assert gpus.returncode == 2 and gpus.stderr.strip().splitlines() == [
        "Error: asks for 1 GPU per job; partition debug's nodes have none (--gpus-per-job)"]
    missing = run([*command, "--partition", "gpu"], env, tmp_path)
    assert missing.returncode == 2 and "partition 'gpu' does not exist on this cluster" in missing.stderr
    print("\n" + "\n".join(result.stderr.strip() for result in (too_many, gpus, missing)))
    assert not output.exists() and not slurm_cluster.queue()

