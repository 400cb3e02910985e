"""A real single-node Slurm cluster for the tests: ``scripts/slurm_cluster.sh`` (munged,
slurmctld and slurmd with a generated slurm.conf, all in a temporary folder) started once per
test session and stopped at its end.

Tests that use the ``slurm_cluster`` fixture are marked ``slurm``; they skip only where the
Debian packages ``slurm-wlm`` and ``munge`` are not installed (``.ci/run`` installs them) or
the run is not root (the daemons run as root here).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.sh"
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")


def missing_tools() -> list[str]:
    search = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    return [tool for tool in DAEMONS + CLIENTS if shutil.which(tool, path=search) is None]


def free_port_pair() -> int:
    """A port p with p and p + 1 both free on 127.0.0.1 (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@dataclass(frozen=True)
class SlurmCluster:
    """The running cluster: ``conf`` is its slurm.conf (export ``SLURM_CONF`` to use it)."""

    directory: Path
    conf: Path

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at the cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def command(self, *arguments: str) -> str:
        """Run a Slurm client command against the cluster; its stdout."""
        completed = subprocess.run(list(arguments), env=self.env(), capture_output=True, text=True, timeout=60)
        if completed.returncode != 0:
            raise AssertionError(f"{' '.join(arguments)} failed: {completed.stderr.strip()}")
        return completed.stdout

    def queue(self) -> dict[str, str]:
        """``{task id: state}`` of every job in the queue (one line per array task)."""
        lines = self.command("squeue", "-h", "-r", "-o", "%i|%T").splitlines()
        return dict(line.split("|", 1) for line in lines if "|" in line)

    def wait_until_empty(self, deadline_seconds: float = 120) -> None:
        """Poll ``squeue`` (bounded) until no job is left."""
        deadline = time.monotonic() + deadline_seconds
        while self.queue():
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still queued after {deadline_seconds} s: {self.queue()}")
            time.sleep(0.2)

    def clear(self) -> None:
        """Cancel every job and wait until the queue is empty."""
        self.command("scancel", "--user", str(os.getuid()))
        self.wait_until_empty()


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = missing_tools()
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing): apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs munged, slurmctld and slurmd as root")
    directory = Path(tempfile.mkdtemp(prefix="pagbench-slurm-"))  # short: munged's socket path must fit sun_path
    environment = {**os.environ, "PAGBENCH_SLURM_PORT": str(free_port_pair()), "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
    started = subprocess.run([str(SCRIPT), "start", str(directory)], env=environment, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"the test Slurm cluster did not start: {started.stderr.strip()}")
    cluster = SlurmCluster(directory=directory, conf=directory / "slurm.conf")
    try:
        yield cluster
    finally:
        try:
            cluster.clear()
        finally:
            subprocess.run([str(SCRIPT), "stop", str(directory)], env=environment, capture_output=True, timeout=120)
            shutil.rmtree(directory, ignore_errors=True)
