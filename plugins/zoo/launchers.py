"""Where a sweep's jobs run: in this process (``local``), or as a Slurm job array through
``submitit`` (``pip install 'pagbench[slurm]'``), whose local and debug executors run the same
path on a machine without Slurm.

One job is one (regime, strength, seed): it trains (or resumes, or reuses) the model in the
model store, evaluates it and writes one result file atomically, so a failed job leaves no
result and the merge (``pagbench sweep-report DIR``) is the same as for local sweeps. A Slurm
job that is preempted or reaches its time limit is requeued (:meth:`SweepJob.checkpoint`) and
resumes from the last finished epoch of its checkpoint. ``DIR/submitit/jobs.json`` lists the
jobs with their log files; the merge names the log of every job that left no result.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pagbench.errors import PagbenchError

LAUNCHERS = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local", "debug")
MANIFEST = Path("submitit") / "jobs.json"


@dataclass(frozen=True)
class SubmititSettings:
    """Resources of each job. ``cluster``: ``slurm``, ``local`` (subprocesses on this machine),
    ``debug`` (in this process, one job after the other) or ``auto`` (slurm when ``sbatch`` is
    on the PATH, else local). ``max_parallel``: jobs of the array running at once
    (``slurm_array_parallelism``). ``time_minutes``: wall-clock limit of one job (a job that
    reaches it is requeued and resumes). ``partition``: Slurm only."""

    cluster: str = "auto"
    max_parallel: int = 64
    gpus_per_job: int | None = None
    cpus_per_job: int = 4
    time_minutes: int = 24 * 60
    partition: str | None = None
    wait: bool | None = None


def check_launcher(launcher: str, settings: SubmititSettings, device: str, slurm_options_given: bool) -> str | None:
    """Validate the launcher and its settings before anything is submitted or written; returns
    the cluster submitit will use (None for ``local``). One-line :class:`PagbenchError` on bad input."""
    if launcher not in LAUNCHERS:
        raise PagbenchError(f"unknown launcher {launcher!r}{closest_names_hint(launcher, LAUNCHERS)}; launchers: {', '.join(LAUNCHERS)}")
    if launcher == "local":
        if slurm_options_given:
            raise PagbenchError("--cluster, --max-parallel, --gpus-per-job, --cpus-per-job, --time, --partition and --wait need --launcher submitit")
        _check_local_device(device)
        return None
    if settings.cluster not in CLUSTERS:
        raise PagbenchError(f"unknown cluster {settings.cluster!r}{closest_names_hint(settings.cluster, CLUSTERS)}; clusters: {', '.join(CLUSTERS)}")
    import_submitit()
    cluster = settings.cluster
    if cluster == "auto":
        cluster = "slurm" if shutil.which("sbatch") else "local"
    if cluster == "slurm" and not shutil.which("sbatch"):
        raise PagbenchError("--cluster slurm: Slurm is not available here (no sbatch on the PATH); use --cluster local or debug")
    if settings.partition is not None and cluster != "slurm":
        raise PagbenchError(f"--partition is a Slurm option; the cluster here is {cluster!r}")
    for name, value, low in (("--max-parallel", settings.max_parallel, 1), ("--cpus-per-job", settings.cpus_per_job, 1),
                             ("--time", settings.time_minutes, 1), ("--gpus-per-job", settings.gpus_per_job or 0, 0)):
        if value < low:
            raise PagbenchError(f"{name} must be >= {low}, got {value}")
    if cluster != "slurm":
        _check_local_device(device)  # the jobs run here; on Slurm the GPU is on the compute nodes
    return cluster


def closest_names_hint(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=2, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _check_local_device(device: str) -> None:
    from pagbench.validation import check_device

    check_device(str(device))


def import_submitit():
    """``submitit``, or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise PagbenchError("--launcher submitit needs the submitit package: pip install 'pagbench[slurm]'") from None
    return submitit


@dataclass
class SweepJob:
    """One (regime, strength, seed) of a sweep, as a picklable callable for submitit.

    ``__call__`` trains or resumes the model, evaluates it and writes its result file; returns
    the result file's path. ``checkpoint`` is what submitit calls on preemption or timeout: it
    requeues the same job (training resumes from the model store's epoch checkpoint)."""

    dataset: str
    regime: str
    strength: float
    seed: int
    preset: str
    output_dir: str
    device: str = "cpu"
    data_root: str | None = None
    evaluation: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    training_options: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        from .recipes import model_name

        return model_name(self.dataset, self.regime, self.strength, self.seed)

    def __call__(self) -> str:
        from pagbench.registry import datasets

        from .sweep import result_path, run
        from .training import TrainingOptions

        data = datasets().get(self.dataset).factory(self.data_root)
        evaluation = {**self.evaluation, "data_root": self.data_root}
        for _ in run(data, self.regime, [self.strength], range(self.seed, self.seed + 1), self.preset, Path(self.output_dir),
                     evaluation, self.device, False, dict(self.overrides), TrainingOptions(**self.training_options)):
            pass
        return str(result_path(Path(self.output_dir), self.model))

    def checkpoint(self, *args, **kwargs):
        submitit = import_submitit()
        return submitit.helpers.DelayedSubmission(SweepJob(**asdict(self)))


def executor_for(cluster: str, settings: SubmititSettings, folder: Path, device: str):
    """A submitit executor with the settings applied (Slurm-only keys are ignored elsewhere)."""
    submitit = import_submitit()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)  # logs: folder/<job>_<task>_log.{out,err}
    gpus = settings.gpus_per_job if settings.gpus_per_job is not None else (1 if str(device).startswith("cuda") else 0)
    parameters = dict(name="pagbench-sweep", timeout_min=settings.time_minutes, cpus_per_task=settings.cpus_per_job,
                      tasks_per_node=1, nodes=1, slurm_array_parallelism=settings.max_parallel)
    if gpus:
        parameters["gpus_per_node"] = gpus
    if settings.partition is not None:
        parameters["slurm_partition"] = settings.partition
    executor.update_parameters(**parameters)
    return executor


def submit(jobs: list[SweepJob], cluster: str, settings: SubmititSettings, output_dir: Path, device: str):
    """Submit ``jobs`` as one array; writes the manifest; returns the submitit jobs."""
    folder = Path(output_dir) / "submitit"
    executor = executor_for(cluster, settings, folder, device)
    with executor.batch():
        handles = [executor.submit(job) for job in jobs]
    write_manifest(output_dir, [entry(job, handle) for job, handle in zip(jobs, handles)])
    return handles


def entry(job: SweepJob, handle, state: str = "submitted", error: str | None = None) -> dict:
    return {"model": job.model, "job_id": str(handle.job_id), "stdout": str(handle.paths.stdout), "stderr": str(handle.paths.stderr),
            "state": state, **({"error": error} if error else {})}


def write_manifest(output_dir: Path, entries: list[dict]) -> None:
    from pagbench.paths import write_atomic

    text = json.dumps({"jobs": entries}, indent=1) + "\n"
    write_atomic(Path(output_dir) / MANIFEST, lambda stream: stream.write(text.encode()))


def wait(jobs: list[SweepJob], handles, output_dir: Path) -> list[dict]:
    """Wait for every job (the debug executor runs them here, now); updates the manifest with
    each job's state; returns the manifest entries of the jobs that failed."""
    entries = []
    for job, handle in zip(jobs, handles):
        error = handle.exception()  # the debug executor runs the job here, without its post-mortem debugger
        message = None if error is None else (str(error).strip().splitlines() or [type(error).__name__])[-1]
        entries.append(entry(job, handle, "failed" if error is not None else "done", message))
    write_manifest(output_dir, entries)
    return [item for item in entries if item["state"] == "failed"]


def missing_results(output_dir: Path) -> list[str]:
    """One line per job of the manifest that left no result file (failed, or not finished),
    naming its log files; empty without a manifest."""
    from .sweep import result_path

    path = Path(output_dir) / MANIFEST
    if not path.exists():
        return []
    lines = []
    for item in json.loads(path.read_text())["jobs"]:
        if result_path(output_dir, item["model"]).exists():
            continue
        state = item.get("state", "submitted")
        why = f"failed: {item['error']}" if item.get("error") else ("failed" if state == "failed" else "no result yet (still running, or failed)")
        lines.append(f"job {item['job_id']} ({item['model']}) {why}; log: {item['stderr']} (stdout {item['stdout']})")
    return lines
