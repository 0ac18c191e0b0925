"""The report on synthetic run folders with known metrics, checked against scipy."""

import json
import math

import numpy as np
import pytest
import yaml
from scipy import stats

from sgmod_study.errors import ConfigError
from sgmod_study.report import compare, conclusion, find_runs, holm, write_report

RELU = [0.900, 0.905, 0.910, 0.902, 0.908]
SGMOD = [0.912, 0.915, 0.921, 0.913, 0.919]  # better than relu on every seed
TANH = [0.899, 0.906, 0.909, 0.904, 0.905]  # indistinguishable from relu


def make_runs(root, accuracies: dict, missing: tuple = ()):
    """One folder per (activation, seed) as train.py leaves it; `missing` runs have no result.json."""
    for activation, values in accuracies.items():
        for seed, value in enumerate(values):
            folder = root / f"{activation}_{seed}"
            (folder / ".hydra").mkdir(parents=True)
            config = {"activation": {"name": activation}, "seed": seed, "optimizer": {"lr": 0.001}}
            (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
            if (activation, seed) not in missing:
                (folder / "result.json").write_text(json.dumps({"value": value, "metrics": {"test/acc": value}}))
    return root


def _by_label(groups):
    return {g.label: g for g in groups}


def test_means_cis_and_p_values_match_scipy(tmp_path):
    runs = find_runs([make_runs(tmp_path, {"relu": RELU, "sgmod": SGMOD, "tanh": TANH})])
    groups = _by_label(compare(runs, ["activation.name"], "test/acc", baseline="relu"))
    sgmod = groups["sgmod"]
    assert sgmod.n == 5 and sgmod.mean == pytest.approx(np.mean(SGMOD))
    assert sgmod.std == pytest.approx(np.std(SGMOD, ddof=1))
    low, high = stats.t.interval(0.95, 4, loc=np.mean(SGMOD), scale=stats.sem(SGMOD))
    assert (sgmod.ci_low, sgmod.ci_high) == (pytest.approx(low), pytest.approx(high))
    raw = [stats.ttest_rel(SGMOD, RELU).pvalue, stats.ttest_rel(TANH, RELU).pvalue]
    assert sgmod.p_raw == pytest.approx(raw[0]) and groups["tanh"].p_raw == pytest.approx(raw[1])
    # Holm over the two comparisons: the smaller p doubled, the larger at least as large
    assert sgmod.p_value == pytest.approx(min(1, 2 * raw[0]))
    assert groups["tanh"].p_value == pytest.approx(max(min(1, 2 * raw[0]), raw[1]))
    assert groups["relu"].p_value is None


def test_holm_matches_the_textbook_procedure():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])


def test_missing_runs_are_listed_not_dropped(tmp_path):
    make_runs(tmp_path, {"relu": RELU, "sgmod": SGMOD}, missing=(("sgmod", 3),))
    groups = _by_label(compare(find_runs([tmp_path]), ["activation.name"], "test/acc", "relu"))
    assert groups["sgmod"].n == 4 and groups["sgmod"].paired_n == 4
    assert groups["sgmod"].missing == [str(tmp_path / "sgmod_3")]
    text = write_report([tmp_path], ["activation.name"], "test/acc", "relu", tmp_path / "report")
    assert f"- {tmp_path / 'sgmod_3'}" in text


def test_conclusion_flips_when_the_data_flips(tmp_path):
    def verdict(sgmod_values, folder):
        groups = compare(
            find_runs([make_runs(folder, {"relu": RELU, "sgmod": sgmod_values, "tanh": TANH})]),
            ["activation.name"],
            "test/acc",
            "relu",
        )
        return conclusion(groups, "relu", "test/acc", higher_is_better=True)

    better = verdict(SGMOD, tmp_path / "a")
    worse = verdict([2 * r - s for r, s in zip(RELU, SGMOD, strict=True)], tmp_path / "b")  # mirrored below relu
    assert better.startswith("Significantly better than relu on test/acc: sgmod (+0.0110")
    assert "Significantly worse" not in better
    assert worse.startswith("Significantly worse than relu on test/acc: sgmod (-0.0110")
    for text in (better, worse):
        assert "No significant difference from relu (Holm-corrected paired t-test, alpha=0.05): tanh." in text


def test_report_writes_markdown_and_a_non_empty_figure(tmp_path):
    make_runs(tmp_path / "runs", {"relu": RELU, "sgmod": SGMOD})
    write_report([tmp_path / "runs"], ["activation.name"], "test/acc", "relu", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| sgmod | 5 | 0.9160 |" in report and "| relu | 5 | 0.9050 |" in report
    figure = tmp_path / "report" / "figures" / "test_acc_by_activation.name.png"
    assert figure.stat().st_size > 5000
    assert "![test/acc](figures/test_acc_by_activation.name.png)" in report


def test_single_seed_has_no_interval_and_no_test(tmp_path):
    groups = _by_label(
        compare(
            find_runs([make_runs(tmp_path, {"relu": [0.9], "sgmod": [0.91]})]), ["activation.name"], "test/acc", "relu"
        )
    )
    assert math.isnan(groups["sgmod"].ci_low) and groups["sgmod"].p_value is None


def test_an_experiment_grid_feeds_the_report(tmp_path):
    """experiment=compare_activations cut down to 2 activations x 2 seeds, then the report on it
    (relu and tanh: no fused Sgmod to compile in every trial process)."""
    from test_sweeper import load, sweep

    code, output = sweep(
        tmp_path,
        "hydra.sweeper.params.activation='choice(relu,tanh)'",
        "hydra.sweeper.params.seed='choice(0,1)'",
        n_trials=4,
        search="experiment=compare_activations",
    )
    assert code == 0, output[-3000:]
    study = load(tmp_path, name="compare_activations")
    assert sorted((t.params["activation"], t.params["seed"]) for t in study.trials) == [
        ("relu", 0),
        ("relu", 1),
        ("tanh", 0),
        ("tanh", 1),
    ]
    groups = {g.label: g for g in compare(find_runs([tmp_path / "sweep"]), ["activation.name"], "test/acc", "relu")}
    assert set(groups) == {"relu", "tanh"}
    assert groups["relu"].n == groups["tanh"].n == 2 and groups["tanh"].paired_n == 2


@pytest.mark.parametrize(
    "experiment",
    ["compare_activations", "norm_placement", "depth", "sgmod_ablations", "gan_placement", "study_controls"],
)
def test_experiment_grids_are_complete(experiment):
    """Each experiment's n_trials is its whole grid, and every grid value composes into a config."""
    from hydra import compose, initialize_config_dir

    from conftest import CONF
    from sgmod_study.sweeper.space import search_space

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        space, fixed = search_space(dict(cfg.hydra.sweeper.params), [])
        assert fixed == [] and all(hasattr(d, "choices") for d in space.values())
        assert cfg.hydra.sweeper.n_trials == math.prod(len(d.choices) for d in space.values())
        for key, distribution in space.items():
            for value in distribution.choices:
                compose("train", overrides=[f"experiment={experiment}", f"{key}={value}"])


def add_curves(folder, val_acc, gamma_end=None, grad_norms=None):
    """TensorBoard scalars as a run writes them: val/acc per epoch, Sgmod gamma/beta, grad norms."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder / "tensorboard")) as writer:
        for epoch, value in enumerate(val_acc):
            writer.add_scalar("val/acc", value, (epoch + 1) * 100)
        if gamma_end is not None:
            for step, gamma in ((0, 1.0), (100, (1 + gamma_end) / 2), (200, gamma_end)):
                writer.add_scalar("sgmod/features.stage1.act/gamma", gamma, step)
                writer.add_scalar("sgmod/features.stage1.act/beta", -gamma / 10, step)
        for layer, norm in enumerate(grad_norms or [], start=1):
            writer.add_scalar(f"grad_norm/net.layer{layer}.fc", norm, 0)


def test_curves_trajectories_and_gradient_norms_reach_the_report(tmp_path):
    make_runs(tmp_path / "runs", {"relu": RELU[:2], "sgmod": SGMOD[:2]})
    for seed in (0, 1):
        add_curves(tmp_path / "runs" / f"relu_{seed}", [0.8, 0.85, 0.9], grad_norms=[1.0, 0.9, 0.8])
        add_curves(
            tmp_path / "runs" / f"sgmod_{seed}", [0.7, 0.8, 0.91], gamma_end=2.0 + seed, grad_norms=[1e-3, 1e-2, 1e-1]
        )
    text = write_report([tmp_path / "runs"], ["activation.name"], "test/acc", "relu", tmp_path / "report")
    for figure in ("learning_curves", "sgmod_trajectories", "gradient_norms_by_depth"):
        assert (tmp_path / "report" / "figures" / f"{figure}.png").stat().st_size > 5000, figure
        assert f"(figures/{figure}.png)" in text
    assert "| features.stage1.act | 2.500 | -0.250 |" in text  # final gamma/beta, mean of the two seeds


def test_optuna_sweeps_get_best_trial_importances_and_landscape(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    make_runs(tmp_path / "sweep", {"relu": RELU[:2], "sgmod": SGMOD[:2]})
    best = {"number": 3, "values": [0.92], "params": {"activation.gamma_init": 2.5, "optimizer.lr": 0.003}}
    (tmp_path / "sweep" / "best.json").write_text(json.dumps(best))
    importances = {"optimizer.lr": 0.7, "activation.gamma_init": 0.2, "activation.beta_init": 0.1}
    (tmp_path / "sweep" / "importances.json").write_text(json.dumps(importances))
    (tmp_path / "sweep" / "plots").mkdir()
    plt.plot([0, 1], [0, 1])
    plt.savefig(tmp_path / "sweep" / "plots" / "gamma_beta_contour.png")
    plt.close("all")
    text = write_report([tmp_path / "sweep"], ["activation.name"], "test/acc", "relu", tmp_path / "report")
    assert "## Optuna study: sweep" in text and "Best trial 3, value [0.92]" in text
    assert "| activation.gamma_init | 2.5 |" in text and "| optimizer.lr | 0.700 |" in text
    assert (tmp_path / "report" / "figures" / "sweep_gamma_beta_contour.png").is_file()


def test_constant_differences_fall_back_to_the_sign_test(tmp_path):
    shifted = [r + 0.01 for r in RELU]  # the same gain on every seed: no variance for a t-test
    groups = _by_label(
        compare(
            find_runs([make_runs(tmp_path, {"relu": RELU, "sgmod": shifted})]), ["activation.name"], "test/acc", "relu"
        )
    )
    assert groups["sgmod"].p_value == pytest.approx(2 * 0.5**5)  # 0.0625: not significant at 5 seeds


def test_where_keeps_only_matching_runs(tmp_path):
    make_runs(tmp_path / "runs", {"relu": RELU, "sgmod": SGMOD, "tanh": TANH})
    text = write_report(
        [tmp_path / "runs"], ["activation.name"], "test/acc", "relu", tmp_path / "report", where={"seed": "1"}
    )
    assert "where seed=1" in text
    assert "| sgmod | 1 | 0.9150 |" in text and "| tanh | 1 | 0.9060 |" in text


def test_interpolated_keys_group_by_what_the_run_logged(tmp_path):
    for seed, (generator, fid) in enumerate([("relu", 30.0), ("relu", 32.0), ("sgmod", 50.0), ("sgmod", 54.0)]):
        folder = tmp_path / f"run_{seed}"
        (folder / ".hydra").mkdir(parents=True)
        config = {"activation": {"name": "sgmod"}, "model": {"generator": {"activation": "${activation}"}}}
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({**config, "seed": seed % 2}))
        (folder / "tensorboard").mkdir()
        logged = {"model.generator.activation.name": generator, "seed": seed % 2}
        (folder / "tensorboard" / "hparams.yaml").write_text(yaml.safe_dump(logged))
        (folder / "result.json").write_text(json.dumps({"value": fid, "metrics": {"test/fid": fid}}))
    groups = _by_label(compare(find_runs([tmp_path]), ["model.generator.activation.name"], "test/fid", "relu"))
    assert set(groups) == {"relu", "sgmod"}
    assert groups["sgmod"].mean == pytest.approx(52.0) and groups["relu"].mean == pytest.approx(31.0)


def test_the_printed_difference_is_the_paired_mean_difference_with_its_interval(tmp_path):
    make_runs(tmp_path / "runs", {"relu": RELU, "sgmod": SGMOD})
    groups = _by_label(compare(find_runs([tmp_path / "runs"]), ["activation.name"], "test/acc", "relu"))
    differences = np.array(SGMOD) - np.array(RELU)
    low, high = stats.t.interval(0.95, 4, loc=differences.mean(), scale=stats.sem(differences))
    sgmod = groups["sgmod"]
    assert sgmod.diff_mean == pytest.approx(differences.mean())
    assert (sgmod.diff_low, sgmod.diff_high) == (pytest.approx(low), pytest.approx(high))
    text = write_report([tmp_path / "runs"], ["activation.name"], "test/acc", "relu", tmp_path / "report")
    printed = f"{differences.mean():+.4f} [{low:+.4f}, {high:+.4f}]"
    assert f"| {printed} |" in text  # the table
    assert f"sgmod ({printed}, p=" in text  # the conclusion


def test_two_runs_of_one_configuration_and_seed_are_refused(tmp_path):
    make_runs(tmp_path / "a", {"relu": RELU[:2], "sgmod": SGMOD[:2]})
    make_runs(tmp_path / "b", {"sgmod": SGMOD[:1]})  # sgmod seed 0 again
    with pytest.raises(ConfigError, match="two runs of configuration 'sgmod' with seed 0: .*sgmod_0 and .*sgmod_0"):
        compare(find_runs([tmp_path / "a", tmp_path / "b"]), ["activation.name"], "test/acc", "relu")


def test_gamma_beta_end_values_are_per_configuration_and_leave_out_fixed_runs(tmp_path):
    make_runs(tmp_path / "runs", {"sgmod": SGMOD[:2], "fixed": SGMOD[:2]})
    for seed in (0, 1):
        add_curves(tmp_path / "runs" / f"sgmod_{seed}", [0.8, 0.9], gamma_end=2.0 + seed)
        fixed = tmp_path / "runs" / f"fixed_{seed}"
        add_curves(fixed, [0.8, 0.9], gamma_end=7.0)
        config = yaml.safe_load((fixed / ".hydra" / "config.yaml").read_text())
        config["activation"].update(learn_gamma=False, learn_beta=False)
        (fixed / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    text = write_report([tmp_path / "runs"], ["activation.name"], "test/acc", "sgmod", tmp_path / "report")
    assert "| sgmod | features.stage1.act | 2.500 | -0.250 |" in text
    assert "| fixed | features.stage1.act |" not in text and "7.000" not in text


def test_grid_experiments_get_no_best_trial_or_importances(tmp_path):
    make_runs(tmp_path / "grid", {"relu": RELU[:2], "sgmod": SGMOD[:2]})
    (tmp_path / "grid" / "best.json").write_text(json.dumps({"number": 1, "values": [0.9], "params": {"seed": 1}}))
    (tmp_path / "grid" / "importances.json").write_text(json.dumps({"seed": 0.9, "activation": 0.1}))
    for folder in (tmp_path / "grid").glob("*_*"):
        (folder / ".hydra" / "hydra.yaml").write_text(
            "sweeper:\n  sampler:\n    _target_: optuna.samplers.GridSampler\n"
        )
    text = write_report([tmp_path / "grid"], ["activation.name"], "test/acc", "relu", tmp_path / "report")
    assert "Optuna study" not in text and "importance" not in text
