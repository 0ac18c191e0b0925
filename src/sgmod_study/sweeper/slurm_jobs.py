"""How the sweeper waits for its workers' SLURM jobs.

hydra-submitit-launcher waits through submitit, which asks ``sacct`` for the jobs' states. Where
SLURM keeps no accounting (common on small clusters) every ask fails: submitit then warns on three
console lines at each poll, and a job killed outright, which writes no result, is never seen to
end, so the submitting command waits forever (submitit 1.5). While our launcher waits
(``watched_by_squeue``), jobs are watched through ``squeue`` instead, which every SLURM answers: a
job it no longer lists has ended, and a job that ended without a result is a lost worker
(``WorkerLost``), reported rather than awaited. A job counts as over only once squeue says so,
even where it has written a result: a requeued job reruns its worker, which rejoins the study,
and the command waits for that run's result. Ctrl-C or SIGTERM to the waiting command cancels
the jobs still queued or running (``scancel``, which sends them SIGTERM): their workers stop their
trials and queue them again, and none trains on unattended.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENDED = "ENDED"  # no longer listed by squeue; submitit counts every state but its running ones as done
POLL_MAX_S = 30  # squeue is cheap: at most this long between two asks (submitit asks sacct every 2 s to 10 min)
FORCED_EVERY_S = 3  # and at most this often while a job has written a result (is it over, or requeued?)
SQUEUE = ["squeue", "--me", "--noheader", "--array", "--format=%i|%T|%N"]  # one line per array task


class WorkerLost(RuntimeError):
    """A worker's job ended without its result (killed outright, or its node failed)."""


# What squeue may still list of a job that is over; submitit counts these as done too.
FINAL = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT"}
# The states of a job still alive that submitit knows as such; any other state squeue lists
# (REQUEUE_HOLD, REQUEUE_FED, SPECIAL_EXIT, CONFIGURING, SUSPENDED, STOPPED, RESIZING, ...) is
# passed on as PENDING: submitit would count it as done and read a requeued job's old result.
ALIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING"}


def squeue_states(output: str, registered) -> dict[str, dict[str, str]]:
    """submitit's job information from squeue's lines: each registered job's state, ``ENDED`` for
    those it does not list."""
    listed = {}
    for line in output.splitlines():
        job_id, state, nodes = (line.split("|") + ["", ""])[:3]
        state = state.strip().split()[0] if state.strip() else "PENDING"  # "CANCELLED by 0": its first word
        if state not in FINAL and state not in ALIVE:
            state = "PENDING"
        listed[job_id.strip()] = {"JobID": job_id.strip(), "State": state, "NodeList": nodes.strip()}
    return {job: listed.get(job, {"JobID": job, "State": ENDED, "NodeList": ""}) for job in registered}


def _watcher():
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        def _make_command(self) -> list[str] | None:
            return list(SQUEUE) if self._registered - self._finished else None

        def update_if_long_enough(self, mode: str) -> None:
            if mode == "force" and time.time() - self._last_status_check < FORCED_EVERY_S:
                return  # asked every second while a job has a result file (_done_once_squeue_agrees)
            super().update_if_long_enough(mode)

        def read_info(self, string) -> dict[str, dict[str, str]]:
            text = string.decode() if isinstance(string, bytes) else string
            return squeue_states(text, self._registered)

    return SqueueWatcher(delay_s=POLL_MAX_S)


def _done_once_squeue_agrees(job, force_check: bool = False) -> bool:
    """submitit's Job.done without its shortcut: a result file is no proof that a job is over. A
    requeued job (``scontrol requeue``, preemption with requeue) keeps its first run's result (the
    worker stopped by SIGTERM) through its hold and its rerun; submitit took it and the command
    ended while the job ran on unattended. Where a result exists, squeue is asked at once."""
    if job._sub_jobs:
        return all(sub_job.done() for sub_job in job._sub_jobs)
    forced = force_check or job.paths.result_pickle.exists()
    return job.watcher.is_done(job.job_id, mode="force" if forced else "standard")


def _results_or_lost(results, consoles: list[tuple[str, str, str]]):
    """``Job.results`` that turns a job ended without a result into a failed Hydra job return, and
    notes each job's id, stdout and stderr files in ``consoles``, in the jobs' order."""
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import UncompletedJobError

    def results_or_lost(job):
        consoles.append((job.job_id, str(job.paths.stdout), str(job.paths.stderr)))
        try:
            return results(job)
        except UncompletedJobError:
            lost = JobReturn()
            lost.status = JobStatus.FAILED
            lost._return_value = WorkerLost(f"its job {job.job_id} ended without a result (killed, or its node failed)")
            return [lost]

    return results_or_lost


@contextmanager
def watched_by_squeue() -> Iterator[list[tuple[str, str, str]]]:
    """submitit's SLURM jobs watched through squeue, and a job lost returned as a failure, while
    the launcher waits for its jobs. Yields the list that gets each job's id and console, in the
    order of its workers, as the launcher collects their results."""
    from submitit.slurm.slurm import SlurmJob

    from sgmod_study.sweeper.signals import SweepInterrupted

    consoles: list[tuple[str, str, str]] = []
    saved = SlurmJob.watcher, SlurmJob.results, SlurmJob.done
    SlurmJob.watcher, SlurmJob.results = _watcher(), _results_or_lost(SlurmJob.results, consoles)
    SlurmJob.done = _done_once_squeue_agrees
    try:
        yield consoles
    except (SweepInterrupted, KeyboardInterrupt):
        cancel_unfinished(SlurmJob.watcher)
        raise
    finally:
        SlurmJob.watcher, SlurmJob.results, SlurmJob.done = saved


def cancel_unfinished(watcher) -> None:
    """scancel the watched jobs that have not ended (their workers get SIGTERM and stop cleanly)."""
    jobs = sorted(watcher._registered - watcher._finished)
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)
        print(f"[sweep] cancelled the worker jobs {', '.join(jobs)}: their running trials run again next time")
