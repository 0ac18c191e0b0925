"""Workers notice, while they run, the trials of a worker that is gone, fail them and carry on:
with the journal (heartbeat files) and PostgreSQL (Optuna's heartbeat), on this host and another."""

import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from helpers.processes import running
from sgmod_study.sweeper.liveness import OWNER_ATTR
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.storage import open_storage

INTERVAL, GRACE = 1, 3  # heartbeat timing of these tests (defaults: 10 s and 60 s)
# A trial of a few seconds: sleeps `sleep=` seconds, its value is x.
SLOW_STUB = """
import json, os, pathlib, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
(folder / "pid").write_text(str(os.getpid()))
time.sleep(float(args.get("sleep", 0)))
(folder / "result.json").write_text(json.dumps({"value": float(args["x"])}))
"""
SPACE = {"x": FloatDistribution(0.0, 1.0)}


def settings(storage: str, name: str, n_trials: int) -> SweepSettings:
    return SweepSettings(
        study_name=name,
        storage=storage,
        n_trials=n_trials,
        heartbeat_interval=INTERVAL,
        heartbeat_grace=GRACE,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


def load(storage: str, name: str) -> optuna.Study:
    opened, _ = open_storage(storage, name, Path("unused"))
    return optuna.load_study(study_name=name, storage=opened)


def journal(tmp_path: Path) -> str:
    return str(tmp_path / "study.journal")


# -- a worker on another host: its trial is waited for while it beats, failed once it is silent --


def remote_trial(storage: str, name: str, heartbeat) -> int:
    """A RUNNING trial of a worker on another machine, as that worker leaves it in the study."""
    opened, _ = open_storage(storage, name, Path("unused"), heartbeat=(INTERVAL, GRACE))
    study = optuna.create_study(study_name=name, storage=opened, load_if_exists=True)
    trial = study.ask(SPACE)
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, "elsewhere:1")
    heartbeat(opened, trial._trial_id)
    return trial.number


def beat_file(folder: Path, seconds: float, written: list[float]) -> threading.Thread:
    """The other machine's worker: its heartbeat file, rewritten every INTERVAL for ``seconds``."""

    def beat():
        folder.mkdir(exist_ok=True)
        for count in range(int(seconds / INTERVAL)):
            (folder / "elsewhere:1").write_text(f"{count}\n")
            written.append(time.time())
            time.sleep(INTERVAL)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


def check_remote_orphan(study: optuna.Study, number: int, silent_since: float, n_trials: int) -> float:
    trials = study.get_trials()
    orphan = trials[number]
    assert orphan.state == TrialState.FAIL and orphan.user_attrs["interrupted"]
    assert orphan.user_attrs["fail_reason"] == f"its sweep worker elsewhere:1 is gone (no heartbeat for {GRACE} s)"
    assert [t.state for t in trials].count(TrialState.COMPLETE) == n_trials
    assert [t.number for t in trials] == list(range(len(trials)))
    failed_after = orphan.datetime_complete.timestamp() - silent_since
    assert GRACE - 1 <= failed_after <= GRACE + INTERVAL + 3, failed_after  # not while it beat; soon after
    return failed_after


def test_a_silent_worker_on_another_host_loses_its_trial_after_the_grace_period_journal(tmp_path):
    number = remote_trial(journal(tmp_path), "s", lambda storage, trial_id: None)
    written = []
    beating = beat_file(Path(f"{journal(tmp_path)}.heartbeats"), seconds=8, written=written)
    stub = tmp_path / "stub.py"
    stub.write_text(SLOW_STUB)
    study = Sweep(settings(journal(tmp_path), "s", 2), SPACE, [], tmp_path / "sweep", stub).run()
    beating.join()
    print(f"journal: failed {check_remote_orphan(study, number, written[-1], 2):.1f} s after its last heartbeat")
    assert not (Path(f"{journal(tmp_path)}.heartbeats") / "elsewhere:1").exists()  # a gone worker's file goes


@pytest.mark.slow
def test_a_silent_worker_on_another_host_loses_its_trial_after_the_grace_period_postgresql(tmp_path, postgres_url):
    last_beat = []

    def beat(storage, trial_id):  # Optuna's heartbeat rows, for 4 s
        def run():
            for _ in range(4):
                storage.record_heartbeat(trial_id)
                last_beat.append(time.time())
                time.sleep(INTERVAL)

        threading.Thread(target=run, daemon=True).start()

    number = remote_trial(postgres_url, "remote", beat)
    stub = tmp_path / "stub.py"
    stub.write_text(SLOW_STUB)
    study = Sweep(settings(postgres_url, "remote", 2), SPACE, [], tmp_path / "sweep", stub).run()
    print(f"postgresql: failed {check_remote_orphan(study, number, last_beat[-1], 2):.1f} s after its last heartbeat")


# -- two real workers, one killed with SIGKILL in the middle of a trial ---------------------------

WORKER = """
import socket, sys
from pathlib import Path
host, storage, name, sweep_dir, stub = sys.argv[1:6]
if host != "-":
    socket.gethostname = lambda: host  # this worker plays a worker on another machine
import optuna
from optuna.distributions import FloatDistribution
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
settings = SweepSettings(study_name=name, storage=storage, n_trials=4, heartbeat_interval=1, heartbeat_grace=3)
Sweep(settings, {"x": FloatDistribution(0, 1)}, ["sleep=6"], Path(sweep_dir), Path(stub)).run()
"""


def owners(storage: str, name: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    try:
        study = load(storage, name)
    except KeyError:  # no study yet
        return {}
    running = {}
    for t in study.get_trials(states=(TrialState.RUNNING,)):
        running.setdefault(t.system_attrs.get(OWNER_ATTR), []).append(t)
    return running


@pytest.mark.slow  # two sweep worker processes of 6-s trials, one killed: about 25 s each (and a PostgreSQL server)
@pytest.mark.parametrize(
    ("backend", "host"),
    [("journal", "-"), ("journal", "node-a"), ("postgresql", "node-a")],
    ids=["journal-same-host", "journal-other-host", "postgresql-other-host"],
)
def test_two_workers_one_killed_mid_trial_the_other_fails_its_orphan_and_finishes(tmp_path, request, backend, host):
    storage = journal(tmp_path) if backend == "journal" else request.getfixturevalue("postgres_url")
    name = f"kill_{backend}_{host}".replace("-", "same")
    stub = tmp_path / "stub.py"
    stub.write_text(SLOW_STUB)

    def start(worker_host: str, folder: str) -> subprocess.Popen:
        command = [sys.executable, "-c", WORKER, worker_host, storage, name, str(tmp_path / folder), str(stub)]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU: the worker need not import torch to know
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    victim, survivor = start(host, "a"), start("-", "b")
    victim_owner = f"{host if host != '-' else socket.gethostname()}:{victim.pid}"
    deadline = time.monotonic() + 240
    while True:  # until both run a trial
        assert time.monotonic() < deadline, "the workers did not both start a trial"
        by_owner = owners(storage, name)
        if victim_owner in by_owner and len(by_owner) == 2:
            break
        time.sleep(0.2)
    orphan = by_owner[victim_owner][0]
    pid_file = tmp_path / "a" / f"trial_{orphan.number:04d}" / "pid"
    while not pid_file.exists():
        time.sleep(0.05)
    trial_pid = int(pid_file.read_text())
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait()
    output = survivor.communicate(timeout=240)[0].decode()
    assert survivor.returncode == 0, output[-3000:]

    trials = load(storage, name).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4  # exactly n_trials
    assert [t.number for t in trials] == list(range(len(trials)))  # no duplicate numbers
    failed = trials[orphan.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["interrupted"], output[-3000:]
    assert victim_owner in failed.user_attrs["fail_reason"]
    assert all(t.user_attrs.get("interrupted") for t in trials if t.state == TrialState.FAIL)
    assert not running(trial_pid)  # the killed worker's trial went with it (guard.py)
    after = failed.datetime_complete.replace(tzinfo=None) - datetime.datetime.fromtimestamp(killed_at)
    bound = INTERVAL + 3 if host == "-" else GRACE + INTERVAL + 3  # this host: its pid; another: the heartbeat
    assert after.total_seconds() <= bound, (after, failed.user_attrs["fail_reason"])
    print(f"{backend}, {host}: orphan failed {after.total_seconds():.1f} s after the SIGKILL: {failed.user_attrs}")
