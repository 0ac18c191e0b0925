"""The sweeper under faults: nothing lost, nothing silent (bad settings, grammar and storage:
test_sweeper_settings.py).

Most tests run the scheduler in-process against a stub trial script (no torch, milliseconds per
trial); a few run `python src/train.py -m` to see the exit code and the one line a user gets.
"""

import json
import shlex
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers.sweeps import SPACE, dead_owner, journal_study, plain_load, run_sweep, stub_script, train_multirun
from sgmod_study.errors import EXIT_DIVERGED, ConfigError
from sgmod_study.sweeper.fixed_setup import fixed_setup
from sgmod_study.sweeper.liveness import OWNER_ATTR
from sgmod_study.sweeper.scheduler import Sweep, SweepFailed
from sgmod_study.sweeper.settings import SweepSettings
from sgmod_study.sweeper.storage import diverged, open_storage

BASELINE = {"x": 0.25}


# -- 1. a torn journal tail ----------------------------------------------------------------------


def _study_with_a_torn_tail(path: Path) -> list:
    study = journal_study(path)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    kept = [(t.number, t.state, t.values, t.params) for t in study.trials]
    study.enqueue_trial({"x": 0.5})  # one more record, then the crash cuts it in the middle
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last + (len(data) - last) // 2])
    return kept


def test_plain_optuna_appends_onto_a_torn_tail_and_the_study_becomes_unreadable(tmp_path):
    """Why the repair exists: without it the next run writes after the cut bytes."""
    path = tmp_path / "study.journal"
    _study_with_a_torn_tail(path)

    def objective(trial):
        return trial.suggest_float("x", 0.0, 1.0)

    with pytest.raises(AttributeError):  # its new trial's record is glued to the cut bytes, and lost
        plain_load(path).optimize(objective, n_trials=1)
    with pytest.raises(json.JSONDecodeError):  # the run after writes a line below the glued one...
        plain_load(path).optimize(objective, n_trials=1)
    with pytest.raises(json.JSONDecodeError):  # ...and every later run fails at once
        plain_load(path)


def test_a_torn_journal_tail_is_moved_aside_and_every_complete_trial_kept(tmp_path, capsys):
    path = tmp_path / "study.journal"
    kept = _study_with_a_torn_tail(path)
    cut = path.read_bytes()
    tail = cut[cut.rfind(b"\n") + 1 :]

    storage, _ = open_storage(str(path), "s", tmp_path)

    side = list(tmp_path.glob("study.journal.torn-*"))
    assert len(side) == 1 and side[0].read_bytes() == tail
    assert path.read_bytes() == cut[: len(cut) - len(tail)]  # truncated to the last complete line
    printed = capsys.readouterr().out.strip().splitlines()
    complete = cut.count(b"\n")
    assert printed == [
        f"[sweep] {path}: its last line was cut ({len(tail)} bytes, a crash while writing): "
        f"moved to {side[0]}; the {complete} complete records are kept"
    ]
    study = optuna.load_study(study_name="s", storage=storage)
    assert [(t.number, t.state, t.values, t.params) for t in study.trials] == kept
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    again = plain_load(path)
    assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 4
    assert [(t.number, t.state, t.values, t.params) for t in again.trials[:3]] == kept


def test_a_tail_cut_just_before_its_newline_keeps_its_record(tmp_path, capsys):
    path = tmp_path / "study.journal"
    journal_study(path).enqueue_trial({"x": 0.5})
    path.write_bytes(path.read_bytes()[:-1])
    study = journal_study(path)
    assert [t.state for t in study.trials] == [TrialState.WAITING]  # the enqueued trial is still there
    assert path.read_bytes().endswith(b"\n") and not list(tmp_path.glob("*.torn-*"))
    assert capsys.readouterr().out == ""


def test_a_corrupted_line_inside_the_journal_is_one_error_naming_file_and_line(tmp_path):
    path = tmp_path / "study.journal"
    journal_study(path).optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:10]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ConfigError) as err:
        journal_study(path)
    assert str(err.value) == (
        f"hydra.sweeper.storage={path}: line 3 of {len(lines) - 1} is not a journal record (the file is corrupted "
        "there, and Optuna cannot read the study past it); remove that line by hand (what it recorded is lost) "
        "or use another study_name"
    )
    assert "\n" not in str(err.value)


# -- 2. the enqueued baseline after a killed sweep -----------------------------------------------


def _baseline_trial(study: optuna.Study, outcome: str) -> None:
    study.enqueue_trial(BASELINE)
    if outcome == "waiting":
        return
    trial = study.ask(SPACE)
    assert trial.params == BASELINE
    if outcome == "killed":  # RUNNING, its sweeper process gone
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, dead_owner())
    elif outcome == "failed":
        trial.set_user_attr("fail_reason", "bad configuration")
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, 0.25)


@pytest.mark.parametrize(("outcome", "baseline_runs"), [("killed", 2), ("failed", 2), ("complete", 1), ("waiting", 1)])
def test_the_baseline_is_enqueued_again_only_when_its_trials_all_failed(tmp_path, outcome, baseline_runs):
    _baseline_trial(journal_study(tmp_path / "study.journal"), outcome)
    study = run_sweep(tmp_path, enqueue_trials=[BASELINE], max_failure_rate=0.0)
    with_baseline = [t for t in study.trials if t.params == BASELINE]
    assert len(with_baseline) == baseline_runs
    assert with_baseline[-1].state == TrialState.COMPLETE  # the baseline ran (or had run)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


# -- 3. failures count per run of the sweeper ----------------------------------------------------


def test_a_failure_of_an_earlier_run_does_not_stop_the_next(tmp_path):
    old = journal_study(tmp_path / "study.journal")
    trial = old.ask(SPACE)
    trial.set_user_attr("fail_reason", "bad configuration")
    old.tell(trial, state=TrialState.FAIL)

    study = run_sweep(tmp_path, n_trials=3, max_failure_rate=0.0)
    assert [t.state for t in study.trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3


def test_a_failure_in_this_run_stops_it_and_says_how_to_go_on(tmp_path):
    with pytest.raises(SweepFailed) as err:
        run_sweep(tmp_path, fixed=["exit=5"], n_trials=3, max_failure_rate=0.0)
    folder = tmp_path / "sweep" / "trial_0000"
    assert str(err.value).splitlines() == [
        "1 trials failed in this run, more than max_failure_rate=0.0 x 3 trials to run allows:",
        f"  trial 0: exited with code 5: error: stub trial exits with 5 ({folder})",
        "to go on: fix the cause and run the same command again (the study resumes where it stopped), "
        "or raise hydra.sweeper.max_failure_rate",
    ]
    # the rerun with the cause fixed resumes the study and completes it
    study = run_sweep(tmp_path, n_trials=3, max_failure_rate=0.0)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 3


def test_diverged_trials_are_results_and_do_not_count_as_failures(tmp_path):
    # exit code 3: the trial's training diverged (a GAN's discriminator collapsed, a NaN loss)
    study = run_sweep(tmp_path, fixed=[f"exit={EXIT_DIVERGED}"], n_trials=3, max_failure_rate=0.0)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # recorded, every one, none stopped
    assert all(diverged(t) for t in study.trials)
    # a crash still stops the sweep at the first
    with pytest.raises(SweepFailed, match="^1 trials failed in this run"):
        run_sweep(tmp_path, fixed=["exit=1"], n_trials=4, max_failure_rate=0.0)


def test_the_failure_rate_is_a_share_of_the_trials_this_run_starts(tmp_path):
    # 4 trials to run, rate 0.5: two failures are allowed, the third stops the run
    with pytest.raises(SweepFailed, match="^3 trials failed in this run, more than max_failure_rate=0.5 x 4 trials"):
        run_sweep(tmp_path, fixed=["exit=1"], n_trials=4, max_failure_rate=0.5)


def test_a_nan_objective_is_a_failure_with_its_reason(tmp_path):
    with pytest.raises(SweepFailed, match="trial 0: objective is not a finite number"):
        run_sweep(tmp_path, fixed=["value=nan"], n_trials=1, max_failure_rate=0.0)
    study = plain_load(tmp_path / "study.journal")
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert study.trials[0].user_attrs["fail_reason"] == "objective is not a finite number: [nan]"


# -- 4. the stored command -----------------------------------------------------------------------


def test_the_stored_command_is_shell_quoted_and_round_trips(tmp_path):
    fixed = ["model.channels=[8, 16]", "note=two words", "exit=0"]
    study = run_sweep(tmp_path, fixed=fixed, n_trials=1)
    command = study.trials[0].user_attrs["command"]
    words = shlex.split(command)
    assert words[1].endswith("stub.py") and words[2:5] == fixed
    assert words[5:] == [f"x={study.trials[0].params['x']}"]  # run again, it trains into a fresh folder
    assert "'model.channels=[8, 16]'" in command


def test_trials_carry_their_metrics_and_relative_folder_and_the_study_names_its_metric(tmp_path, monkeypatch):
    from sgmod_study.sweeper.results import best_summary

    monkeypatch.chdir(tmp_path)
    study = Sweep(
        SweepSettings(study_name="s", storage="study.journal", n_trials=3, metric_names=["val/x"]),
        SPACE,
        [],
        Path("sweep"),  # relative, as Hydra gives it
        stub_script(tmp_path),
    ).run()
    assert study.metric_names == ["val/x"]  # optuna-dashboard shows this, not "Objective 0"
    for trial in study.trials:
        assert trial.user_attrs["test/acc"] == pytest.approx(trial.value / 2)
        # relative to where the sweep started (the repository): a record moved to another machine stays valid
        assert trial.user_attrs["folder"] == f"sweep/trial_{trial.number:04d}"
        assert trial.user_attrs["command"].startswith("python stub.py x=")
    best = study.best_trial
    first = best_summary(study).splitlines()[0]
    assert first == f"[sweep] best of the 3 finished trials: trial {best.number}, val/x={best.value:.4f}"


# -- end to end: what a user sees ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "start", "end"),
    [
        (
            ["hydra.sweeper.n_jobs=0"],
            "error: hydra.sweeper.n_jobs=0 is not allowed: it must be a whole number >= 1",
            "",
        ),
        # Hydra refuses a word for a number itself; src/train.py makes that one line and exit 2
        (["hydra.sweeper.n_trials=abc"], "error: Error merging override hydra.sweeper.n_trials=abc", ""),
        (
            ["optimizer.lr=tag(log, interval(0, 1))"],
            "error: optimizer.lr=tag(log, interval(0, 1)) is not allowed: a log interval needs low > 0",
            "",
        ),
        # the trial configs, composed before any trial: a choice selecting a missing config group option,
        (
            ["norm=choice(batch,nonorm)"],
            "error: norm='nonorm' is not a known",
            "(in the trial config with norm=nonorm)",
        ),
        # a key no config has,
        (["model.nonexistent=choice(1,2)"], "error: model.nonexistent is not a known setting", "model.nonexistent=1)"),
        # a searched bound the run would refuse (config.schema.check_config, 2nd probe: gamma at its high bound)
        (
            ["activation.gamma_bounds=[0.1,0.2]"],
            "error: activation.gamma_init=10.0 is outside its allowed range",
            "(in the trial config with activation.gamma_init=10.0)",
        ),
    ],
)
def test_a_bad_sweep_exits_2_with_one_line_before_any_trial(tmp_path, args, start, end):
    result = train_multirun(tmp_path, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [row for row in result.stderr.splitlines() if row.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(start) and errors[0].endswith(end), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("sweep/trial_*"))  # no trial started (sweep.log has the error too)


# -- the study's fixed setup (issue 11: a sweep under another setup must not join a study) --------


def test_the_fixed_setup_leaves_out_searched_keys_and_how_a_trial_runs():
    config = {
        "activation": {"name": "sgmod", "gamma_init": 1.0},
        "trainer": {"max_epochs": 10, "enable_progress_bar": False},
        "data": {"name": "fashion_mnist", "on_device": True, "data_dir": "data"},
        "optimizer": {"lr": 0.001},
        "seed": 42,
        "output_dir": "x",
    }
    setup = fixed_setup(config, ["activation", "optimizer.lr"])
    assert setup == {"data.name": "fashion_mnist", "seed": 42, "trainer.max_epochs": 10}


def test_a_sweep_under_another_fixed_setup_is_refused_and_the_study_keeps_its_trials(tmp_path):
    study = run_sweep(tmp_path, fixed_setup={"trainer.max_epochs": 10, "model.name": "cnn"})
    assert study.user_attrs["fixed_setup"] == {"trainer.max_epochs": 10, "model.name": "cnn"}
    # the same setup (plus a key the configs gained since, which does not count) resumes
    same = run_sweep(tmp_path, n_trials=3, fixed_setup={"trainer.max_epochs": 10, "model.name": "cnn", "new": 1})
    assert len(same.trials) == 3
    with pytest.raises(ConfigError) as refused:
        run_sweep(tmp_path, n_trials=4, fixed_setup={"trainer.max_epochs": 2, "model.name": "cnn"})
    assert str(refused.value).startswith(
        "hydra.sweeper.study_name=s was run under another fixed setup (trainer.max_epochs=10 there, 2 here)"
    )
    assert len(plain_load(tmp_path / "study.journal").trials) == 3  # nothing was added


@pytest.mark.slow
def test_a_real_sweep_records_its_setup_and_refuses_another_epoch_count(tmp_path):
    tiny = [
        "trainer=cpu",
        "trainer.max_epochs=1",
        "model.channels=[8]",
        "model.hidden=16",
        "diagnostics.every_n_steps=null",
        "activation.impl=reference",
    ]
    result = train_multirun(tmp_path, *tiny, "hydra.sweeper.n_trials=1")
    assert result.returncode == 0, result.stderr[-2000:]
    setup = plain_load(tmp_path / "study.journal", "sgmod_classifier").user_attrs["fixed_setup"]
    assert setup["data.name"] == "digits" and setup["model.channels"] == "[8]"
    assert "activation.gamma_init" not in setup and "optimizer.lr" not in setup  # searched
    # a changed search space (gamma_init searched on a linear scale) is refused before any trial (row 1)
    result = train_multirun(tmp_path, *tiny, "hydra.sweeper.n_trials=2", "activation.gamma_init=interval(0.5,2)")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hydra.sweeper.study_name=sgmod_classifier searched another space (activation.gamma_init: float "
        "[0.1, 10.0], log there, float [0.5, 2.0] here): its trials and these would mix; use another "
        "hydra.sweeper.study_name, or the study's search space"
    )
    assert [t.state.name for t in plain_load(tmp_path / "study.journal", "sgmod_classifier").trials] == ["COMPLETE"]
    result = train_multirun(tmp_path, *tiny, "hydra.sweeper.n_trials=2", "trainer.max_epochs=2")
    assert result.returncode == 2
    assert (
        "error: hydra.sweeper.study_name=sgmod_classifier was run under another fixed setup (trainer.max_epochs=1"
        in (result.stderr)
    )
