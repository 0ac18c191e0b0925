"""A sweep stopped from outside (a signal, a crash, a dead worker, its own time limit) leaves
nothing RUNNING and loses no point: the stopped trials are FAIL (interrupted) with their parameters
queued again, and the next run trains them. A trial that diverged is a result: never run again.

Stub trials run in-process sweeps in milliseconds; two tests stop a real `python src/train.py -m`
sweep (SIGTERM; SIGKILL and a second run).
"""

import shlex
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import optuna
import pytest
from hydra.utils import instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from helpers.runs import ROOT
from helpers.sweeps import SPACE, dead_owner, journal_study, load, plain_load, run_sweep, stub_script, sweep
from hydra_plugins.sgmod_sweeper.sgmod_sweeper import SAMPLERS
from hydra_plugins.sgmod_sweeper.sgmod_sweeper import _exit_interrupted as exit_interrupted
from sgmod_study.errors import ConfigError
from sgmod_study.run.cli import RESUME_COMMAND_ENV
from sgmod_study.sweeper.liveness import OWNER_ATTR, REQUEUED_ATTR
from sgmod_study.sweeper.samplers import CompleteGridSampler
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.signals import SweepInterrupted

# A trial that runs until it is stopped: SIGTERM makes it exit 143, as a real run does.
SLEEPING_STUB = """
import pathlib, signal, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
folder.mkdir(parents=True, exist_ok=True)
try:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
except OSError:  # CPython: "Signal 15 ignored due to race condition", a SIGTERM while the handler goes in
    sys.exit(143)
(folder / "started").write_text("")
time.sleep(120)
"""


def requeued(study: optuna.Study, number: int) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.user_attrs.get(REQUEUED_ATTR) == number]


# -- row 1: a trial RUNNING with no owner no longer hangs the study --------------------------------


def test_a_trial_left_running_without_an_owner_is_failed_queued_again_and_the_sweep_finishes(tmp_path, capsys):
    study = journal_study(tmp_path / "study.journal")
    lost = study.ask(SPACE)  # a sweep died between asking for it and marking it as its own
    started = time.monotonic()
    study = run_sweep(tmp_path, n_trials=1, heartbeat_interval=1, heartbeat_grace=2)
    assert time.monotonic() - started < 15  # bounded by the grace, not forever
    first, again = study.trials[0], requeued(study, 0)
    assert first.state == TrialState.FAIL and first.user_attrs["interrupted"] is True
    assert first.user_attrs["fail_reason"].startswith("no sweep worker ran it")
    assert [t.state for t in again] == [TrialState.COMPLETE] and again[0].params == lost.params
    assert "waiting for 1 trial of other sweep workers" in capsys.readouterr().out


def test_a_sweep_that_crashes_between_asking_and_launching_leaves_nothing_running(tmp_path, monkeypatch):
    def crash(self, slot, trial):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(Sweep, "_launch", crash)
    with pytest.raises(RuntimeError, match="the disk went away"):
        run_sweep(tmp_path, n_trials=2)
    study = plain_load(tmp_path / "study.journal")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[0].user_attrs["fail_reason"].startswith("the sweep stopped before starting it")
    assert study.trials[1].system_attrs["fixed_params"] == study.trials[0].params  # queued again


def test_a_changed_search_space_is_refused_before_any_trial_is_asked_for(tmp_path):
    run_sweep(tmp_path, n_trials=1)
    with pytest.raises(ConfigError) as refused:
        Sweep(
            SweepSettings(study_name="s", storage=str(tmp_path / "study.journal"), n_trials=2),
            {"x": FloatDistribution(0.01, 1.0, log=True)},
            [],
            tmp_path / "sweep",
            stub_script(tmp_path),
        ).run()
    assert str(refused.value) == (
        "hydra.sweeper.study_name=s searched another space (x: float [0.0, 1.0] there, float [0.01, 1.0], log "
        "here): its trials and these would mix; use another hydra.sweeper.study_name, or the study's search space"
    )
    assert len(plain_load(tmp_path / "study.journal").trials) == 1  # nothing asked for


def test_a_study_recorded_before_its_space_was_stored_is_checked_against_its_trials(tmp_path):
    old = journal_study(tmp_path / "study.journal")
    old.tell(old.ask({"x": FloatDistribution(0.0, 2.0)}), 1.0)  # an older sweep over another range
    with pytest.raises(ConfigError, match=r"\(x: float \[0.0, 2.0\] there, float \[0.0, 1.0\] here\)"):
        run_sweep(tmp_path, n_trials=2)


# -- rows 2, 11, 15: signals ----------------------------------------------------------------------


def test_a_trial_exiting_143_on_its_own_is_interrupted_and_runs_again_from_its_last_ckpt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stub = tmp_path / "once.py"  # SIGTERM'd from outside the first time (exit 143), done the second
    stub.write_text(
        textwrap.dedent(
            f"""
            import json, pathlib, sys
            args = dict(a.split("=", 1) for a in sys.argv[1:])
            folder = pathlib.Path(args["hydra.run.dir"])
            folder.mkdir(parents=True, exist_ok=True)
            marker = pathlib.Path({str(tmp_path / "preempted")!r})
            if not marker.exists():
                marker.write_text("")
                (folder / "checkpoints").mkdir()
                (folder / "checkpoints" / "last.ckpt").write_text("")
                print("interrupted (SIGTERM) at epoch 1")
                sys.exit(143)
            (folder / "resumed_from").write_text(args.get("ckpt_path", ""))
            (folder / "result.json").write_text(json.dumps({{"value": 0.5, "metrics": {{}}}}))
            """
        )
    )
    settings = SweepSettings(study_name="s", storage=str(tmp_path / "study.journal"), n_trials=1, max_failure_rate=0.0)
    study = Sweep(settings, SPACE, [], tmp_path / "sweep", stub).run()  # no failure stop: it is no failure
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"] == "stopped by SIGTERM: interrupted (SIGTERM) at epoch 1"
    assert study.trials[1].params == study.trials[0].params
    # and it went on from the interrupted trial's last.ckpt
    resumed = (tmp_path / "sweep" / "trial_0001" / "resumed_from").read_text()
    assert resumed == str(tmp_path / "sweep" / "trial_0000" / "checkpoints" / "last.ckpt")


SWEEP_SCRIPT = """
import sys
from pathlib import Path
import optuna
from optuna.distributions import FloatDistribution
from sgmod_study.sweeper.scheduler import Sweep
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.signals import SweepInterrupted
folder = Path(sys.argv[1])
settings = SweepSettings(study_name="s", storage=str(folder / "study.journal"), n_trials=4, n_jobs=2,
                         sampler=optuna.samplers.RandomSampler(seed=0))
try:
    Sweep(settings, {"x": FloatDistribution(0.0, 1.0)}, [], folder / "sweep", folder / "sleeping.py").run()
except SweepInterrupted as stop:
    print("stopped by", stop.name)
    sys.exit(7)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_trial_queues_it_again_and_removes_the_heartbeat(tmp_path, signum):
    (tmp_path / "sleeping.py").write_text(SLEEPING_STUB)
    process = subprocess.Popen(
        [sys.executable, "-c", SWEEP_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    _wait_for(lambda: len(list(tmp_path.glob("sweep/trial_*/started"))) == 2, process)
    heartbeats = tmp_path / "study.journal.heartbeats"
    assert len(list(heartbeats.iterdir())) == 1
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 7 and f"stopped by {signal.Signals(signum).name}" in output, output
    study = plain_load(tmp_path / "study.journal")
    states = sorted((t.state.name, t.user_attrs.get("interrupted")) for t in study.trials)
    assert states == [("FAIL", True), ("FAIL", True), ("WAITING", None), ("WAITING", None)]
    assert {t.user_attrs.get(REQUEUED_ATTR) for t in study.trials if t.state == TrialState.WAITING} == {0, 1}
    assert not heartbeats.exists()
    for log in tmp_path.glob("sweep/trial_*/trial.log"):  # each trial's own process ended
        assert "Traceback" not in log.read_text()


def test_a_sweep_a_study_started_names_the_study_command_as_the_one_that_resumes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(RESUME_COMMAND_ENV, "python scripts/study.py run gan grid_g_relu --time-limit 600")
    with pytest.raises(SystemExit) as stopped:
        exit_interrupted(SweepInterrupted(signal.SIGTERM), tmp_path)
    assert stopped.value.code == 143
    assert capsys.readouterr().err == (
        "interrupted (SIGTERM): the running trials were stopped and run again next time; "
        "resume with: python scripts/study.py run gan grid_g_relu --time-limit 600\n"
    )


@pytest.mark.slow
def test_a_real_sweep_stopped_by_sigterm_exits_143_with_one_resume_line(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hparams_search=sgmod_classifier",
        "data=digits",
        "trainer=cpu",
        "trainer.max_epochs=300",
        "trainer.enable_progress_bar=false",
        "model.channels=[4]",
        "model.hidden=8",
        "diagnostics.every_n_steps=null",
        "activation.impl=reference",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"hydra.sweeper.storage={tmp_path / 'study.journal'}",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "sweep" / "trial_0000" / "checkpoints" / "last.ckpt"
    _wait_for(last.exists, process, timeout=240)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted (SIGTERM): the running trials were stopped and run again next time; ")
    assert lines[-1].endswith("resume with: " + shlex.join(["python", "src/train.py", *command[2:]]))
    assert "Traceback" not in err
    study = plain_load(tmp_path / "study.journal", "sgmod_classifier")
    trial, waiting = study.trials[0], study.trials[-1]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "the sweep got SIGTERM"
    assert waiting.state == TrialState.WAITING and waiting.system_attrs["fixed_params"] == trial.params  # queued again
    assert last.is_file() and not (tmp_path / "sweep" / "trial_0000" / "result.json").exists()
    assert not (tmp_path / "study.journal.heartbeats").exists()


def _wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0]
            pytest.fail(f"the sweep ended or took too long (exit {process.returncode}): {output}")
        time.sleep(0.1)


# -- a queued trial takes no point of a quasi-random sequence --------------------------------------


def test_a_trial_queued_again_takes_no_sobol_point():
    """Why queueing is enough: Optuna gives a queued trial its parameters without drawing a point
    for it, so the sequence goes on where it was (this would fail if Optuna changed that)."""

    def points(queue: bool) -> list[float]:
        with pytest.warns(optuna.exceptions.ExperimentalWarning):
            study = optuna.create_study(sampler=optuna.samplers.QMCSampler(seed=0, scramble=True))
        for number in range(6):
            if queue and number == 3:  # an interrupted trial run again, mid-sweep
                study.enqueue_trial({"x": 0.25})
            study.tell(study.ask(SPACE), 0.0)
        return [t.params["x"] for t in study.trials if t.params["x"] != 0.25][:5]

    assert points(queue=True) == points(queue=False)


# -- no point is lost: an interrupted trial is trained at the next run ------------------------------


def first_points(distributions, baseline: dict, n: int) -> list[dict]:
    """The first ``n`` trials' parameters of a sweep that nothing stopped: the enqueued baseline, then
    the Sobol points of the sampler hydra/sweeper/sampler=qmc builds (scrambled with a fixed seed,
    0 as sweep() sets it: the same points in every process)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=instantiate({**SAMPLERS["qmc"], "seed": 0}))
    study.enqueue_trial(baseline)
    for _ in range(n):
        study.tell(study.ask(distributions), 0.0)
    return [t.params for t in study.trials]


@pytest.mark.slow
def test_a_sobol_sweep_killed_mid_trial_trains_the_killed_point_at_its_next_run(tmp_path):
    # the baseline (trial 0), then Sobol point 0 (trial 1), killed while it runs
    args = ("hydra/sweeper/sampler=qmc", "activation=relu")
    process = sweep(tmp_path, *args, n_trials=2, wait=False, search="hparams_search=baseline_classifier")
    _wait_for((tmp_path / "sweep" / "trial_0001").exists, process, timeout=240)  # its process started
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = load(tmp_path, "baseline_classifier_relu").trials[1]
    assert killed.state == TrialState.RUNNING

    code, output = sweep(tmp_path, *args, n_trials=2, search="hparams_search=baseline_classifier")
    assert code == 0, output[-3000:]
    study = load(tmp_path, "baseline_classifier_relu")
    stopped, *after = study.trials[1:]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"] is True
    assert [(t.state, t.user_attrs.get(REQUEUED_ATTR), t.params) for t in after] == [
        (TrialState.COMPLETE, 1, killed.params)  # the killed point, trained; nothing else ran
    ]
    complete = [t.params for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete == first_points(killed.distributions, study.trials[0].params, n=2)  # Sobol point 0 kept


# A trial that hangs the first time it runs (until the sweep stops it) and completes the next time.
HANGS_ONCE = """
import json, pathlib, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
marker = folder.parent.parent / "hung"
if not marker.exists():
    marker.write_text("")
    time.sleep(600)
(folder / "result.json").write_text(json.dumps({"value": float(args["x"])}))
"""


def test_a_trial_stopped_at_the_time_limit_is_trained_at_the_next_run(tmp_path):
    stub = tmp_path / "stub.py"
    stub.write_text(HANGS_ONCE)

    def run(time_limit):
        settings = SweepSettings(
            study_name="s", storage=str(tmp_path / "study.journal"), n_trials=1, time_limit=time_limit
        )
        return Sweep(settings, SPACE, [], tmp_path / "sweep", stub).run()

    stopped = run(time_limit=1).trials[0]
    assert stopped.user_attrs["fail_reason"] == "the sweep's time limit of 1 s was reached"
    study = run(time_limit=None)
    assert [(t.state, t.user_attrs.get(REQUEUED_ATTR), t.params) for t in study.trials] == [
        (TrialState.FAIL, None, stopped.params),
        (TrialState.COMPLETE, 0, stopped.params),
    ]


@pytest.mark.parametrize("owner", ["killed here", "silent elsewhere"])
def test_the_trial_of_a_dead_worker_is_queued_again_and_trained(tmp_path, owner):
    """Its worker's pid is gone on this host, or its heartbeat file (another host) stays silent;
    a RUNNING trial without any owner: test_a_trial_left_running_without_an_owner_..."""
    study = journal_study(tmp_path / "study.journal")
    lost = study.ask(SPACE)
    study._storage.set_trial_system_attr(
        lost._trial_id, OWNER_ATTR, dead_owner() if owner == "killed here" else "elsewhere:1"
    )
    study = run_sweep(tmp_path, n_trials=1, heartbeat_interval=1, heartbeat_grace=2)
    assert study.trials[0].state == TrialState.FAIL and study.trials[0].user_attrs["interrupted"] is True
    assert [(t.state, t.user_attrs.get(REQUEUED_ATTR), t.params) for t in study.trials[1:]] == [
        (TrialState.COMPLETE, 0, lost.params)
    ]


# -- a result is never run again: a diverged, a badly configured, a pruned trial --------------------

# The trial's outcome by its x: 0.2 diverges (exit 3), 0.3 has a bad configuration (2), 0.4 is pruned (4).
OUTCOME_STUB = """
import json, pathlib, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
folder = pathlib.Path(args["hydra.run.dir"])
folder.mkdir(parents=True, exist_ok=True)
(folder / "result.json").write_text(json.dumps({"value": float(args["x"])}))
sys.exit({"0.2": 3, "0.3": 2, "0.4": 4}.get(args["x"], 0))
"""


def _outcome_sweep(tmp_path, n_trials: int, space=SPACE, sampler=None, enqueue=()) -> optuna.Study:
    stub = tmp_path / "stub.py"
    stub.write_text(OUTCOME_STUB)
    settings = SweepSettings(
        study_name="s",
        storage=str(tmp_path / "study.journal"),
        n_trials=n_trials,
        max_failure_rate=1.0,
        enqueue_trials=list(enqueue),
        sampler=sampler or optuna.samplers.RandomSampler(seed=0),
    )
    return Sweep(settings, space, [], tmp_path / "sweep", stub).run()


def test_a_diverged_badly_configured_or_pruned_trial_is_not_queued_again(tmp_path):
    enqueue = [{"x": 0.2}, {"x": 0.3}, {"x": 0.4}]
    study = _outcome_sweep(tmp_path, n_trials=3, enqueue=enqueue)  # the diverged and the pruned count: 1 more
    reasons = [(t.state, t.user_attrs.get("fail_reason", "").split(":")[0]) for t in study.trials[:3]]
    assert reasons == [
        (TrialState.FAIL, "training diverged"),
        (TrialState.FAIL, "bad configuration"),
        (TrialState.PRUNED, ""),
    ]
    assert [t.state for t in study.trials[3:]] == [TrialState.COMPLETE]  # n_trials finished: nothing waits
    assert not any(REQUEUED_ATTR in t.user_attrs for t in study.trials)
    # the next run trains neither the diverged nor the pruned point again; the badly configured
    # baseline it does, as any failed baseline (its cause may be fixed meanwhile:
    # test_the_baseline_is_enqueued_again_only_when_its_trials_all_failed)
    study = _outcome_sweep(tmp_path, n_trials=4, enqueue=enqueue)
    xs = [t.params["x"] for t in study.trials]
    assert (xs.count(0.2), xs.count(0.3), xs.count(0.4)) == (1, 2, 1)
    assert not any(REQUEUED_ATTR in t.user_attrs for t in study.trials)


def test_a_grid_cell_that_diverged_is_a_result_and_not_run_again(tmp_path):
    cells = [0.1, 0.2, 0.5]

    def grid_sweep():
        grid = CompleteGridSampler({"x": cells}, seed=0)
        return _outcome_sweep(tmp_path, n_trials=3, space={"x": CategoricalDistribution(cells)}, sampler=grid)

    grid_sweep()
    study = grid_sweep()  # and run again: the grid is covered
    assert sorted((t.params["x"], t.state) for t in study.trials) == [
        (0.1, TrialState.COMPLETE),
        (0.2, TrialState.FAIL),
        (0.5, TrialState.COMPLETE),
    ]
