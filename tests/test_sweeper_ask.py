"""Sweep workers that ask for trials, or enqueue their baselines, at the same moment do it one at a
time (storage.study_lock): different points, each baseline once."""

import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.storage import open_storage

# One worker: opens the shared study, waits for the start file, asks ASKS trials as fast as it can
# (each held RUNNING, as a worker's running trial is), then completes them.
WORKER = """
import pathlib, sys, time
import optuna
from optuna.distributions import FloatDistribution
from sgmod_study.sweeper.samplers import CompleteGridSampler
from sgmod_study.sweeper.storage import open_storage, open_study, study_lock
storage_arg, kind, start, asks = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), int(sys.argv[4])
optuna.logging.set_verbosity(optuna.logging.WARNING)
space = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
if kind == "qmc":
    sampler = optuna.samplers.QMCSampler(qmc_type="sobol", seed=0, warn_independent_sampling=False)
else:
    sampler = CompleteGridSampler({"x": [i / 10 for i in range(6)], "y": [i / 10 for i in range(6)]}, seed=0)
storage, _ = open_storage(storage_arg, "s", pathlib.Path("."))
study = open_study(storage, "s", sampler, "minimize", None)
while not start.exists():
    time.sleep(0.001)
trials = []
for _ in range(asks):
    with study_lock(storage, "s"):
        trials.append(study.ask(space))
for trial in trials:
    study.tell(trial, 0.0)
"""

WORKERS, ASKS = 3, 8


@pytest.fixture(params=["journal", "postgresql"])
def storage(request, tmp_path):
    if request.param == "journal":
        return str(tmp_path / "study.journal")
    return request.getfixturevalue("postgres_url")


# QMC: each worker read the next Sobol index, then wrote it (both drew index k), and the first
# trials, before any was RUNNING, came from each worker's alike-seeded independent sampler. Without
# the lock 2 of 2 runs here drew points twice, with the journal and with PostgreSQL. (The grid's
# cells were distinct without it too: CompleteGridSampler picks among the cells not running.)
@pytest.mark.parametrize("kind", ["qmc"])
def test_workers_asking_at_the_same_moment_draw_distinct_points(tmp_path, storage, kind):
    start = tmp_path / "start"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, storage, kind, str(start), str(ASKS)]) for _ in range(WORKERS)
    ]
    time.sleep(3)  # all of them have opened the study and wait
    start.touch()
    assert [w.wait(timeout=120) for w in workers] == [0] * WORKERS
    study = optuna.load_study(study_name="s", storage=open_storage(storage, "s", tmp_path)[0])
    points = [(t.params["x"], t.params["y"]) for t in study.trials]
    try:
        assert len(points) == WORKERS * ASKS
        assert len(set(points)) == len(points), f"{len(points) - len(set(points))} points drawn twice"
    finally:
        if "://" in storage:  # the PostgreSQL server is shared by the module's tests
            optuna.delete_study(study_name="s", storage=storage)


def test_two_workers_enqueueing_at_the_same_moment_enqueue_each_baseline_once(tmp_path):
    """Both read the study before either enqueues (a barrier after the read): without the lock each
    found no baseline queued and both queued it (the SLURM PostgreSQL test ran it twice in the
    whole suite). With it the second waits for the first, then finds it queued."""
    barrier = threading.Barrier(2, timeout=2)
    settings = SweepSettings(
        study_name="s", storage=str(tmp_path / "study.journal"), n_trials=4, enqueue_trials=[{"x": 0.3}]
    )
    sweeps = [
        Sweep(settings, {"x": FloatDistribution(0, 1)}, [], tmp_path / "sweep", tmp_path / "stub.py") for _ in range(2)
    ]
    for sweep in sweeps:
        sweep.study.get_trials = _then_wait(sweep.study.get_trials, barrier)
    threads = [threading.Thread(target=sweep._enqueue_baselines) for sweep in sweeps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    queued = [t for t in sweeps[0].study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in queued] == [{"x": 0.3}]


def _then_wait(read, barrier):
    def read_then_wait(*args, **kwargs):
        trials = read(*args, **kwargs)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the other one could not get there: it waits for the lock
            pass
        return trials

    return read_then_wait
