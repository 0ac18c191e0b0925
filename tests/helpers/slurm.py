"""A real SLURM cluster for the sweeper's SLURM tests: the one-node cluster that
scripts/install_test_services.sh sets up on this machine (it needs root and apt), or any SLURM
whose controller answers here with a node that is idle. Without one the tests are skipped with
one line saying why (and fail in CI, which installs it: ``make test`` runs ``make services``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers.runs import ROOT

INSTALL = "scripts/install_test_services.sh"
TAKES_JOBS = ("idle",)  # a node busy with other jobs would keep a test's workers pending


def slurm_missing() -> str | None:
    """Why this machine has no usable SLURM, in one line; None where it has one."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        how = "needs root and apt" if os.geteuid() != 0 or shutil.which("apt-get") is None else "was not run"
        return f"no SLURM: sinfo/sbatch not found ({INSTALL} {how})"
    try:
        answer = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return f"no SLURM: sinfo got no answer in 15 s (are slurmctld and munged running? {INSTALL} starts them)"
    if answer.returncode != 0:
        first = (answer.stderr.strip().splitlines() or ["no output"])[0]
        return f"no SLURM: sinfo failed: {first} ({INSTALL} starts the daemons)"
    nodes = dict(line.split() for line in answer.stdout.splitlines() if len(line.split()) == 2)
    if not nodes:
        return "no SLURM: sinfo lists no node"
    if not any(state in TAKES_JOBS for state in nodes.values()):
        shown = ", ".join(f"{node} {state}" for node, state in sorted(nodes.items()))
        return f"no SLURM node is idle ({shown}); scontrol update nodename=<node> state=resume, or wait for its jobs"
    return None


def require_slurm() -> None:
    """Skip the test (fail it in CI) where there is no usable SLURM."""
    reason = slurm_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI sets it up: make test runs make services")
    pytest.skip(reason)


def launcher_overrides(job_name: str) -> list[str]:
    """hydra/launcher=slurm as small as a test needs (conf/hydra/launcher/slurm.yaml asks for 4
    GPUs, 16 CPUs and 64 GB): one CPU and no GPU per worker job, in the default partition."""
    return [
        "hydra/launcher=slurm",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=10",
        f"hydra.launcher.name={job_name}",
    ]


def cancel_jobs(job_name: str) -> None:
    """scancel this test's jobs (by their name: never anyone else's)."""
    subprocess.run(["scancel", "--name", job_name], capture_output=True, timeout=30)


def worker_jobs(sweep_dir: Path) -> dict[str, list[int]]:
    """The sweep's SLURM worker jobs (array tasks, as submitit names their folders: ``<job>_<task>``;
    a single job, ``<job>``, for one worker) and the trials each started, read from the job's own
    console (``.submitit/<folder>/<folder>_0_log.out``)."""
    jobs = {}
    for folder in sorted((sweep_dir / ".submitit").glob("*")):
        if not (folder / f"{folder.name}_submitted.pkl").is_file():  # an array's own folder holds its script only
            continue
        log = folder / f"{folder.name}_0_log.out"
        text = log.read_text(errors="replace") if log.is_file() else ""
        jobs[folder.name] = [int(n) for n in re.findall(r"^\[sweep\] trial (\d+) started", text, re.M)]
    return jobs


def running_trials(sweep_dir: Path) -> dict[str, list[int]]:
    """The trials each worker job has started and not finished yet, read from its console."""
    running = {}
    for job, started in worker_jobs(sweep_dir).items():
        if not started:  # its console may not exist yet
            running[job] = []
            continue
        text = (sweep_dir / ".submitit" / job / f"{job}_0_log.out").read_text(errors="replace")
        finished = {int(n) for n in re.findall(r"^\[sweep\] trial (\d+) (?:finished|failed)", text, re.M)}
        running[job] = [n for n in started if n not in finished]
    return running


def submission_script(sweep_dir: Path) -> str:
    """The sbatch script submitit wrote for the sweep's job array."""
    scripts = sorted((sweep_dir / ".submitit").glob("*/*_submission.sh"))
    return scripts[0].read_text() if scripts else ""


def job_environment() -> dict[str, str]:
    """The environment for a sweep whose worker jobs must import this checkout: sbatch passes the
    submitter's environment on (its default --export=ALL), and a job starts in the directory the
    sweep was started from; PYTHONPATH names this checkout's src/ absolutely."""
    src = str(ROOT / "src")
    paths = [src, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src)]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def kill_worker_outright(job: str) -> int:
    """SIGKILL the sweep worker of array task ``job`` (``<array>_<task>``), as an OOM killer or a
    failing node would end it: no signal handler runs, no result is written. Returns its pid."""
    raw = subprocess.run(["squeue", "-h", "-j", job, "-o", "%A"], capture_output=True, text=True, timeout=15)
    listed = subprocess.run(["scontrol", "listpids", raw.stdout.strip()], capture_output=True, text=True, timeout=15)
    for line in listed.stdout.splitlines()[1:]:
        pid = int(line.split()[0])
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # the worker, not the srun that started it (its command line names the module too):
        # killing srun left the worker training, and it ended the sweep with a result
        if b"submitit.core._submit" in command and Path(command[0].decode()).name != "srun":
            os.kill(pid, 9)
            return pid
    raise AssertionError(f"no sweep worker process in job {job}: {listed.stdout!r}")


def release_requeued(job: str, timeout_s: float = 60) -> None:
    """Start a requeued job now: SLURM holds one for 2 minutes (its begin time). The hold is set
    when the requeue takes effect, after ``scontrol requeue`` returns, so an update sent before the
    job is listed as pending succeeded and was overwritten: the test waited out the 2 minutes."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=15)
        if state.stdout.strip() == "PENDING":
            break
        assert time.monotonic() < deadline, (
            f"job {job} is not pending {timeout_s:.0f} s after requeue: {state.stdout!r}"
        )
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True, capture_output=True, timeout=15)
