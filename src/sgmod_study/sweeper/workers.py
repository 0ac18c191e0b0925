"""Sweep workers as jobs of a Hydra launcher (SLURM through submitit, or its local executor),
and what their ends mean for the sweep."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

import optuna

from sgmod_study.paths import OPTUNA_DIR
from sgmod_study.run.cli import shown_path
from sgmod_study.sweeper.scheduler import SweepFailed
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.signals import SweepInterrupted, stop_on_signals
from sgmod_study.sweeper.storage import count_results, open_storage


def run_workers(launcher, workers: int, fixed: Sequence[str], settings: SweepSettings) -> optuna.Study:
    """Start ``workers`` sweep workers as jobs of a Hydra launcher (SLURM through submitit, or its
    local executor) and wait for them; they share the study through its storage. A job composes
    its config from the fixed command-line overrides (the launcher adds only Hydra's own).

    A worker whose job was signalled (preempted, requeued, cancelled) stopped its trials and queued
    them again; one whose job was killed outright left them to the others' liveness watch, which
    fails them and queues them again. Either way the others ran them: where the study still lacks
    trials when every job has ended, the sweep ends as interrupted (the same command resumes it).
    A worker that failed otherwise fails the sweep."""
    from hydra.core.utils import JobStatus

    from sgmod_study.sweeper.slurm_jobs import WorkerLost

    with stop_on_signals():  # Ctrl-C or SIGTERM while the jobs run: SweepInterrupted (the launcher cancels them)
        returns = launcher.launch([[*fixed, f"+sweep_worker={i}"] for i in range(workers)], initial_job_idx=0)
    for i, (job, stdout, stderr) in enumerate(getattr(launcher, "consoles", [])):
        print(
            f"[sweep] worker {i}: SLURM job {job}, its console {shown_path(Path(stdout))} (errors: {Path(stderr).name})"
        )
    ended = {i: r._return_value for i, r in enumerate(returns) if r.status != JobStatus.COMPLETED}
    stopped = {i: err for i, err in ended.items() if isinstance(err, (SweepInterrupted, WorkerLost))}
    failed = [(i, err) for i, err in ended.items() if i not in stopped]
    if failed:
        raise SweepFailed("sweep workers failed: " + "; ".join(f"worker {i}: {err!r}" for i, err in failed))
    for i, stop in stopped.items():
        how = (
            f"was stopped by {stop.name} (its job signalled, requeued or cancelled)"
            if stop.__class__ is SweepInterrupted
            else f"was lost: {stop}"
        )
        print(f"[sweep] worker {i} {how}; its running trials were queued again")
    storage, _ = open_storage(settings.storage, settings.study_name, OPTUNA_DIR)
    study = optuna.load_study(study_name=settings.study_name, storage=storage)
    if stopped and count_results(study) < settings.n_trials:
        stop = next((s for s in stopped.values() if isinstance(s, SweepInterrupted)), SweepInterrupted(signal.SIGTERM))
        stop.study = study
        raise stop
    return study
