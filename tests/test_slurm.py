"""The sweeper on a real SLURM cluster: the one-node cluster scripts/install_test_services.sh sets
up (Debian's slurm-wlm and munge, no accounting). Its workers are SLURM jobs submitted through
hydra-submitit-launcher, as the README's cluster command submits them. Skipped with one line where
there is no SLURM (the ``slurm`` fixture, tests/helpers/slurm.py)."""

from __future__ import annotations

import re

import pytest
from optuna.trial import TrialState

from helpers.slurm import submission_script, worker_jobs
from helpers.sweeps import load, sweep

pytestmark = pytest.mark.slow  # worker jobs that train: about a minute


def test_the_readmes_cluster_command_runs_two_worker_jobs_to_exactly_n_trials(tmp_path, slurm):
    """python src/train.py -m hparams_search=sgmod_classifier hydra/launcher=slurm
    hydra.sweeper.workers=2, tiny, with the journal: two SLURM jobs share the study."""
    code, output = sweep(tmp_path, *slurm, "hydra.sweeper.workers=2", n_trials=4)
    assert code == 0, output[-3000:]

    script = submission_script(tmp_path / "sweep")
    assert "#SBATCH --array=0-1" in script  # one array, two worker jobs
    assert "#SBATCH --signal=TERM@120" in script and "USR2" not in script  # trials stop cleanly on SIGTERM
    jobs = worker_jobs(tmp_path / "sweep")
    assert len(jobs) == 2, jobs
    assert all(started for started in jobs.values()), jobs  # each worker job ran trials

    study = load(tmp_path)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params)  # no parameter set trained twice
    owners = {t.system_attrs["sgmod:owner"] for t in complete}
    assert len(owners) == 2  # two worker processes, one per job
    started = sorted(n for numbers in jobs.values() for n in numbers)
    assert {t.number for t in complete} <= set(started)  # every complete trial ran in a worker job

    named = re.findall(
        r"^\[sweep\] worker (\d): SLURM job (\S+), its console (\S+) \(errors: \S+_log\.err\)$", output, re.M
    )
    assert [(worker, job) for worker, job, _ in named] == [("0", sorted(jobs)[0]), ("1", sorted(jobs)[1])], output[
        -2000:
    ]
    for _, job, console in named:  # the summary names each job's own console, with its trials in it
        assert f"[sweep] trial {jobs[job][0]} started" in (tmp_path / console).read_text()


def test_a_worker_killed_outright_loses_nothing_and_the_command_ends(tmp_path, slurm):
    """SIGKILL to a worker job's sweeper mid-trial (no handler runs, no result is written): without
    accounting, submitit's sacct watch never saw such a job end and the command waited forever. The
    other worker fails the lost trial and runs it again; the command ends with exactly n_trials."""
    import time

    from helpers.slurm import kill_worker_outright, running_trials

    process = sweep(tmp_path, *slurm, "hydra.sweeper.workers=2", "trainer.max_epochs=8", n_trials=2, wait=False)
    deadline = time.monotonic() + 300
    while not any(running_trials(tmp_path / "sweep").values()):  # a worker job is running a trial
        assert time.monotonic() < deadline and process.poll() is None, "no worker job started a trial"
        time.sleep(0.5)
    job = next(j for j, running in running_trials(tmp_path / "sweep").items() if running)
    kill_worker_outright(job)  # mid-trial: the trial's process starts Lightning and trains 8 epochs
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert f"its job {job} ended without a result (killed, or its node failed)" in output, output[-1500:]
    assert "sacct" not in output  # squeue watches the jobs: no warning at every poll without accounting
    study = load(tmp_path)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2
    lost = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and lost[0].user_attrs["fail_reason"].endswith("was killed")


def test_ctrl_c_cancels_the_worker_jobs_and_the_same_command_resumes(tmp_path, slurm):
    """Ctrl-C on the submitting command used to leave its worker jobs training unattended: now they
    are cancelled (their workers stop and queue their trials again), and the command resumes them."""
    import signal
    import subprocess
    import time

    process = sweep(tmp_path, *slurm, "hydra.sweeper.workers=2", "trainer.max_epochs=8", n_trials=2, wait=False)
    deadline = time.monotonic() + 300
    while sum(map(len, worker_jobs(tmp_path / "sweep").values())) < 2:  # both jobs are training
        assert time.monotonic() < deadline and process.poll() is None, "the worker jobs started no trials"
        time.sleep(1)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert "[sweep] cancelled the worker jobs" in output and "train.py -m hparams_search=" in output, output[-2000:]
    name = next(o.split("=", 1)[1] for o in slurm if o.startswith("hydra.launcher.name="))
    for _ in range(60):  # the jobs end (their workers record their trials) within SLURM's KillWait
        queued = subprocess.run(["squeue", "-h", "--name", name], capture_output=True, text=True).stdout.strip()
        if not queued:
            break
        time.sleep(1)
    assert not queued, queued
    study = load(tmp_path)
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 2  # both queued to run again
    assert all(t.user_attrs.get("interrupted") for t in study.trials if t.state == TrialState.FAIL)
    code, output = sweep(tmp_path, *slurm, "hydra.sweeper.workers=2", "trainer.max_epochs=8", n_trials=2)
    assert code == 0, output[-3000:]
    assert len([t for t in load(tmp_path).trials if t.state == TrialState.COMPLETE]) == 2


def test_worker_jobs_share_a_postgresql_study(tmp_path, slurm, postgres_url):
    """The README's cluster command with PostgreSQL as the storage, reached from the worker jobs."""
    import optuna

    code, output = sweep(tmp_path, *slurm, "hydra.sweeper.workers=2", storage=postgres_url, n_trials=4)
    assert code == 0, output[-3000:]
    assert len(worker_jobs(tmp_path / "sweep")) == 2
    study = optuna.load_study(study_name="sgmod_classifier", storage=postgres_url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and len({tuple(sorted(t.params.items())) for t in complete}) == 4
    assert len({t.system_attrs["sgmod:owner"] for t in complete}) == 2
    optuna.delete_study(study_name="sgmod_classifier", storage=postgres_url)  # the module's server is shared


def test_a_signalled_worker_job_loses_nothing_and_the_others_finish(tmp_path, slurm):
    """scancel --signal=TERM to one worker job mid-trial (what preemption sends): its worker stops the
    trial and queues it again, the other worker runs it; the command ends finished."""
    import subprocess
    import time

    process = sweep(tmp_path, *slurm, "hydra.sweeper.workers=2", "trainer.max_epochs=8", n_trials=2, wait=False)
    deadline = time.monotonic() + 300
    while not any(worker_jobs(tmp_path / "sweep").values()):
        assert time.monotonic() < deadline and process.poll() is None, "no worker job started a trial"
        time.sleep(1)
    job = next(j for j, started in worker_jobs(tmp_path / "sweep").items() if started)
    time.sleep(3)
    subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    worker = job.split("_")[1]
    assert f"[sweep] worker {worker} was stopped by SIGTERM" in output
    study = load(tmp_path)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(stopped) == 1 and stopped[0].user_attrs["interrupted"] is True


def test_a_requeued_worker_job_rejoins_the_study_and_the_command_waits_for_it(tmp_path, slurm):
    """scontrol requeue mid-trial (what preemption with requeue does): the worker stops its trial
    and queues it again; SLURM runs the job again and its worker rejoins the study and runs it.
    The command used to take the first run's result for the job's end and exit as interrupted
    while the job ran again on unattended; now it waits and ends finished."""
    import subprocess
    import time

    from helpers.slurm import release_requeued, running_trials

    process = sweep(tmp_path, *slurm, "trainer.max_epochs=8", n_trials=2, wait=False)  # workers=1: one job
    deadline = time.monotonic() + 300
    while not any(running_trials(tmp_path / "sweep").values()):
        assert time.monotonic() < deadline and process.poll() is None, "the worker job started no trial"
        time.sleep(0.5)
    job = next(iter(running_trials(tmp_path / "sweep")))
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    release_requeued(job)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0 and "interrupted" not in output, output[-3000:]
    study = load(tmp_path)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(stopped) == 1 and stopped[0].user_attrs["interrupted"] is True
    console = (tmp_path / "sweep" / ".submitit" / job / f"{job}_0_log.out").read_text()
    assert "[sweep] trial 0 stopped: the sweep got SIGTERM" in console  # the job's first run
    assert "(trial 0 again" in console and "[sweep] trial 2 finished" in console  # its second, in the same study


def test_a_ddp_trial_inside_a_worker_job_trains(tmp_path, slurm):
    """A trial of 2 DDP ranks (ddp_cpu here, 2 GPUs on a cluster) in a worker job of one task: it
    inherited SLURM's variables, Lightning took it for a SLURM task and refused devices=2 against
    --ntasks-per-node=1. Trials now run without them (processes.trial_environment)."""
    overrides = [o for o in slurm if not o.startswith("hydra.launcher.cpus_per_task=")]
    code, output = sweep(
        tmp_path, *overrides, "hydra.launcher.cpus_per_task=2", "trainer=ddp_cpu", "trainer.devices=2", n_trials=1
    )
    assert code == 0, output[-3000:]
    assert [t.state for t in load(tmp_path).trials] == [TrialState.COMPLETE]
    assert (tmp_path / "sweep" / "trial_0000" / "train_ddp_process_1.log").is_file()  # the second rank ran
