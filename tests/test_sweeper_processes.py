"""A trial's whole process tree ends with it: on timeout, at its exit, and when the sweeper dies."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from helpers.processes import running
from sgmod_study.sweeper.scheduler import Sweep, starts_in_time
from sgmod_study.sweeper.settings import SweepSettings

# A trial that starts two children (like DDP ranks; they ignore SIGTERM, so only SIGKILL ends
# them; it lists their pids once they do); trial 0 then hangs, the others exit and leave their children running.
TREE_STUB = """
import json, os, pathlib, subprocess, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
child = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "pathlib.Path(sys.argv[1]).touch(); time.sleep(600)")
ready = [folder / f"child_{i}.ready" for i in range(2)]
children = [subprocess.Popen([sys.executable, "-c", child, str(path)]) for path in ready]
while not all(path.exists() for path in ready):  # both ignore SIGTERM from here on
    time.sleep(0.01)
(folder / "pids.tmp").write_text(json.dumps([os.getpid()] + [c.pid for c in children]))
os.replace(folder / "pids.tmp", folder / "pids.json")
if folder.name == "trial_0000" or args.get("hang"):
    time.sleep(600)
(folder / "result.json").write_text(json.dumps({"value": 0.5}))
"""


def wait_for(condition, timeout: float, every: float = 0.1) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        time.sleep(every)
    return time.monotonic() - start


def pids(tmp_path: Path, trial: int) -> list[int]:
    return json.loads((tmp_path / "sweep" / f"trial_{trial:04d}" / "pids.json").read_text())


def test_a_hanging_trial_is_killed_with_its_whole_tree_and_the_sweep_goes_on(tmp_path):
    stub = tmp_path / "stub.py"
    stub.write_text(TREE_STUB)
    settings = SweepSettings(
        study_name="s",
        storage=str(tmp_path / "study.journal"),
        n_trials=2,
        trial_timeout=3,
        max_failure_rate=0.5,  # of 2 trials to run: the timeout may fail one
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    started = time.monotonic()
    study = Sweep(settings, {"x": FloatDistribution(0, 1)}, [], tmp_path / "sweep", stub).run()
    assert time.monotonic() - started < 60
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"] == "timed out after 3 s"
    for trial in range(3):  # the hanging trial's tree, and the children the finished trials left behind
        left = [pid for pid in pids(tmp_path, trial) if running(pid)]
        assert left == [], f"trial {trial}: processes {left} still run"


WORKER = """
import sys
from pathlib import Path
import optuna
from optuna.distributions import FloatDistribution
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
folder, stub = Path(sys.argv[1]), Path(sys.argv[2])
settings = SweepSettings(study_name="s", storage=str(folder / "study.journal"), n_trials=1)
Sweep(settings, {"x": FloatDistribution(0, 1)}, ["hang=1"], folder / "sweep", stub).run()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_sweeper_killed_with_sigkill_takes_its_trials_whole_tree_with_it(tmp_path):
    stub = tmp_path / "stub.py"
    stub.write_text(TREE_STUB)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU: the sweeper need not import torch to know
    sweeper = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(stub)], env=env)
    pids_file = tmp_path / "sweep" / "trial_0000" / "pids.json"
    wait_for(pids_file.exists, timeout=120)
    tree = pids(tmp_path, 0)
    assert all(running(pid) for pid in tree)
    sweeper.send_signal(signal.SIGKILL)
    sweeper.wait()
    gone_after = wait_for(lambda: not any(running(pid) for pid in tree), timeout=30)
    print(f"trial tree of {len(tree)} processes gone {gone_after:.1f} s after the sweeper's SIGKILL")


# The state a sweeper killed with SIGKILL can pass through: the thread that started the guard
# has exited while another thread of the sweeper (its heartbeat) still runs. The guard then gets
# its parent-death signal while its parent's pid is still the sweeper's.
THREAD_PARENT = """
import os, subprocess, sys, threading, time
guard, stub, folder = sys.argv[1:4]
def start():
    subprocess.Popen([sys.executable, guard, str(os.getpid()), sys.executable, stub,
                      f"hydra.run.dir={folder}", "hang=1"], start_new_session=True)
    while not os.path.exists(os.path.join(folder, "pids.json")):
        time.sleep(0.05)
starter = threading.Thread(target=start)
starter.start()
starter.join()
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_parent_death_signal_while_the_sweepers_pid_lives_on_still_ends_the_whole_tree(tmp_path):
    from sgmod_study.sweeper.processes import GUARD

    stub = tmp_path / "stub.py"
    stub.write_text(TREE_STUB)
    folder = tmp_path / "trial"
    folder.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", THREAD_PARENT, str(GUARD), str(stub), str(folder)])
    try:
        wait_for((folder / "pids.json").exists, timeout=60)
        tree = json.loads((folder / "pids.json").read_text())
        gone_after = wait_for(lambda: not any(running(pid) for pid in tree), timeout=30)
        print(f"trial tree of {len(tree)} processes gone {gone_after:.1f} s after its guard's parent thread ended")
    finally:
        parent.kill()
        parent.wait()


def test_a_trial_starts_only_if_it_is_expected_to_end_within_the_time_limit():
    assert starts_in_time(elapsed=100.0, durations=[], limit=None)
    assert starts_in_time(elapsed=9.0, durations=[], limit=10.0)  # nothing finished yet: no estimate
    assert starts_in_time(elapsed=2.5, durations=[5.0, 6.0, 100.0], limit=10.0)  # 1.25 x median 6: ends at 10
    assert not starts_in_time(elapsed=2.6, durations=[5.0, 6.0, 100.0], limit=10.0)


def test_a_resumed_sweep_estimates_its_trials_from_the_ones_its_study_finished_before():
    import datetime

    import optuna

    from sgmod_study.sweeper.scheduler import RECORDED_TRIALS, recorded_durations

    study = optuna.create_study()
    start = datetime.datetime(2026, 12, 5, 20, 0)
    for i in range(RECORDED_TRIALS + 2):  # the oldest two took 1000 s, the latest ten 60 + i s
        took = 1000.0 if i < 2 else 60.0 + i
        trial = optuna.trial.create_trial(value=0.5)
        trial.datetime_start = start + datetime.timedelta(hours=i)
        trial.datetime_complete = trial.datetime_start + datetime.timedelta(seconds=took)
        study.add_trial(trial)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # no duration: left out
    durations = recorded_durations(study)
    assert durations == [60.0 + i for i in range(2, RECORDED_TRIALS + 2)]
    assert not starts_in_time(elapsed=1000.0, durations=durations, limit=1060.0)  # 1.25 x 66.5 s does not fit
    assert recorded_durations(optuna.create_study()) == []


# A trial that sleeps for its sleep=<seconds> (or hangs, with hang=1), then writes its value.
SLEEP_STUB = """
import json, pathlib, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
time.sleep(600 if args.get("hang") else float(args["sleep"]))
pathlib.Path(args["hydra.run.dir"], "result.json").write_text(json.dumps({"value": 0.5}))
"""


def _timed_sweep(tmp_path, fixed, time_limit, n_trials=10):
    stub = tmp_path / "stub.py"
    stub.write_text(SLEEP_STUB)
    settings = SweepSettings(
        study_name="s",
        storage=str(tmp_path / "study.journal"),
        n_trials=n_trials,
        time_limit=time_limit,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    started = time.monotonic()
    study = Sweep(settings, {"x": FloatDistribution(0, 1)}, fixed, tmp_path / "sweep", stub).run()
    return study, time.monotonic() - started


def test_the_time_limit_starts_no_trial_that_would_not_end_in_time(tmp_path, capsys):
    # 3 s trials and 8 s: the second starts at about 3 s (ends at 6), a third would end at 9
    study, took = _timed_sweep(tmp_path, ["sleep=3"], time_limit=8)
    states = [t.state for t in study.trials]
    assert states and set(states) == {TrialState.COMPLETE}, states  # none stopped half-way
    assert 1 <= len(states) <= 2 and took < 8
    assert "no new trial starts (0 still running; the same command resumes the study)" in capsys.readouterr().out


def test_at_the_time_limit_the_running_trial_is_stopped_and_recorded_as_interrupted(tmp_path):
    study, took = _timed_sweep(tmp_path, ["hang=1", "sleep=0"], time_limit=3)
    assert 3 <= took < 30
    trial, again = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["interrupted"] is True
    assert trial.user_attrs["fail_reason"] == "the sweep's time limit of 3 s was reached"
    assert again.state == TrialState.WAITING and again.system_attrs["fixed_params"] == trial.params  # runs next


def test_a_trial_that_stops_on_sigterm_reports_its_own_exit_code_and_its_tree_still_ends(tmp_path):
    """The guard passes a stopped trial's 143 on (the sweeper records an interruption, not a kill);
    the child that ignores SIGTERM is still killed with the group."""
    from sgmod_study.sweeper.processes import TrialProcess

    script = (
        "import signal, subprocess, sys, time, pathlib\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"pathlib.Path({str(tmp_path / 'child')!r}).write_text(str(c.pid))\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        "time.sleep(600)\n"
    )
    process = TrialProcess([sys.executable, "-c", script], dict(os.environ), tmp_path / "trial.log")
    wait_for((tmp_path / "child").exists, 30)
    child = int((tmp_path / "child").read_text())
    assert process.stop() == 143
    assert not running(child)


def test_a_trial_runs_without_slurms_variables():
    from sgmod_study.sweeper.processes import trial_environment

    worker = {"PATH": "/bin", "SLURM_NTASKS": "1", "SLURM_JOB_ID": "7", "SLURMD_NODENAME": "vm", "MY_SLURM": "x"}
    assert trial_environment(worker) == {"PATH": "/bin", "MY_SLURM": "x"}
