"""The GAN study's report (its sections from synthetic records with known values) and its study
file's per-metric shape: no training, and no torch on the report's path."""

from __future__ import annotations

import base64
import itertools
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from helpers.records import GAN, diverged_row, gan_row, study_cli, write_parts
from helpers.runs import CONF
from sgmod_study.errors import ConfigError
from sgmod_study.study import stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import (
    contrasts,
    equal_budget,
    figures,
    length,
    quality,
    samples,
    stability,
    trajectories,
)
from sgmod_study.study.report.document import write_report
from sgmod_study.study.report.outcomes import cell_text
from sgmod_study.study.spec import load_study

PNG = base64.b64decode(  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
SEEDS = list(range(100, 108))  # the confirm parts' seeds
REFERENCE = [30.0, 31.0, 29.0, 32.0, 30.0, 31.0, 33.0, 30.0]  # test FID of confirm_g_relu by seed
BETTER = [27.1, 28.3, 25.8, 29.2, 26.9, 28.1, 29.7, 27.2]  # about 3 lower on every seed
ALIKE = [30.2, 30.9, 29.1, 31.8, 30.1, 31.2, 32.9, 29.9]  # within 0.2 of REFERENCE


def _page(tmp_path):
    return figures.Page(tmp_path / "gan_figures", {})


def _text(module, record, tmp_path) -> str:
    return "\n".join(module.render(module.compute(GAN, record), _page(tmp_path)))


def _confirm(fids, seeds=SEEDS, **kwargs):
    """A confirm part's rows: test KID = FID / 1000."""
    return [gan_row(s, f, f / 1000, number=i, **kwargs) for i, (s, f) in enumerate(zip(seeds, fids, strict=True))]


# --- the study file ----------------------------------------------------------------------------


def test_the_gan_study_tests_two_metrics_each_with_its_own_margin_and_the_classifier_keeps_its_shape():
    assert GAN.metrics == ("test/fid", "test/kid") and GAN.metric == "test/fid" and not GAN.maximize
    declared = load_study("gan", CONF / "study")
    assert declared.margins == {"test/fid": (0.35, 1.5), "test/kid": (0.008, 0.03)} and declared.margin == 0.35
    assert list(GAN.sections) == [
        "length",
        "stability",
        "trajectories",
        "equal_budget",
        "samples",
        "quality",
        "contrasts",
    ]
    classifier = load_study("classifier", CONF / "study")
    assert classifier.metrics == ("test/acc",) and classifier.margins == {"test/acc": (0.005, 0.002)}
    assert (classifier.margin, classifier.also_margins) == (0.005, (0.002,))


def _gan_file(tmp_path, **changes):
    data = yaml.safe_load((CONF / "study" / "gan.yaml").read_text()) | changes
    (tmp_path / "gan.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "gan.yaml"


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"equivalence": {"margin": {"test/fid": 2.0}}},
            "equivalence.margin={'test/fid': 2.0} is not allowed: it has no margin for test/kid "
            "(give one for each of test/fid, test/kid)",
        ),
        (
            {"equivalence": {"margin": {"test/fid": 2.0, "test/kid": 0.05, "test/is": 1.0}}},
            "equivalence.margin.test/is=1.0 is not allowed: test/is is not in metrics (choose test/fid, test/kid)",
        ),
        (
            {"equivalence": {"margin": {"test/fid": -1, "test/kid": 0.05}}},
            "equivalence.margin.test/fid=-1 is not allowed: it must be a number > 0",
        ),
        (
            {"equivalence": {"margin": 2.0, "within": 1}},
            "equivalence.within is not allowed: choose one of margin, also",
        ),
        (
            {"metrics": ["test/kid"]},
            "metrics=['test/kid'] is not allowed: it must be a list of metric names holding test/fid",
        ),
    ],
)
def test_a_bad_margin_or_metric_list_is_one_line_naming_the_file_the_key_the_value_and_what_is_allowed(
    tmp_path, changes, message
):
    path = _gan_file(tmp_path, **changes)
    with pytest.raises(ConfigError) as found:
        load_study("gan", tmp_path)
    assert str(found.value) == f"{path}: {message}"


# --- stability and length ------------------------------------------------------------------------


def _grid():
    """grid rows: lr 1e-4 three good seeds (FID 30, 32, 34); lr 1e-3 one diverged, one collapsed, one FID 50."""
    rows = [gan_row(s, f, lr=1e-4, number=s) for s, f in enumerate([30.0, 32.0, 34.0])]
    return rows + [
        diverged_row(0, lr=1e-3, number=3),
        gan_row(1, 80.0, lr=1e-3, collapsed=1, number=4),
        gan_row(2, 50.0, lr=1e-3, number=5),
    ]


def test_stability_counts_diverged_and_collapsed_runs_with_an_exact_interval(tmp_path):
    record = write_parts(tmp_path / "gan", {"grid_g_relu": _grid()})
    text = _text(stability, record, tmp_path)
    # 2 of 3 failed: Clopper-Pearson [beta(0.025; 2, 2), beta(0.975; 3, 1)] = [0.094, 0.992]
    assert "| g_relu | lr 1e-3 | 3 | 1 | 1 | 2/3 = 0.67 [0.09, 0.99] | 50.00 | 0.0200 |" in text
    # no failure in 3: [0, 1 - 0.025^(1/3)] = [0, 0.708]; FID 32 +- t(0.975, 2) * 2 / sqrt(3) = 4.97
    assert "| g_relu | lr 1e-4* | 3 | 0 | 0 | 0/3 = 0.00 [0.00, 0.71] | 32.00 [27.03, 36.97] |" in text
    # the total counts failures; no mean over the lrs, which would leave the failed runs out
    assert "| **g_relu** | all | 6 | 1 | 1 | 2/6 = 0.33 [0.04, 0.78] | - | - |" in text
    assert "Runs so far: grid_g_relu 6 of 18 runs; grid_g_sgmod not run yet;" in text
    assert "![test FID against the learning rate](gan_figures/stability.png)" in text
    assert (tmp_path / "gan_figures" / "stability.png").stat().st_size > 5000


def test_stability_marks_the_lr_the_confirmation_retrains_and_flags_it_at_the_end_of_the_grid(tmp_path):
    # 1e-2 has the lowest val FID, but a diverged run: the fewest failures come first, so 1e-3 is picked
    rows = [gan_row(s, f, lr=1e-4, number=s) for s, f in enumerate([30.0, 32.0])]
    rows += [gan_row(s, f, lr=1e-3, number=2 + s) for s, f in enumerate([20.0, 22.0])]
    rows += [gan_row(0, 10.0, lr=1e-2, number=4), diverged_row(1, lr=1e-2, number=5)]
    text = _text(stability, write_parts(tmp_path / "middle", {"grid_g_relu": rows}), tmp_path)
    assert "| g_relu | lr 1e-3* | 2 |" in text and "| g_relu | lr 1e-2 | 2 |" in text
    assert "Picked at the end" not in text

    rows[5] = gan_row(1, 12.0, lr=1e-2, number=5)  # now 1e-2 fails no run and has the lowest val FID
    text = _text(stability, write_parts(tmp_path / "edge", {"grid_g_relu": rows}), tmp_path)
    assert "| g_relu | lr 1e-2* | 2 |" in text and "| g_relu | lr 1e-3 | 2 |" in text
    assert "Picked at the end of the learning rates tried: g_relu (lr 1e-2, the largest tried)." in text


def test_stability_says_which_criterion_flagged_each_cells_collapsed_runs(tmp_path):
    few = gan_row(0, 9.0, lr=1e-3, collapsed=1, number=0)  # 4 classes covered, some recall
    few["metrics"] |= {"test/classes": 4.0, "test/recall": 0.2}
    far = gan_row(1, 40.0, lr=1e-3, collapsed=1, number=1)  # every class, hardly any recall
    far["metrics"] |= {"test/classes": 8.0, "test/recall": 0.004}
    rows = [few, far, gan_row(2, 5.0, lr=1e-3, number=2), gan_row(0, 6.0, lr=2e-4, number=3)]
    text = _text(stability, write_parts(tmp_path / "gan", {"grid_g_relu": rows}), tmp_path)
    header = "| configuration | setting | collapsed | few classes | no recall | classes covered | recall | test FID |"
    assert header in text
    assert "| g_relu | lr 1e-3 | 2 | 1 | 1 | 6.0 | 0.102 | 24.50 |" in text
    assert "lr 2e-4" not in text.split("Why the collapsed runs were flagged")[1]  # none collapsed there: no line

    text = _text(stability, write_parts(tmp_path / "none", {"grid_g_relu": rows[2:]}), tmp_path)
    assert "Why the collapsed runs were flagged" not in text


def test_the_length_section_states_how_much_the_mean_val_fid_changed_over_the_last_epochs(tmp_path):
    record = write_parts(tmp_path / "gan", {"grid_g_relu": _grid()})
    text = _text(length, record, tmp_path)
    # val/fid = final FID + 1 + 5 per epoch before the last; the failed runs left out
    assert "- FID changed over the last 2 epochs (1 to 3) by: -10.00 at lr 1e-4 (to 33.00); -10.00 at lr 1e-3" in text
    assert "- KID changed over the last 2 epochs (1 to 3) by: -0.0200 at lr 1e-4 (to 0.0200);" in text
    assert (
        "So far 6 of 18 runs of grid_g_relu." in text and "2 failed runs (diverged or collapsed) are left out" in text
    )
    assert (tmp_path / "gan_figures" / "length.png").stat().st_size > 5000


def test_the_length_section_counts_epochs_not_evaluations(tmp_path):
    rows = [gan_row(s, 30.0, lr=2e-4, number=s, epochs=9, every=3) for s in range(2)]
    text = _text(length, write_parts(tmp_path / "gan", {"grid_g_relu": rows}), tmp_path)
    # evaluated at epochs 3, 6 and 9: the last 2 evaluations span 6 epochs, val/fid 61 -> 31
    assert "- FID changed over the last 6 epochs (3 to 9) by: -30.00 at lr 2e-4 (to 31.00)." in text


# --- trajectories ------------------------------------------------------------------------------


def test_trajectories_show_final_gamma_beta_per_layer_at_each_lr_and_mark_the_best_one(tmp_path):
    rows = [gan_row(s, 30.0 + s, lr=1e-4, number=s) for s in range(3)]
    rows += [gan_row(s, 20.0 + s, lr=1e-3, number=3 + s) for s in range(3)]  # lower FID: the best lr
    record = write_parts(tmp_path / "gan", {"grid_g_sgmod": rows})
    text = _text(trajectories, record, tmp_path)
    # the curves end at gamma 1 + 100 lr, beta -10 lr
    assert "| configuration | layer | lr 1e-4 | lr 1e-3 |" in text
    assert "| g_sgmod | discriminator.body.act1 | 1.010 / -0.001 | 1.100 / -0.010* |" in text
    assert "| g_sgmod | generator.body.block0.act | 1.010 / -0.001 | 1.100 / -0.010* |" in text
    assert "g_sgmod at lr 1e-3 (mean over 3 seeds):" in text
    assert (tmp_path / "gan_figures" / "trajectories_g_sgmod.png").stat().st_size > 5000
    assert "No curves yet: grid_d_sgmod not run yet;" in text


def test_the_best_lr_has_the_fewest_failed_runs_before_the_lowest_fid(tmp_path):
    rows = [gan_row(s, 30.0 + s, lr=1e-4, number=s) for s in range(3)]
    rows += [gan_row(s, 20.0, lr=1e-3, number=3 + s) for s in range(2)] + [diverged_row(2, lr=1e-3, number=5)]
    text = _text(trajectories, write_parts(tmp_path / "gan", {"grid_g_sgmod": rows}), tmp_path)
    assert "| g_sgmod | discriminator.body.act1 | 1.010 / -0.001* | 1.100 / -0.010 |" in text


# --- the sweeps at an equal budget -------------------------------------------------------------


def _sweep_row(number, fid, lr_g):
    return gan_row(42, fid, number=number, params={"task.lr_g": lr_g, "task.lr_d": 2e-4})


def test_sweeps_are_compared_by_the_expected_lowest_fid_with_diverged_trials_counted_as_the_worst(tmp_path):
    sgmod = [_sweep_row(0, 39.0, 1e-4), _sweep_row(1, 34.0, 2e-4), _sweep_row(2, 29.0, 5e-4)]
    sgmod.append(diverged_row(42, number=3) | {"params": {"task.lr_g": 1e-3, "task.lr_d": 2e-4}})
    dcgan = [_sweep_row(0, 44.0, 1e-4), _sweep_row(1, 37.0, 2e-4)]
    record = write_parts(tmp_path / "gan", {"sweep_sgmod": sgmod, "sweep_dcgan": dcgan})
    data = equal_budget.compute(GAN, record)
    # val/fid = FID + 1; the diverged trial counts as the worst finished one, 40
    expected = {
        name: np.mean([min(a, b) for a, b in itertools.product(values, repeat=2)])
        for name, values in (("sweep_sgmod", [40, 35, 30, 40]), ("sweep_dcgan", [45, 38]))
    }
    assert data.equal == 2
    assert [s.at_equal for s in data.searches] == [
        pytest.approx(expected["sweep_sgmod"]),
        pytest.approx(45 * 0.25 + 38 * 0.75),
    ]
    text = "\n".join(equal_budget.render(data, _page(tmp_path)))
    assert f"| sweep_sgmod | 4 of 16 | 1 | 0 | 30.00 | 29.00 | 0.0200 | {expected['sweep_sgmod']:.2f} [" in text
    difference = expected["sweep_sgmod"] - expected["sweep_dcgan"]
    assert f"sweep_sgmod minus sweep_dcgan, expected best of 2 trials: {difference:+.2f} [" in text
    assert "the estimate favours sweep_sgmod" in text
    assert "Best trial of sweep_sgmod so far: task.lr_g=0.0005, task.lr_d=0.0002." in text
    assert (tmp_path / "gan_figures" / "expected_best.png").is_file()


# --- samples and quality -----------------------------------------------------------------------


def test_each_configuration_shows_its_first_seeds_sample_grid_copied_beside_the_report(tmp_path):
    rows = [gan_row(101, 31.0, samples="samples/0001.png"), gan_row(100, 30.0, samples="samples/0000.png")]
    collapsed = [gan_row(100, 40.0, collapsed=1, samples="samples/0000.png")]  # its caption says so
    record = write_parts(tmp_path / "gan", {"confirm_g_relu": rows, "confirm_g_tanh": collapsed})
    for part in ("confirm_g_relu", "confirm_g_tanh"):
        (tmp_path / "gan" / part / "samples").mkdir()
        (tmp_path / "gan" / part / "samples" / "0000.png").write_bytes(PNG)
    (tmp_path / "gan" / "confirm_g_relu" / "samples" / "0001.png").write_bytes(b"not this one")
    text = _text(samples, record, tmp_path)
    assert (
        "| g_relu (seed 100; FID 30.00, KID 0.0200) | g_tanh (seed 100; FID 40.00, KID 0.0200; collapsed) |\n"
        "|---|---|\n| ![g_relu samples](gan_figures/samples_g_relu.png) | ![g_tanh samples]" in text
    )
    assert (tmp_path / "gan_figures" / "samples_g_relu.png").read_bytes() == PNG
    assert "No sample grid yet: confirm_g_sgmod," in text


def test_quality_reports_train_mode_metrics_the_eval_mode_difference_and_the_best_epoch_as_secondary(tmp_path):
    rows = _confirm(REFERENCE)
    rows[7] = gan_row(107, 90.0, number=7, collapsed=1)
    text = _text(quality, write_parts(tmp_path / "gan", {"confirm_g_relu": rows}), tmp_path)
    mean, _, low, high = stats.mean_ci(REFERENCE[:7])
    assert f"| g_relu | lr 2e-4 | 8 | 0 | 1 | {mean:.2f} [{low:.2f}, {high:.2f}] |" in text
    # eval mode is 1.00 FID worse on every run: a constant difference, the exact sign test 2 * 0.5^7
    assert f"| g_relu | 7 | {mean:.2f} | {mean + 1:.2f} | -1.00 [-1.00, -1.00] | 0.0156 |" in text
    assert "Secondary (best epoch, selected on the validation set)" in text
    assert f"| g_relu | 7 | {mean + 1:.2f} [" in text  # val/fid = test FID + 1
    assert "Not run yet: confirm_g_sgmod," in text


def test_quality_puts_the_collapsed_runs_beside_the_runs_kept(tmp_path):
    rows = _confirm(REFERENCE)
    rows[6] = gan_row(106, 40.0, number=6, collapsed=1)
    rows[6]["metrics"] |= {"test/classes": 5.0, "test/recall": 0.3}  # few classes
    rows[7] = gan_row(107, 50.0, number=7, collapsed=1)
    rows[7]["metrics"] |= {"test/classes": 4.0, "test/recall": 0.004}  # both criteria
    text = _text(quality, write_parts(tmp_path / "gan", {"confirm_g_relu": rows}), tmp_path)
    # collapsed: classes 5 and 4, recall 0.3 and 0.004, FID 40 and 50; kept: 9 classes, recall 0.5
    kept = statistics.median(REFERENCE[:6])
    assert "| configuration | runs | collapsed | few classes | no recall | classes covered: collapsed / kept |" in text
    assert f"| g_relu | 8 | 2 | 2 | 1 | 4.5 / 9.0 | 0.152 / 0.500 | 45.00 / {kept:.2f} |" in text
    # a configuration without a collapsed run gets no table
    assert "Where the collapse flag fell" not in _text(
        quality, write_parts(tmp_path / "other", {"confirm_g_relu": _confirm(REFERENCE)}), tmp_path
    )


def test_quality_names_sgmods_settings_only_for_configurations_with_sgmod_layers(tmp_path):
    activation = {"gamma_init": 1.0, "beta_init": 0.0, "lr": None, "weight_decay": 0.0}
    layers = {"layers": {"generator.body.block0.act": {"gamma": [1.0], "beta": [0.0]}}}

    def runs(learn: bool, sgmod):
        config = {"activation": activation | {"learn_gamma": learn, "learn_beta": learn}}
        return [r | {"config": r["config"] | config} for r in _confirm(REFERENCE, sgmod=sgmod)]

    parts = {"confirm_g_relu": runs(True, None), "confirm_g_sgmod": runs(True, layers)}
    parts["confirm_g_sgmod_fixed"] = runs(False, layers)
    text = _text(quality, write_parts(tmp_path / "gan", parts), tmp_path)
    # every run's config holds the activation group; a ReLU baseline has no gamma/beta to name
    assert "| g_relu | lr 2e-4 | 8 |" in text
    assert "| g_sgmod | lr 2e-4, gamma_init 1, beta_init 0, gamma/beta wd 0 | 8 |" in text
    assert "| g_sgmod_fixed | lr 2e-4, gamma_init 1, beta_init 0, gamma/beta fixed | 8 |" in text


# --- contrasts -----------------------------------------------------------------------------------


def _contrast_record(tmp_path):
    fixed = _confirm([f + 5 for f in REFERENCE])
    fixed[3] = diverged_row(103, number=3)
    return write_parts(
        tmp_path / "gan",
        {
            "confirm_g_relu": _confirm(REFERENCE),
            "confirm_g_sgmod": _confirm(BETTER),
            "confirm_d_sgmod": _confirm(ALIKE),
            "confirm_g_sgmod_fixed": fixed,
            "confirm_g_tanh": _confirm([f + 1 + 0.1 * (i % 3) for i, f in enumerate(REFERENCE)]),
        },
    )


def test_contrasts_are_paired_by_seed_holm_corrected_over_both_metrics_and_judged_lower_is_better(tmp_path):
    data = contrasts.compute(GAN, _contrast_record(tmp_path))
    text = "\n".join(contrasts.render(data, _page(tmp_path)))
    fixed = [f + 5 for i, f in enumerate(REFERENCE) if i != 3]
    kept = [f for i, f in enumerate(BETTER) if i != 3]
    raw = [
        scipy_stats.ttest_rel(BETTER, REFERENCE).pvalue,
        scipy_stats.ttest_rel(ALIKE, REFERENCE).pvalue,
        scipy_stats.ttest_rel(kept, fixed).pvalue,
    ]
    # the study declares 6 primary contrasts on 2 co-primary metrics, one family of 12 tests; KID = FID / 1000
    # gives the KID rows the same p; the 6 tests not run yet count as p = 1 in Holm's correction
    holm = stats.holm([*raw, *raw, *[1.0] * 6])
    assert holm[0] > stats.holm([*raw, 1.0, 1.0, 1.0])[0]  # per metric it would be optimistic
    assert "Holm's correction counts the 12 primary tests declared; the 6 without a p yet count as p = 1" in text
    assert "(12 tests: 6 contrasts x 2 co-primary metrics;" in text
    assert data.tests["test/kid"][0]["p_holm"] == pytest.approx(holm[3])
    difference = np.mean(np.array(BETTER) - np.array(REFERENCE))
    assert (
        f"| Sgmod vs ReLU in G | g_sgmod - g_relu | 8 | 0 | {difference:+.2f} [" in text
        and f"| {holm[0]:.3g} | " in text
        and "| variant better |" in text
    )
    assert data.tests["test/fid"][0]["p_holm"] == pytest.approx(holm[0])
    assert "| Sgmod vs LeakyReLU in D | d_sgmod - g_relu | 8 | 0 |" in text
    assert f"| {holm[1]:.3g} |" in text and "| equivalent within +-2 |" in text
    # the seed where the reference diverged leaves its pair out: 7 pairs, and the verdict says why
    assert "| learnable vs fixed at (1, 0) in G | g_sgmod - g_sgmod_fixed | 7 | 1 |" in text
    assert "only 7 pairs, the other seeds failed: variant better" in text
    # KID = FID / 1000: g_sgmod better by about 0.003, well within the KID margin 0.05
    assert f"| Sgmod vs ReLU in G | g_sgmod - g_relu | 8 | 0 | {difference / 1000:+.4f} [" in text
    assert "| variant better, but within +-0.05 |" in text
    # a secondary contrast: raw p, not in the correction
    tanh = scipy_stats.ttest_rel([f + 1 + 0.1 * (i % 3) for i, f in enumerate(REFERENCE)], REFERENCE).pvalue
    assert "| tanh vs ReLU in G (secondary) | g_tanh - g_relu | 8 | 0 | +1.09 [" in text
    assert f"| {tanh:.3g} (raw) |" in text and "| reference better, but within +-2 |" in text


def test_failures_are_compared_by_seed_and_the_margins_are_put_beside_the_spread_over_seeds(tmp_path):
    record = _contrast_record(tmp_path)
    text = "\n".join(contrasts.render(contrasts.compute(GAN, record), _page(tmp_path)))
    # one seed failed on the reference side only: the exact sign test over 1 discordant seed, p = 1
    assert "| g_sgmod - g_sgmod_fixed | 8 | 0 | 1 | 0 | 1 | 1 |" in text
    assert "exact McNemar test" in text
    groups = {"g_relu": REFERENCE, "g_sgmod": BETTER, "d_sgmod": ALIKE}
    groups["g_sgmod_fixed"] = [f + 5 for i, f in enumerate(REFERENCE) if i != 3]
    groups["g_tanh"] = [f + 1 + 0.1 * (i % 3) for i, f in enumerate(REFERENCE)]
    squares = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in groups.values())
    sd = math.sqrt(squares / 34)  # 39 runs in 5 configurations
    own = {c: np.std(g, ddof=1) for c, g in groups.items()}
    low, high = min(own, key=own.get), max(own, key=own.get)
    assert low != high and f"{own[low]:.2f}" != f"{own[high]:.2f}"
    assert (
        f"test FID {sd:.2f} (34 degrees of freedom over 5 configurations, their own from {own[low]:.2f} in {low} "
        f"to {own[high]:.2f} in {high};" in text
    )
    assert f"about {sd * 0.5:.2f}" in text  # sd x sqrt(2/8)
    assert "docs/gan_metric_sanity.md" in text and "+-2 in FID and +-0.05 in KID" in text
    assert "Waiting for runs: d_sgmod - d_sgmod_fixed; sn_sgmod - sn_sgmod_fixed;" in text


def test_each_contrast_letters_the_machines_its_pairs_ran_on_as_the_last_section_does(tmp_path):
    first, second = {"cpu": "CPU A", "cpu_count": 2}, {"cpu": "CPU B", "cpu_count": 2}
    reference = _confirm(REFERENCE, machine=first)
    for row in reference[4:]:  # the ReLU baseline's last 4 seeds ran on a second machine
        row["machine"] = second
    parts = {"confirm_g_relu": reference, "confirm_g_sgmod": _confirm(BETTER, machine=first)}
    parts |= {"confirm_g_sgmod_fixed": _confirm(ALIKE, machine=first)}
    record = write_parts(tmp_path / "gan", parts)
    text = "\n".join(contrasts.render(contrasts.compute(GAN, record), _page(tmp_path)))
    assert "| verdict | machines |" in text
    lines = text.splitlines()
    across = next(line for line in lines if line.startswith("| Sgmod vs ReLU in G |"))
    alike = next(line for line in lines if line.startswith("| learnable vs fixed at (1, 0) in G |"))
    assert across.endswith("| A, B |") and alike.endswith("| A |")
    assert "Paired across machines: g_sgmod - g_relu. Machines round differently" in text
    # the letters are the last section's, and the header's
    report = write_report(GAN, record, tmp_path / "g.md")
    assert "the machines: A = CPU A (2 cores); B = CPU B (2 cores)." in report
    assert "\nMachines: A = CPU A (2 cores); B = CPU B (2 cores). The last section says which" in report


# --- the whole report ----------------------------------------------------------------------------


def test_a_gan_report_with_nothing_run_says_so_in_every_section(tmp_path):
    text = write_report(GAN, Record(tmp_path / "study" / "gan"), tmp_path / "gan.md")
    assert text.startswith("# The Sgmod GAN study: status and results so far\n")
    assert "Machines: none yet." in text and "; 15 epochs." in text
    assert "## 1. Run length: the DCGAN baseline (grid_g_relu) by epoch\n\nNot run yet" in text
    for title in ("2. Stability", "3. Where gamma", "4. The sweeps", "5. Samples", "6. Sample quality", "7. Contrasts"):
        assert f"## {title}" in text and text.split(f"## {title}")[1].split("\n\n")[1].startswith("Not run yet")
    assert "not measured yet (no configuration has two runs that did not fail)" in text
    assert not (tmp_path / "gan_figures").exists()


def test_the_report_command_writes_the_gan_report_from_a_record_folder(tmp_path, monkeypatch, capsys):
    rows = {"grid_g_relu": _grid(), "confirm_g_relu": _confirm(REFERENCE), "confirm_g_sgmod": _confirm(BETTER)}
    write_parts(tmp_path / "records" / "gan", rows)
    (tmp_path / "repo").mkdir()
    code, out, _ = study_cli(
        ["report", "gan", "--record", str(tmp_path / "records")], tmp_path / "repo", monkeypatch, capsys
    )
    assert code == 0 and out.strip() == f"written: {tmp_path / 'records' / 'gan.md'}"
    text = (tmp_path / "records" / "gan.md").read_text()
    assert "## 2. Stability over the learning rate" in text and "| **g_relu** | all | 6 | 1 | 1 |" in text
    assert "| Sgmod vs ReLU in G | g_sgmod - g_relu | 8 | 0 |" in text
    assert (tmp_path / "records" / "gan_figures" / "stability.png").is_file()


TORCH_FREE = """
import sys
from pathlib import Path
from sgmod_study.study.record import Record
from sgmod_study.study.spec import load_study
from sgmod_study.study.report.document import write_report
from sgmod_study.study.report.outcomes import cell_text
folder = Path(sys.argv[1])
write_report(load_study("gan"), Record(folder / "gan"), folder / "gan.md")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning")))
"""


def test_writing_the_gan_report_imports_no_torch(tmp_path):
    write_parts(tmp_path / "gan", {"grid_g_sgmod": _grid(), "confirm_g_relu": _confirm(REFERENCE)})
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "| g_sgmod | discriminator.body.act1 |" in (tmp_path / "gan.md").read_text()


def test_a_grid_cells_learning_rate_is_written_as_a_person_writes_it_at_any_size():
    lrs = (5e-5, 1.5e-4, 5e-3, 1.5e-2, 0.1)
    assert [cell_text((("optimizer.lr", lr),)) for lr in lrs] == [
        "lr 5e-5",
        "lr 1.5e-4",
        "lr 5e-3",
        "lr 1.5e-2",
        "lr 1e-1",
    ]
    assert cell_text((("activation.gamma_init", 2.5),)) == "gamma_init 2.5"
