"""Where a sweep's jobs run: in this process (``local``), or as a Slurm job array through
``submitit`` (``pip install 'pagbench[slurm]'``), whose local and debug executors run the same
path on a machine without Slurm.

One job is one (regime, strength, seed): it trains (or resumes, or reuses) the model in the
model store, evaluates it and writes one result file atomically, so a failed job leaves no
result and the merge (``pagbench sweep-report DIR``) is the same as for local sweeps. A Slurm
job that is preempted or reaches its time limit is requeued (:meth:`SweepJob.checkpoint`) and
resumes from the last finished epoch of its checkpoint. ``DIR/submitit/jobs.json`` lists the
jobs with their log files; the merge names the log of every job that left no result.

On Slurm, what is asked for (CPUs, GPUs, memory, time per job) is compared with the partition's
nodes (``sinfo``) before anything is submitted: a job that could never start is a one-line
error. ``--wait`` follows the array with ``squeue`` (so it works without Slurm accounting, where
submitit's ``sacct`` calls fail), shows pending reasons, and stops with a one-line error when a
job is pending for a reason that cannot resolve itself (e.g. ``PartitionConfig``).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pagbench.plugin import PagbenchError

LAUNCHERS = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local", "debug")
MANIFEST = Path("submitit") / "jobs.json"


@dataclass(frozen=True)
class SubmititSettings:
    """Resources of each job. ``cluster``: ``slurm``, ``local`` (subprocesses on this machine),
    ``debug`` (in this process, one job after the other) or ``auto`` (slurm when ``sbatch`` is
    on the PATH, else local). ``max_parallel``: jobs of the array running at once
    (``slurm_array_parallelism``). ``cpus_per_job``: None is :data:`DEFAULT_CPUS`, or the
    partition's largest node when that has fewer. ``mem_gb``: memory per job in GB (None:
    the cluster's default). ``time_minutes``: wall-clock limit of one job (a job that reaches it
    is requeued and resumes). ``partition``: Slurm only (None: the cluster's default)."""

    cluster: str = "auto"
    max_parallel: int = 64
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    time_minutes: int = 24 * 60
    partition: str | None = None
    wait: bool | None = None


#: CPU cores per job when ``--cpus-per-job`` is not given (fewer on a partition whose largest node has fewer).
DEFAULT_CPUS = 4


def check_launcher(launcher: str, settings: SubmititSettings, device: str, slurm_options_given: bool) -> str | None:
    """Validate the launcher and its settings before anything is submitted or written; returns
    the cluster submitit will use (None for ``local``). One-line :class:`PagbenchError` on bad input."""
    if launcher not in LAUNCHERS:
        raise PagbenchError(f"unknown launcher {launcher!r}{closest_names_hint(launcher, LAUNCHERS)}; launchers: {', '.join(LAUNCHERS)}")
    if launcher == "local":
        if slurm_options_given:
            raise PagbenchError("--cluster, --max-parallel, --gpus-per-job, --cpus-per-job, --mem-per-job, --time, --partition and --wait need --launcher submitit")
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
    for name, value, low in (("--max-parallel", settings.max_parallel, 1), ("--cpus-per-job", 1 if settings.cpus_per_job is None else settings.cpus_per_job, 1),
                             ("--time", settings.time_minutes, 1), ("--gpus-per-job", settings.gpus_per_job or 0, 0)):
        if value < low:
            raise PagbenchError(f"{name} must be >= {low}, got {value}")
    if settings.mem_gb is not None and not settings.mem_gb > 0:
        raise PagbenchError(f"--mem-per-job must be > 0 GB, got {settings.mem_gb:g}")
    if cluster != "slurm":
        _check_local_device(device)  # the jobs run here; on Slurm the GPU is on the compute nodes
    elif shutil.which("sinfo"):
        fitted, partition = fit_partition(settings, device)
        if settings.cpus_per_job is None and fitted.cpus_per_job != DEFAULT_CPUS:
            print(f"{fitted.cpus_per_job} CPUs per job (the default, {DEFAULT_CPUS}, is more than partition "
                  f"{partition}'s largest node has; --cpus-per-job sets it)", file=sys.stderr)
    return cluster


def closest_names_hint(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=2, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _check_local_device(device: str) -> None:
    from pagbench.plugin import check_device

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
        from pagbench.plugin import datasets

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


def gpus_requested(settings: SubmititSettings, device: str) -> int:
    """GPUs per job: ``--gpus-per-job``, else 1 for a CUDA device, else 0."""
    return settings.gpus_per_job if settings.gpus_per_job is not None else (1 if str(device).startswith("cuda") else 0)


@dataclass(frozen=True)
class SlurmNode:
    """One node of one partition as ``sinfo`` reports it. ``memory_mb``: RealMemory in MiB;
    ``time_limit_minutes``: the partition's MaxTime (None: unlimited)."""

    partition: str
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_minutes: float | None
    state: str
    default: bool


SINFO_FORMAT = "%P|%N|%c|%m|%G|%l|%t"


def slurm_nodes() -> list[SlurmNode]:
    """Every (partition, node) of the cluster, from ``sinfo -h -N -o SINFO_FORMAT``; a one-line
    error when ``sinfo`` fails (e.g. slurmctld unreachable)."""
    output = _slurm_command(["sinfo", "-h", "-N", "-o", SINFO_FORMAT])
    nodes = []
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 7:
            continue
        partition, name, cpus, memory, gres, limit, state = fields
        try:
            nodes.append(SlurmNode(partition=partition.rstrip("*"), name=name, cpus=int(cpus.rstrip("+")),
                                   memory_mb=int(memory.rstrip("+")), gpus=gpu_count(gres),
                                   time_limit_minutes=slurm_minutes(limit), state=state, default=partition.endswith("*")))
        except ValueError:
            continue  # a line sinfo reports in a form we do not read: no check rather than a wrong one
    return nodes


def _slurm_command(arguments: list[str]) -> str:
    try:
        completed = subprocess.run(arguments, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PagbenchError(f"{arguments[0]} failed: {error}") from None
    if completed.returncode != 0:
        first = (completed.stderr.strip().splitlines() or [f"exit status {completed.returncode}"])[0]
        raise PagbenchError(f"{' '.join(arguments[:2])} failed: {first}")
    return completed.stdout


def gpu_count(gres: str) -> int:
    """GPUs in a ``sinfo %G`` field: ``(null)`` → 0, ``gpu:2`` → 2, ``gpu:a100:4(S:0-1),gpu:v100:2`` → 6."""
    total = 0
    for item in gres.split(","):
        item = item.split("(")[0].strip()
        if item == "gpu":
            total += 1
        elif item.startswith("gpu:"):
            count = item.rsplit(":", 1)[-1]
            total += int(count) if count.isdigit() else 1
    return total


def slurm_minutes(text: str) -> float | None:
    """A Slurm time (``infinite``, ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in minutes; None: unlimited."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", "none"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(part) for part in clock.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0.0, 0.0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0.0, parts
    else:
        hours, minutes, seconds = 0.0, parts[0], 0.0
    return float(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def fit_partition(settings: SubmititSettings, device: str, nodes: list[SlurmNode] | None = None) -> tuple[SubmititSettings, str | None]:
    """(``settings`` with the default CPUs resolved, the partition's name: ``--partition`` or
    the cluster's default) against the partition's nodes; a one-line :class:`PagbenchError` when no node of the partition could ever run one job
    (too many CPUs, GPUs or memory, or more time than the partition allows)."""
    nodes = slurm_nodes() if nodes is None else nodes
    partitions = sorted({node.partition for node in nodes})
    if settings.partition is None:
        chosen = sorted({node.partition for node in nodes if node.default})
        if not chosen:
            return replace(settings, cpus_per_job=settings.cpus_per_job or DEFAULT_CPUS), None  # no default partition: sbatch decides
        name = chosen[0]
    else:
        name = settings.partition
    mine = [node for node in nodes if node.partition == name]
    if not mine:
        raise PagbenchError(f"partition {name!r} does not exist on this cluster{closest_names_hint(name, partitions)}; "
                            f"partitions: {', '.join(partitions) or 'none'}")
    most_cpus = max(node.cpus for node in mine)
    cpus = settings.cpus_per_job if settings.cpus_per_job is not None else min(DEFAULT_CPUS, most_cpus)
    gpus = gpus_requested(settings, device)
    plural = lambda count, word: f"{count:g} {word}" + ("" if count == 1 else "s")
    if cpus > most_cpus:
        raise PagbenchError(f"asks for {plural(cpus, 'CPU')} per job; partition {name}'s largest node has {most_cpus} (--cpus-per-job)")
    if gpus:
        most_gpus = max(node.gpus for node in mine)
        if gpus > most_gpus:
            raise PagbenchError(f"asks for {plural(gpus, 'GPU')} per job; partition {name}'s nodes have "
                                f"{'none' if most_gpus == 0 else f'at most {most_gpus}'} (--gpus-per-job)")
        if not any(node.cpus >= cpus and node.gpus >= gpus for node in mine):
            raise PagbenchError(f"asks for {plural(cpus, 'CPU')} and {plural(gpus, 'GPU')} per job; no node of partition {name} has both")
    if settings.mem_gb is not None:
        most_memory = max(node.memory_mb for node in mine)
        if settings.mem_gb * 1024 > most_memory:
            raise PagbenchError(f"asks for {settings.mem_gb:g} GB per job; partition {name}'s largest node has {most_memory / 1024:.3g} GB (--mem-per-job)")
    limit = mine[0].time_limit_minutes
    if limit is not None and settings.time_minutes > limit:
        raise PagbenchError(f"asks for {settings.time_minutes} minutes per job; partition {name}'s time limit is {limit:g} minutes (--time)")
    return replace(settings, cpus_per_job=cpus), name


def executor_for(cluster: str, settings: SubmititSettings, folder: Path, device: str):
    """A submitit executor with the settings applied (Slurm-only keys are ignored elsewhere)."""
    submitit = import_submitit()
    if cluster == "slurm" and settings.cpus_per_job is None and shutil.which("sinfo"):
        settings, _ = fit_partition(settings, device)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)  # logs: folder/<job>_<task>_log.{out,err}
    gpus = gpus_requested(settings, device)
    parameters = dict(name="pagbench-sweep", timeout_min=settings.time_minutes, cpus_per_task=settings.cpus_per_job or DEFAULT_CPUS,
                      tasks_per_node=1, nodes=1, slurm_array_parallelism=settings.max_parallel)
    if gpus:
        parameters["gpus_per_node"] = gpus
    if settings.mem_gb is not None:
        parameters["mem_gb"] = settings.mem_gb
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
    from pagbench.plugin import write_atomic

    text = json.dumps({"jobs": entries}, indent=1) + "\n"
    write_atomic(Path(output_dir) / MANIFEST, lambda stream: stream.write(text.encode()))


def wait(jobs: list[SweepJob], handles, output_dir: Path, poll_seconds: float = 2.0) -> list[dict]:
    """Wait for every job (the debug executor runs them here, now; Slurm jobs are followed with
    :func:`follow_slurm`); updates the manifest with each job's state; returns the manifest
    entries of the jobs that failed."""
    submitit = import_submitit()
    entries = []
    with quiet_accounting_warnings():
        ended = follow_slurm(handles, poll_seconds) if handles and isinstance(handles[0], submitit.SlurmJob) else set()
        for job, handle in zip(jobs, handles):
            if str(handle.job_id) in ended and not handle.paths.result_pickle.exists():
                entries.append(entry(job, handle, "failed", "left the Slurm queue without a result (cancelled, killed, or out of memory)"))
                continue
            error = handle.exception()  # the debug executor runs the job here, without its post-mortem debugger
            message = None if error is None else failure_line(error)
            entries.append(entry(job, handle, "failed" if error is not None else "done", message))
    write_manifest(output_dir, entries)
    return [item for item in entries if item["state"] == "failed"]


def failure_line(error: BaseException) -> str:
    """One line saying why a job failed: the last line of the traceback a submitit job reports
    (without the exception's module path for pagbench's own errors), else the error's last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    dashes = [index for index, line in enumerate(lines) if set(line) == {"-"}]
    if len(dashes) >= 2 and dashes[1] > dashes[0] + 1:  # "failed during processing with trace:\n---\n<trace>\n---\n..."
        line = lines[dashes[1] - 1]
        for prefix in ("pagbench.errors.PagbenchError: ", "pagbench.errors.Terminated: "):
            if line.startswith(prefix):
                return line[len(prefix):]
        return line
    return lines[-1] if lines else type(error).__name__


#: Pending reasons that do not resolve by waiting: the job can never start as submitted.
HOPELESS_REASONS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidAccount", "InvalidQOS",
                    "AccountNotAllowed", "QOSNotAllowed", "DependencyNeverSatisfied")


#: consecutive ``squeue`` failures :func:`follow_slurm` tolerates before it gives up
QUEUE_TRIES = 5


def queue_states(array_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{task id ("123_4"): (state, reason)}`` of the arrays' tasks still in the Slurm queue
    (``squeue -h -r``: one line per task)."""
    output = _slurm_command(["squeue", "-h", "-r", "-j", ",".join(array_ids), "-o", "%i|%T|%r"])
    states = {}
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 3:
            states[fields[0]] = (fields[1], fields[2])
    return states


def hopeless(reason: str) -> bool:
    """Whether a pending ``reason`` means the job can never start (``ReqNodeNotAvail`` only when
    no node is named as merely unavailable)."""
    if reason.startswith("ReqNodeNotAvail"):
        return "UnavailableNodes:" in reason and not reason.split("UnavailableNodes:", 1)[1].strip()
    return reason.split(",")[0].strip() in HOPELESS_REASONS


def follow_slurm(handles, poll_seconds: float = 2.0, echo=None) -> set[str]:
    """Poll ``squeue`` until every job of ``handles`` has written its result or left the queue;
    shows a line on stderr each time the counts of running, pending (with reasons) and finished
    jobs change. Returns the ids of the jobs that left the queue. A job pending for a
    :func:`hopeless` reason ends the wait with a one-line :class:`PagbenchError`."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    array_ids = sorted({str(handle.job_id).split("_")[0] for handle in handles})
    open_jobs = {str(handle.job_id): handle for handle in handles}
    ended, shown, failures = set(), None, 0
    while open_jobs:
        try:
            states = queue_states(array_ids)
            failures = 0
        except PagbenchError:
            failures += 1  # slurmctld busy or restarting: ask again, give up after a few tries in a row
            if failures >= QUEUE_TRIES:
                raise
            time.sleep(poll_seconds)
            continue
        for job_id, handle in list(open_jobs.items()):
            if handle.paths.result_pickle.exists():
                del open_jobs[job_id]
            elif job_id not in states:
                ended.add(job_id)
                del open_jobs[job_id]
        pending = {}
        for job_id in open_jobs:
            state, reason = states.get(job_id, ("", ""))
            if state == "PENDING":
                if hopeless(reason):
                    raise PagbenchError(f"job {job_id} can never start (pending, reason {reason}); "
                                        f"cancel the array with scancel {job_id.split('_')[0]} and submit what the partition offers")
                pending[reason] = pending.get(reason, 0) + 1
        running = sum(1 for job_id in open_jobs if states.get(job_id, ("",))[0] not in ("PENDING", ""))
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(pending.items()) if reason not in ("None", "(null)", ""))
        summary = (f"jobs: {len(handles) - len(open_jobs)} finished, {running} running, {sum(pending.values())} pending"
                   + (f" ({reasons})" if reasons else ""))
        if summary != shown:
            echo(summary)
            shown = summary
        if open_jobs:
            time.sleep(poll_seconds)
    return ended


class _AccountingFilter(logging.Filter):
    """Replaces submitit's repeated "Bypassing sacct error" warnings by one line."""

    def __init__(self):
        super().__init__()
        self.told = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "sacct" not in record.getMessage():
            return True
        if not self.told:
            self.told = True
            print("Slurm accounting is not available here (sacct fails); following the jobs with squeue instead", file=sys.stderr)
        return False


@contextmanager
def quiet_accounting_warnings():
    """While active, submitit's ``sacct`` failures are one line on stderr; other warnings pass."""
    logger = logging.getLogger("submitit")
    accounting = _AccountingFilter()
    logger.addFilter(accounting)
    try:
        yield
    finally:
        logger.removeFilter(accounting)


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
