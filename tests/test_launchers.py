"""Sweeps through submitit: bad input, the array's settings, requeue on preemption, a tiny sweep
on the debug executor (in this process) merged and rendered, and a failing job's report."""

import json
import shutil
import sys

import pytest
import torch
from click.testing import CliRunner

from pagbench.cli import build_cli

submitit = pytest.importorskip("submitit")

CAT, CP = shutil.which("cat"), shutil.which("cp")  # before a test narrows the PATH
NOISE = ["sweep", "--regime", "noise", "--strengths", "0.3", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(build_cli(), [*NOISE, *args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--launcher", "slurmm"], "unknown launcher 'slurmm'"),
        (["--launcher", "submitit", "--cluster", "debug", "--partition", "gpu"], "--partition is a Slurm option"),
        (["--launcher", "submitit", "--cluster", "local", "--partition", "gpu"], "--partition is a Slurm option"),
        (["--partition", "gpu"], "need --launcher submitit"),
        (["--launcher", "submitit", "--cluster", "nowhere"], "unknown cluster"),
        (["--launcher", "submitit", "--cluster", "debug", "--max-parallel", "0"], "--max-parallel must be >= 1"),
        (["--launcher", "submitit", "--cluster", "debug", "--mem-per-job", "0"], "--mem-per-job must be > 0 GB, got 0"),
        (["--launcher", "submitit", "--cluster", "debug", "--cpus-per-job", "0"], "--cpus-per-job must be >= 1, got 0"),
        (["--mem-per-job", "8"], "need --launcher submitit"),
        (["--launcher", "submitit", "--cluster", "debug", "--amp", "fp16", "--regime", "gnorm"], "fp16 excludes gnorm"),
    ],
)
def test_bad_launcher_input_is_one_line_exit_2_and_submits_nothing(tmp_path, args, message):
    result = invoke(*args, "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("launcher", [[], ["--launcher", "submitit", "--cluster", "debug"]])
def test_cuda_without_cuda_is_one_line(tmp_path, launcher):
    result = invoke("--device", "cuda", *launcher, "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert not (tmp_path / "out").exists()


def test_slurm_without_slurm_is_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no sbatch, squeue or sinfo, whatever this machine has
    result = invoke("--launcher", "submitit", "--cluster", "slurm", "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no sbatch on the PATH" in result.output
    assert not (tmp_path / "out").exists()


def test_submitit_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit → ImportError
    result = invoke("--launcher", "submitit", "--cluster", "debug", "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2 and "pip install 'pagbench[slurm]'" in result.output
    assert not (tmp_path / "out").exists()


#: what the fake ``sinfo`` answers: a default CPU partition and a GPU partition with a 10-hour limit
FAKE_NODES = ("cpu*|c1|8|32000|(null)|infinite|idle\ncpu*|c2|16|64000|(null)|infinite|mix\n"
              "gpu|g1|8|128000|gpu:a100:2(S:0-1)|10:00:00|idle\n")


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch``, ``srun`` and ``sinfo`` stand-ins on a PATH without the real Slurm tools: sbatch
    records its script and answers a job id; sinfo answers :data:`FAKE_NODES`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\n{CP} \"$1\" {tmp_path}/sbatch-script.sh\necho 'Submitted batch job 4242'\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "nodes.txt").write_text(FAKE_NODES)
    (bin_dir / "sinfo").write_text(f"#!/bin/sh\nexec {CAT} {tmp_path}/nodes.txt\n")
    for tool in ("sbatch", "srun", "sinfo"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return tmp_path / "sbatch-script.sh"


def test_slurm_array_settings(tmp_path, fake_slurm):
    from pagbench_plugins.zoo.launchers import SubmititSettings, executor_for

    settings = SubmititSettings(cluster="slurm", max_parallel=16, gpus_per_job=1, cpus_per_job=8, time_minutes=600, partition="gpu")
    parameters = executor_for("slurm", settings, tmp_path, "cuda")._executor.parameters
    assert parameters["array_parallelism"] == 16 and parameters["partition"] == "gpu" and parameters["time"] == 600
    assert parameters["gpus_per_node"] == 1 and parameters["cpus_per_task"] == 8 and parameters["ntasks_per_node"] == 1
    cpu = executor_for("slurm", SubmititSettings(cluster="slurm"), tmp_path, "cpu")._executor.parameters
    assert "gpus_per_node" not in cpu and "partition" not in cpu  # no GPU asked for a CPU sweep
    memory = executor_for("slurm", SubmititSettings(cluster="slurm", mem_gb=12.5), tmp_path, "cpu")._executor.parameters
    assert memory["mem"] == "12800MB" and "mem" not in cpu


def test_a_preempted_job_requeues_itself():
    from pagbench_plugins.zoo.launchers import SweepJob

    job = SweepJob(dataset="synthetic", regime="noise", strength=0.3, seed=1, preset="cpu", output_dir="out",
                   evaluation={"num_images": 40}, overrides={"epochs": 1}, training_options={"device_data": True})
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function == job and again.function is not job and job.model == "resnet18-synthetic-noise-0.3-s1"


def test_a_failing_job_leaves_no_result_and_the_merge_names_its_log(tmp_path, monkeypatch):
    from pagbench_plugins.zoo import build

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(build, "obtain", out_of_memory)
    output = tmp_path / "out"
    result = invoke("--launcher", "submitit", "--cluster", "debug", "--output-dir", str(output))
    assert result.exit_code == 1, result.output
    assert not list(output.glob("*.json"))  # no partial result
    assert "(resnet18-synthetic-noise-0.3) failed: CUDA out of memory (simulated); log: " in result.output
    manifest = json.loads((output / "submitit" / "jobs.json").read_text())["jobs"]
    assert [job["state"] for job in manifest] == ["failed", "failed"] and manifest[0]["stderr"].endswith("_log.err")
    report = CliRunner().invoke(build_cli(), ["sweep-report", str(output)])
    assert report.exit_code == 2 and "log: " in report.output and "no result files" in report.output


@pytest.mark.slow
def test_a_tiny_sweep_runs_through_submitit_merges_and_renders(tmp_path, monkeypatch):
    from pagbench_plugins.zoo import recipes

    monkeypatch.setitem(recipes.DATASET_DEFAULTS, "synthetic", {**recipes.DATASET_DEFAULTS["synthetic"], "width": 4, "epochs": 1})
    output = tmp_path / "out"
    result = invoke("--launcher", "submitit", "--cluster", "debug", "--max-parallel", "2", "--num-images", "40",
                    "--output-dir", str(output))
    assert result.exit_code == 0, result.output
    assert "submitted 2 jobs (debug" in result.output
    assert sorted(p.name for p in output.glob("*.json")) == ["resnet18-synthetic-noise-0.3.json", "resnet18-synthetic-standard-0.json"]
    assert (output / "sweep-noise.png").stat().st_size > 10_000
    assert "| 0 (standard) | 1 |" in result.output and "| 0.3 | 1 |" in result.output
    manifest = json.loads((output / "submitit" / "jobs.json").read_text())["jobs"]
    assert [job["state"] for job in manifest] == ["done", "done"]
    # re-rendering from the files alone gives the same table
    again = CliRunner().invoke(build_cli(), ["sweep-report", str(output)])
    assert again.exit_code == 0 and "| 0.3 | 1 |" in again.output


def test_a_slurm_sweep_is_one_array_with_the_cap_partition_and_requeue(tmp_path, fake_slurm):
    output = tmp_path / "out"
    result = invoke("--launcher", "submitit", "--max-parallel", "3", "--partition", "gpu", "--time", "120", "--seeds", "2",
                    "--output-dir", str(output))  # --cluster auto: sbatch is on the PATH
    assert result.exit_code == 0, result.output
    assert "submitted 4 jobs (slurm: 4242)" in result.output and f"pagbench sweep-report {output}" in result.output
    script = fake_slurm.read_text()
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --signal=USR2@", "#SBATCH --cpus-per-task=4"):
        assert line in script, line
    assert "--gpus-per-node" not in script  # a CPU sweep asks for no GPU
    manifest = json.loads((output / "submitit" / "jobs.json").read_text())["jobs"]
    assert [job["job_id"] for job in manifest] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    assert not list(output.glob("*.json"))  # nothing ran here
    report = CliRunner().invoke(build_cli(), ["sweep-report", str(output)])
    assert report.exit_code == 2 and report.output.count("no result yet") == 4 and "4242_0_0_log.err" in report.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--partition", "gpu", "--cpus-per-job", "16"], "asks for 16 CPUs per job; partition gpu's largest node has 8 (--cpus-per-job)"),
        (["--cpus-per-job", "17"], "asks for 17 CPUs per job; partition cpu's largest node has 16"),
        (["--partition", "gpu", "--gpus-per-job", "4"], "asks for 4 GPUs per job; partition gpu's nodes have at most 2"),
        (["--gpus-per-job", "1"], "asks for 1 GPU per job; partition cpu's nodes have none"),
        (["--partition", "gpu", "--time", "601"], "asks for 601 minutes per job; partition gpu's time limit is 600 minutes"),
        (["--mem-per-job", "80"], "asks for 80 GB per job; partition cpu's largest node has 62.5 GB (--mem-per-job)"),
        (["--partition", "gpuu"], "partition 'gpuu' does not exist on this cluster (did you mean gpu, cpu?); partitions: cpu, gpu"),
    ],
)
def test_a_job_no_node_can_run_is_refused_before_submitting(tmp_path, fake_slurm, args, message):
    output = tmp_path / "out"
    result = invoke("--launcher", "submitit", "--cluster", "slurm", *args, "--output-dir", str(output))
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not output.exists() and not fake_slurm.exists()  # nothing written, nothing submitted


def test_the_default_cpus_fit_a_small_partition(tmp_path, fake_slurm):
    (fake_slurm.parent / "nodes.txt").write_text("debug*|n1|2|2000|(null)|infinite|idle\n")
    result = invoke("--launcher", "submitit", "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "2 CPUs per job (the default, 4, is more than partition debug's largest node has" in result.output
    assert "#SBATCH --cpus-per-task=2" in fake_slurm.read_text()


def test_slurm_times_and_gres_are_read():
    from pagbench_plugins.zoo.launchers import gpu_count, hopeless, slurm_minutes

    assert [slurm_minutes(text) for text in ("infinite", "30", "30:30", "2:00:00", "1-00:00:00", "2-12")] == [None, 30, 30.5, 120, 1440, 3600]
    assert [gpu_count(text) for text in ("(null)", "gpu:2", "gpu:a100:4(S:0-1),gpu:v100:2", "gpu", "shard:8")] == [0, 2, 6, 1, 0]
    assert hopeless("PartitionConfig") and hopeless("ReqNodeNotAvail, UnavailableNodes:")
    assert not hopeless("Resources") and not hopeless("Priority") and not hopeless("ReqNodeNotAvail, UnavailableNodes:n1")


def test_wait_shows_pending_reasons_and_stops_on_a_hopeless_one(tmp_path, fake_slurm):
    bin_dir = fake_slurm.parent / "bin"
    queue = fake_slurm.parent / "queue.txt"
    queue.write_text("4242_0|PENDING|PartitionConfig\n4242_1|PENDING|PartitionConfig\n")
    (bin_dir / "squeue").write_text(f"#!/bin/sh\nexec {CAT} {queue}\n")
    (bin_dir / "squeue").chmod(0o755)
    result = invoke("--launcher", "submitit", "--wait", "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == ("Error: job 4242_0 can never start (pending, reason PartitionConfig); "
                                                      "cancel the array with scancel 4242 and submit what the partition offers")


def test_follow_slurm_reports_reasons_and_jobs_that_left_the_queue(tmp_path, fake_slurm):
    from types import SimpleNamespace

    from pagbench_plugins.zoo.launchers import follow_slurm

    bin_dir = fake_slurm.parent / "bin"
    (bin_dir / "squeue").write_text("#!/bin/sh\necho '7_0|RUNNING|None'\necho '7_1|PENDING|Resources'\n")
    (bin_dir / "squeue").chmod(0o755)
    done = tmp_path / "7_0_result.pkl"
    handles = [SimpleNamespace(job_id=f"7_{index}", paths=SimpleNamespace(result_pickle=tmp_path / f"7_{index}_result.pkl"))
               for index in range(3)]  # 7_2 is not in the queue and has no result: it ended without one
    lines = []

    def echo(line):
        lines.append(line)
        if len(lines) == 1:  # the next poll: 7_0 has finished, 7_1 left the queue
            done.write_bytes(b"x")
            (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")

    assert follow_slurm(handles, poll_seconds=0, echo=echo) == {"7_1", "7_2"}
    assert lines == ["jobs: 1 finished, 1 running, 1 pending (1 Resources)", "jobs: 3 finished, 0 running, 0 pending"]


def test_submitits_sacct_warnings_are_one_line(capsys):
    import logging

    from pagbench_plugins.zoo.launchers import quiet_accounting_warnings

    logger = logging.getLogger("submitit")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        with quiet_accounting_warnings():
            for call in (1, 2, 3):
                logger.warning(f"Call #{call} - Bypassing sacct error Command '['sacct']' returned non-zero exit status 1., status may be inaccurate.")
            logger.warning("Requeued job 7 (3 remaining timeouts)")
        logger.warning("Call #4 - Bypassing sacct error")  # outside the wait: untouched
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in records] == ["Requeued job 7 (3 remaining timeouts)", "Call #4 - Bypassing sacct error"]
    assert capsys.readouterr().err.count("Slurm accounting is not available here") == 1


def _poll_until(condition, processes, what, deadline_seconds=300):
    """Wait for ``condition()`` while ``processes`` run, pausing on the processes themselves."""
    import subprocess
    import time

    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        for process in processes:
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass


@pytest.mark.slow
def test_two_processes_that_need_one_model_train_it_once(tmp_path, isolated_cache):
    """The store's lock, without Slurm: two evaluations needing the same untrained model start
    while this test holds its lock; once released, one trains it and the other reuses it."""
    import os
    import subprocess

    from pagbench.models.store import model_lock
    from pagbench_plugins.zoo.build import recipe_of

    name, options = "resnet18-synthetic-standard-0", {"epochs": "1"}
    recipe = recipe_of(name, options)
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "pagbench"), "evaluate", "--model", name, "--model-option", "epochs=1", "--num-images", "20",
               "--metric", "accuracy"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"process{index}.err" for index in range(2)]
    with model_lock(recipe.identifier):
        processes = [subprocess.Popen([*command, "--output", str(tmp_path / f"result{index}.json")], env=environment,
                                      stdout=subprocess.DEVNULL, stderr=log.open("w")) for index, log in enumerate(logs)]
        _poll_until(lambda: all("is being trained by another process: waiting" in log.read_text() for log in logs), processes,
                    "both processes to wait for the lock")
    assert [process.wait(timeout=600) for process in processes] == [0, 0], [log.read_text()[-2000:] for log in logs]
    trained = ["not in the model store: training it now" in log.read_text() for log in logs]
    assert sorted(trained) == [False, True]  # one trained it, the other found it stored
    results = [json.loads((tmp_path / f"result{index}.json").read_text()) for index in range(2)]
    assert results[0]["metrics"]["accuracy"] == results[1]["metrics"]["accuracy"]
    assert list(isolated_cache.glob("models/*.lock")) == [isolated_cache / "models" / f"{recipe.identifier}.lock"]


def test_a_slurm_jobs_failure_is_the_last_line_of_its_trace():
    from pagbench_plugins.zoo.launchers import failure_line

    error = submitit.core.utils.FailedJobError(
        "Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\npagbench.errors.PagbenchError: cannot write /c/models/m/checkpoint.pt: File exists\n'
        "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n  - /l/1_0_0_log.err\n"
        "  - /l/1_0_0_log.out")
    assert failure_line(error) == "cannot write /c/models/m/checkpoint.pt: File exists"
    assert failure_line(RuntimeError("CUDA out of memory (simulated)")) == "CUDA out of memory (simulated)"
