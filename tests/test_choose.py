"""Which trial is best is decided in one place (sgmod_study/study/choose.py), and it knows
whether the sweep maximises or minimises: a GAN's FID is minimised."""

import optuna
import pytest
from optuna.distributions import FloatDistribution

from sgmod_study.errors import ConfigError
from sgmod_study.study.choose import best_row, best_trial, chosen_overrides, top_trials
from sgmod_study.study.spec import load_study

SPACE = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _study(direction: str, values: list[float]) -> optuna.Study:
    study = optuna.create_study(direction=direction)
    for i, value in enumerate(values):
        params = {"optimizer.lr": 10.0 ** -(i + 1)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=SPACE, value=value))
    return study


def test_the_best_trial_is_the_highest_when_maximising_and_the_lowest_when_minimising():
    values = [0.5, 0.9, 0.1, 0.7]
    up, down = _study("maximize", values), _study("minimize", values)
    assert best_trial(up.trials).value == 0.9 and best_trial(down.trials, maximize=False).value == 0.1
    assert chosen_overrides(up, "best") == ["optimizer.lr=0.01"]  # trial 1
    assert chosen_overrides(down, "best") == ["optimizer.lr=0.001"]  # trial 2: the direction comes from the study
    assert [t.value for t in top_trials(down.trials, maximize=False)] == [0.1, 0.5, 0.7]
    rows = [{"state": "COMPLETE", "values": [v]} for v in values] + [{"state": "FAIL", "values": None}]
    assert best_row(rows)["values"] == [0.9] and best_row(rows, maximize=False)["values"] == [0.1]
    assert best_row([{"state": "FAIL", "values": None}]) is None


def test_a_study_declares_its_direction_and_a_bad_one_is_one_line(tmp_path):
    assert load_study("classifier").maximize
    (tmp_path / "up.yaml").write_text("direction: upward\nparts: {}\nsections: {}\n")
    with pytest.raises(
        ConfigError, match=r"direction='upward' is not a known choice; valid choices: maximize, minimize"
    ):
        load_study("up", tmp_path)


def test_a_sweeps_best_trials_follow_its_direction_and_a_pareto_front_for_several_objectives():
    from sgmod_study.study.choose import best_trials

    assert [t.value for t in best_trials(_study("minimize", [0.5, 0.2, 0.9]))] == [0.2]
    assert [t.value for t in best_trials(_study("maximize", [0.5, 0.2, 0.9]))] == [0.9]
    assert best_trials(optuna.create_study()) == []  # nothing finished yet
    two = optuna.create_study(directions=["maximize", "minimize"])
    for values in ([0.9, 5.0], [0.8, 1.0], [0.7, 9.0]):  # the third is dominated by both others
        two.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=values))
    assert sorted(t.values[0] for t in best_trials(two)) == [0.8, 0.9]
