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


def _activation_lr_grid() -> optuna.Study:
    """A grid over activation x lr (one seed), maximised: tanh is best at 3e-3, sigmoid at 1e-2."""
    space = {
        "activation": optuna.distributions.CategoricalDistribution(["sigmoid", "tanh"]),
        "optimizer.lr": optuna.distributions.CategoricalDistribution([0.001, 0.003, 0.01]),
        "seed": optuna.distributions.CategoricalDistribution([0]),
    }
    study = optuna.create_study(direction="maximize")
    scores = {("sigmoid", 0.001): 0.80, ("sigmoid", 0.003): 0.84, ("sigmoid", 0.01): 0.86}
    scores |= {("tanh", 0.001): 0.88, ("tanh", 0.003): 0.90, ("tanh", 0.01): 0.89}
    for (activation, lr), value in scores.items():
        params = {"activation": activation, "optimizer.lr": lr, "seed": 0}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
    return study


def test_a_confirm_picks_the_best_cell_among_the_cells_it_names():
    from sgmod_study.study.choose import confirm_overrides
    from sgmod_study.study.spec import Part

    grid = _activation_lr_grid()
    assert chosen_overrides(grid, "best_cell") == ["activation=tanh", "optimizer.lr=0.003"]  # the whole grid's
    sigmoid = chosen_overrides(grid, "best_cell", (("activation", "sigmoid"),))
    assert sigmoid == ["activation=sigmoid", "optimizer.lr=0.01"]  # sigmoid's own best lr, not tanh's
    with pytest.raises(ConfigError, match=r"has no finished trial with activation=relu yet; run it first"):
        chosen_overrides(grid, "best_cell", (("activation", "relu"),))
    # a confirm's own overrides win over its pick: here the lr is set by the part
    part = Part("c", "confirm", ("activation=sigmoid", "optimizer.lr=0.02"), 2, of="g", pick="best_cell")
    assert confirm_overrides(grid, part) == []
    part = Part(
        "c", "confirm", ("experiment=study_confirm",), 2, of="g", pick="best_cell", where=(("activation", "tanh"),)
    )
    assert confirm_overrides(grid, part) == ["activation=tanh", "optimizer.lr=0.003"]


def test_the_new_studies_declare_their_picks_and_cell_contrasts():
    norm, depth = load_study("norm"), load_study("depth")
    confirm = norm.parts["confirm_ln_after_relu"]
    assert (confirm.of, confirm.pick, confirm.where) == ("lr_ln_after", "best_cell", (("activation", "relu"),))
    assert sum(p.trials for p in norm.parts.values()) == 5 * 12 + 21 * 8
    control = norm.parts["confirm_bn_after_sgmod_at_sigmoid_lr"]  # learnable Sgmod at sigmoid's lr
    assert (control.of, control.where) == ("lr_bn_after", (("activation", "sigmoid"),))
    assert control.overrides[-1] == "activation=sgmod"  # a part's own setting wins over its pick's (confirm_overrides)
    assert sum(p.trials for p in depth.parts.values()) == 4 * 6 * 4 * 8
    contrasts = depth.contrasts["cell_contrasts"]
    assert all(c.by == "model.depth" and c.at for c in contrasts)
    primary = [(c.part, c.variant, c.reference, c.at) for c in contrasts if c.primary]
    assert primary[-2:] == [
        ("none_default", "sgmod_2tanh", "sigmoid", (16, 32)),  # one Sgmod named before the runs
        ("none_kaiming", "sgmod_2tanh", "sigmoid", (16, 32)),
    ]
    assert sum(len(at) for *_, at in primary) == 4 * 4 + 2 * 2  # Holm's family, known before any run
    assert all(isinstance(c.variant, str) for c in contrasts if c.primary)  # a best-of list is secondary


def test_a_bad_where_contrast_part_or_contrast_without_its_values_is_one_line(tmp_path):
    grid = "g: {kind: grid, overrides: [], trials: 2}"
    confirm = "c: {kind: confirm, of: g, pick: best_cell, where: sigmoid, seeds: [1]}"
    (tmp_path / "w.yaml").write_text(f"parts:\n  {grid}\n  {confirm}\nsections: {{}}\n")
    with pytest.raises(ConfigError, match=r"parts.c.where='sigmoid' is not allowed: it must map grid parameters"):
        load_study("w", tmp_path)
    contrast = "cell_contrasts:\n    - {part: h, variant: a, reference: b}"
    (tmp_path / "p.yaml").write_text(f"parts:\n  {grid}\ncontrasts:\n  {contrast}\nsections: {{}}\n")
    with pytest.raises(ConfigError, match=r"contrasts: part='h' is not a known choice; valid choices: g"):
        load_study("p", tmp_path)
    contrast = "cell_contrasts:\n    - {part: g, variant: a, reference: b, by: model.depth}"
    (tmp_path / "b.yaml").write_text(f"parts:\n  {grid}\ncontrasts:\n  {contrast}\nsections: {{}}\n")
    with pytest.raises(ConfigError, match=r"by=model.depth without at is not allowed: list the values it is tested at"):
        load_study("b", tmp_path)


def test_a_confirm_part_says_which_of_its_overrides_change_its_pick():
    parts = load_study("classifier").parts
    assert parts["confirm_sgmod_default"].changes() == ()  # the recommended default as it is
    assert parts["confirm_tanh_cpu"].changes() == ()  # trainer=cpu: where it runs, not what
    assert parts["gap_6"].changes() == ()  # validating both ways changes no weight
    assert parts["confirm_sgmod_default_at_1_0"].changes() == ("activation.gamma_init=1.0", "activation.beta_init=0.0")
    assert parts["linesearch_relu"].changes() == (
        "hydra.sweeper.params.optimizer.lr='choice(0.01, 0.015, 0.02, 0.03)'",
    )
