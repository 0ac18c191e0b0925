"""The study's report (sgmod_study.study.report) from synthetic records with known values: no
training, and no torch on the report's path."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from scipy import stats as scipy_stats

from helpers.records import FIXED, LEARNED  # the learnable Sgmod better on every seed
from helpers.records import row as _row
from sgmod_study.study import stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import confirm, controls, document, figures, importance, paired, sweeps, travel
from sgmod_study.study.report.document import write_report
from sgmod_study.study.spec import Study, load_study, with_activation

EPYC = {"cpu": "AMD EPYC", "cpu_count": 2, "cpu_capability": "AVX512"}
MARGINS = (0.005, 0.002)  # the classifier study's margin and the one also reported


def _on(machine, rows):
    return [{**row, "machine": machine} for row in rows]


def _trial(number, value, params, test=None):
    """A sweep trial's row: its objective (val/acc_best) and searched ``params``."""
    return {
        "number": number,
        "state": "COMPLETE",
        "values": [value],
        "params": dict(params),
        "metrics": {"test/acc": value if test is None else test, "val/acc_best": value},
        "config": {"trainer.max_epochs": 10},
        "machine": {"gpu": "Test GPU"},
    }


def _record(folder: Path, parts: dict) -> Record:
    """A record in ``folder`` holding each part's rows (runs.jsonl only: no journal)."""
    for part, rows in parts.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Record(folder)


def _study() -> Study:
    return load_study("classifier")


def _page(tmp_path, numbers=None) -> figures.Page:
    return figures.Page(tmp_path / "study_figures", numbers or {})


def _controls_record(tmp_path, table):
    rows = [_row(variant, s, a) for variant, values in table.items() for s, a in enumerate(values)]
    return _record(tmp_path / "record", {"controls": rows})


# --- paired differences and verdicts ---------------------------------------------------------


def test_paired_difference_matches_scipy_and_tost_says_equivalent_only_within_the_margin():
    result = paired.compare(dict(enumerate(LEARNED)), dict(enumerate(FIXED)), MARGINS)
    differences = np.array(LEARNED) - np.array(FIXED)
    assert result["mean"] == pytest.approx(differences.mean())
    assert result["p"] == pytest.approx(scipy_stats.ttest_rel(LEARNED, FIXED).pvalue)
    low, high = scipy_stats.t.interval(0.95, 7, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert (result["low"], result["high"]) == (pytest.approx(low), pytest.approx(high))
    # +0.49 points: at the 0.5-point margin, so the equivalence test cannot confirm it
    assert result["p_tost"][0.005] > 0.05
    near = [f + d for f, d in zip(FIXED, [0.001, 0.0, 0.002, -0.001, 0.001, 0.0, 0.002, 0.001], strict=True)]
    assert paired.compare(dict(enumerate(near)), dict(enumerate(FIXED)), MARGINS)["p_tost"][0.005] < 0.001


def test_contrasts_are_holm_corrected_and_the_verdict_follows_the_data(tmp_path):
    table = {"sgmod": LEARNED, "sgmod_fixed": FIXED, "tanh": FIXED}
    data = controls.compute(_study(), _controls_record(tmp_path, table))
    rows = {r["question"]: r for r in data.primary}
    first = rows["learnable vs fixed gamma/beta at (1, 0)"]
    best = rows["the best Sgmod variant vs tanh"]
    assert best["variant"] == "sgmod"  # the best Sgmod variant by mean
    assert first["p_holm"] == pytest.approx(min(1, 2 * first["p"]))  # two contrasts tested
    assert paired.verdict(first) == "different (variant better)"
    few = paired.compare({0: 0.91, 1: 0.92}, {0: 0.90, 1: 0.915}, MARGINS)
    assert paired.verdict({**few, "p_holm": 0.01}).startswith("preliminary (n < 8): different")
    # the margin in the same unit as the differences beside it (percentage points)
    equivalent = {**first, "p_holm": 0.5, "p_tost": {0.005: 0.01, 0.002: 0.3}}
    assert paired.verdict(equivalent) == "equivalent within +-0.5 points"


def test_a_verdict_can_be_different_and_within_the_margin_at_once():
    # 0.22 points below on every seed, give or take 0.02: detectable, and well inside +-0.5 points
    reference = [0.925, 0.927, 0.924, 0.926, 0.928, 0.925, 0.926, 0.927, 0.924, 0.926]
    noise = [0.0002, -0.0001, 0.0001, -0.0002, 0.0, 0.0001, -0.0001, 0.0002, 0.0, -0.0002]
    variant = [r - 0.0022 + e for r, e in zip(reference, noise, strict=True)]
    row = paired.compare(dict(enumerate(variant)), dict(enumerate(reference)), MARGINS)
    paired.correct_holm([row])
    assert row["p_holm"] < 0.05 and row["p_tost"][0.005] < 0.05 and row["p_tost"][0.002] > 0.05
    assert paired.verdict(row) == "different (reference better), and within +-0.5 points"
    # equivalence is named at the tightest margin that holds
    tight = {"n": 10, "mean": 0.0001, "p": 0.9, "p_holm": 0.9, "p_tost": {0.005: 0.001, 0.002: 0.01}}
    assert paired.verdict(tight) == "equivalent within +-0.2 points"
    assert paired.verdict({**tight, "p_tost": {0.005: 0.2, 0.002: 0.6}}) == "inconclusive"


def test_every_paired_table_has_a_tost_column_per_margin(tmp_path):
    table = {"sgmod": LEARNED, "sgmod_fixed": FIXED, "tanh": FIXED}
    lines = controls.render(controls.compute(_study(), _controls_record(tmp_path, table)), _page(tmp_path))
    text = "\n".join(lines)
    assert "| p (Holm) | TOST p (+-0.5) | TOST p (+-0.2) | verdict |" in text
    diffs = np.array(LEARNED) - np.array(FIXED)
    tosts = f"| {stats.tost_p(diffs, 0.005):.3g} | {stats.tost_p(diffs, 0.002):.3g} |"
    assert tosts in text
    assert "within +-0.5 points (the study's equivalence margin) and, in the next column, within +-0.2" in text
    # the secondary contrast gives both too
    assert "TOST p " + f"{stats.tost_p(diffs, 0.005):.3g} (+-0.5 points), " in text


# --- the sections ------------------------------------------------------------------------------


def test_expected_best_of_n_trials():
    values = [0.1, 0.2, 0.3]
    assert stats.expected_best(values, [1])[0] == pytest.approx(0.2)  # one draw: the mean
    assert stats.expected_best(values, [2])[0] == pytest.approx((0.1 * 1 + 0.2 * 3 + 0.3 * 5) / 9)
    assert stats.expected_best(values, [200])[0] == pytest.approx(0.3, abs=1e-6)  # many draws: the best


def test_travel_compares_what_gamma_could_and_did_move_per_layer():
    rows = [_row("sgmod", 0, 0.9, gamma=[1.2, 1.4], could=1.5), _row("sgmod", 1, 0.9, gamma=[1.0, 1.6], could=1.5)]
    rows.append(_row("sgmod_fixed", 0, 0.9, gamma=[1.0, 1.0]))  # fixed: not in the table
    moves = travel.travel(travel.learnable_groups(rows))
    assert set(moves) == {("sgmod", "head.act")}
    m = moves["sgmod", "head.act"]
    assert m["n"] == 2 and m["bound"] == pytest.approx(1.5)
    assert m["moved"] == pytest.approx((0.5 + 0.6) / 2)  # the farthest channel (beta moved 0.5, gamma 0.4 / 0.6)
    assert m["centred"] == pytest.approx(-0.5 + 1.3 / 2) and m["gamma_w"] == pytest.approx(2 * 1.3)


def test_the_report_is_written_from_the_records_alone(tmp_path, monkeypatch):
    rows = [_row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    rows += [_row("sgmod_fixed", s, a) for s, a in enumerate(FIXED)]
    record, study = _record(tmp_path / "study" / "classifier", {"controls": rows}), _study()
    monkeypatch.chdir(tmp_path)  # the repository: the report's paths are relative to it
    text = write_report(study, record)
    assert (tmp_path / "docs" / "report" / "study.md").read_text() == text
    assert "| sgmod | 8 | 0.917" in text and "16 of 72 runs finished" in text  # mean 0.91775
    assert text.startswith("# The Sgmod study: status and results so far\n")  # most parts not run
    assert "from the records in `study/classifier/`" in text
    assert "| learnable vs fixed gamma/beta at (1, 0) | sgmod - sgmod_fixed | 8 | +0.49 [" in text
    assert "Machines: Test GPU." in text
    assert "TOST p: two one-sided tests that the difference lies within +-0.5 points" in text
    for figure in ("controls_test_acc", "gamma_beta_channels"):
        assert (tmp_path / "docs" / "report" / "study_figures" / f"{figure}.png").stat().st_size > 5000, figure
    assert "![channels](study_figures/gamma_beta_channels.png)" in text
    # the parts not run yet say so
    assert "| sweep_sgmod | 0 | - | - | - | - |" in text
    assert "## 5. Tuned against tuned, on fresh seeds\n\nNot run yet (no finished run in part confirm_sgmod" in text
    assert "## 4." not in text  # no sweep journal: no importances
    assert "\n\nScope: the runs are the 2-conv CNN with BatchNorm" in text  # the study's declared scope
    assert "so learnable gamma/beta doing no better than fixed ones was to be expected here." in text


def test_the_scope_paragraph_comes_from_the_study(tmp_path):
    @dataclass(frozen=True)
    class Scoped(Study):
        scope: str = ""

    base = _study()
    scoped = Scoped(**({f.name: getattr(base, f.name) for f in fields(base)} | {"scope": "the 2-conv CNN only."}))
    record = _record(tmp_path / "record", {"controls": [_row("sgmod", 0, 0.9)]})
    lines = document.header(scoped, record, None)
    assert "Scope: the 2-conv CNN only." in lines
    assert lines.index("Scope: the 2-conv CNN only.") < next(i for i, x in enumerate(lines) if x.startswith("Machines"))


def test_importances_find_the_parameter_that_matters_with_an_interval():
    trials = _sweep_trials(40)
    data = _importance()
    space = {"activation.gamma_init", "activation.beta_init", "optimizer.lr", "optimizer.weight_decay"}
    assert set(data.searched) == space
    assert sum(v[0] for v in data.searched.values()) == pytest.approx(1.0)
    for _, low, high in data.searched.values():
        assert 0 <= low <= high <= 1
    # the score depends on |beta|/gamma alone: with that coordinate added it explains most
    assert set(data.with_ratio) == space | {importance.RATIO}
    assert max(data.with_ratio, key=lambda n: data.with_ratio[n][0]) == importance.RATIO
    # PED-ANOVA: the top trials gather in the ratio (and in lr, which _sweep_trials sets there), not in wd
    assert data.ped[importance.RATIO] > 0.2 > data.ped["optimizer.weight_decay"]
    assert data.ratio_left_out == 1  # trial 0 at beta_init = 0
    assert importance.of_trials("sweep_sgmod", trials[:7], seeds=2, rounds=4).searched == {}  # too few trials
    assert importance.render(importance.of_trials("s", trials[:7], 2, 4), _page(Path("."))) == [
        "## What matters in the s sweep",
        "",
        "Fewer than 8 finished trials: no importances yet.",
    ]


def _sweep_trials(n):
    """A sweep whose score falls with |beta|/gamma (and ignores the rest), trial 0 enqueued at
    the defaults (gamma 1, beta 0, lr 1e-3, wd 1e-4); the better trials have lr near 3e-3."""
    space = {
        "activation.gamma_init": FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "optimizer.weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
    }
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(
        {
            "activation.gamma_init": 1.0,
            "activation.beta_init": 0.0,
            "optimizer.lr": 1e-3,
            "optimizer.weight_decay": 1e-4,
        }
    )

    def objective(trial):
        p = {k: trial.suggest_float(k, d.low, d.high, log=d.log) for k, d in space.items()}
        ratio = abs(p["activation.beta_init"]) / p["activation.gamma_init"]
        return 0.93 - 0.01 * min(ratio, 8.0) - (0.0 if trial.number else 0.08)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    trials = study.trials
    for t in sorted(trials, key=lambda t: -t.values[0])[:12]:  # the top quarter and more: lr 3e-3
        t.params["optimizer.lr"] = 3e-3
    return trials


@functools.cache
def _importance(n=40):
    """The importance section's numbers of ``_sweep_trials(n)`` (few forests: fast)."""
    return importance.of_trials("sweep_sgmod", _sweep_trials(n), seeds=2, rounds=4)


def test_no_effect_is_said_with_its_bound_for_an_interval_that_reaches_zero():
    found = {"optimizer.lr": (0.4, 0.05, 0.8), "activation.lr": (0.02, 0.0, 0.2), "a.wd": (0.01, 0.004, 0.31)}
    assert importance.no_effect(found) == [("activation.lr", 0.2), ("a.wd", 0.31)]
    data = importance.Importance("sweep_sgmod", 64, 10, 200, searched=found)
    data.no_effect = importance.no_effect(found)
    text = "\n".join(importance.render(data, _page(Path("."))))
    assert (
        "No effect detected for activation.lr (importance at most 0.20) and a.wd (importance at most 0.31): the "
        "lower end of their 95% interval is below 0.005"
    ) in text
    assert "optimizer.lr (importance at most" not in text
    assert "hardly matter" not in text


def test_failed_trials_are_counted_with_their_beta_gamma_ratio(tmp_path):
    data = _importance()
    f = data.failures
    done = stats.finished(_sweep_trials(40))
    failing = [t for t in done if t.values[0] < 0.90]
    wide = [t for t in failing if abs(t.params["activation.beta_init"]) / t.params["activation.gamma_init"] > 5]
    assert (f.total, f.failing, f.at_ratio) == (40, len(failing), len(wide)) and f.failing > 0
    text = "\n".join(importance.render(data, _page(tmp_path)))
    assert (
        f"{len(failing)} of the 40 trials validate below 0.90, {len(wide)} of them with |beta_init|/gamma_init > 5"
        in text
    )
    assert "| log(\\|beta_init\\|/gamma_init) |" in text  # a | inside a table cell is escaped
    assert (tmp_path / "study_figures" / "sgmod_marginals.png").stat().st_size > 5000


def test_the_recommended_default_names_the_network_parameters_it_moved(tmp_path):
    data = _importance()
    assert ("optimizer.lr", 1e-3, 3e-3) in data.moved
    assert all(not name.startswith("activation.") for name, _, _ in data.moved)
    text = "\n".join(importance.render(data, _page(tmp_path)))
    assert "moves the network's own parameters from where the sweep started (trial 0, enqueued at the defaults)" in text
    assert "optimizer.lr 0.001 -> 0.003" in text
    assert "Nothing in the record yet separates the effect of the gamma/beta init from that of these." in text


def test_the_recommended_confirm_part_says_which_network_parameters_moved(tmp_path):
    start = {"activation.gamma_init": 1.0, "optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-4}
    default = {
        "activation": {"gamma_init": 3.0, "beta_init": -0.5, "learn_gamma": True, "learn_beta": True},
        "optimizer": {"lr": 3e-3, "weight_decay": 1e-4},
    }
    runs = [{**_row("sgmod", 100 + s, a), "config": default} for s, a in enumerate(LEARNED)]
    record = _record(tmp_path, {"sweep_sgmod": [_trial(0, 0.92, start)], "confirm_sgmod_default": runs})
    text = "\n".join(confirm.render(confirm.compute(_study(), record), _page(tmp_path)))
    assert (
        "`sgmod_default` also moves the network's own parameters from where sweep_sgmod started (its trial 0, "
        "the defaults): optimizer.lr 0.001 -> 0.003."
    ) in text
    assert "weight_decay 0.0001 ->" not in text  # not moved


def test_tuned_sgmod_is_compared_with_each_tuned_baseline_on_the_fresh_seeds(tmp_path):
    record = _record(
        tmp_path,
        {
            "confirm_sgmod": [_row("sgmod", s, a, gamma=[1.0 + s / 10, 1.2]) for s, a in enumerate(LEARNED)],
            "confirm_sgmod_default": [{**_row("sgmod", s, a - 0.001), "machine": EPYC} for s, a in enumerate(LEARNED)],
            "confirm_relu": [_row("relu", s, a) for s, a in enumerate(FIXED)],
            "confirm_tanh": [],
        },
    )
    text = "\n".join(confirm.render(confirm.compute(_study(), record), _page(tmp_path, {"travel": 2})))
    assert "| sgmod_default | 8 | 0.9168 |" in text
    # each configuration says where it ran: these two on different machines
    assert "activation.gamma_init=1, activation.beta_init=0 | AMD EPYC (2 cores, AVX512) |" in text
    assert "| relu | 8 | 0.9129 | [0.9112, 0.9146] |" in text and "beta_init=0 | Test GPU |" in text
    # the default is one point below tuned Sgmod on every seed: an exact paired difference of -0.10 (an
    # exact sign test: p = 2 * 0.5**8, the largest of the three p-values, so Holm keeps it; TOST: within both)
    default_row = (
        "| sgmod_default - sgmod | CPU - GPU | 8 | -0.10 [-0.10, -0.10] | 0.00781 | 0 | 0 | "
        "different (reference better), and within +-0.2 points |"
    )
    assert default_row in text
    # against a GPU run: secondary since the confirm contrasts compare one kind of machine (raw p)
    assert "| sgmod_default - relu (secondary) | CPU - GPU | 8 | +0.39 " in text
    expected = stats.paired(dict(enumerate(LEARNED)), dict(enumerate(FIXED)), MARGINS)
    low, high = 100 * expected["low"], 100 * expected["high"]
    assert f"| sgmod - relu (secondary) | GPU - GPU | 8 | +0.49 [{low:+.2f}, {high:+.2f}] | " in text
    assert "did not all run on one kind of machine" in text  # the GPU and the CPU rows
    assert "- tanh |" not in text  # not run yet
    # where tuned Sgmod's gamma/beta ended: gamma 1 + s/10 and 1.2 on seed s, a mean of 1.275 over seeds
    # and channels; beta -0.5 everywhere, so beta + gamma/2 = 0.1375; next-layer norm 2: gamma x w 2.55.
    # The farthest channel moved 0.5 (beta from 0) on seeds 0-5, gamma 0.6 and 0.7 on seeds 6-7: 0.5375.
    assert "| sgmod | head.act | 8 | 1.00 | 0.54 | 1.275 | -0.500 | 0.138 | 2.55 |" in text
    assert "(the columns as in section 2;" in text
    assert "| sgmod_default | head.act |" not in text  # its rows carry no gamma/beta record
    assert (tmp_path / "study_figures" / "gamma_beta_tuned.png").stat().st_size > 5000
    empty = confirm.render(confirm.compute(_study(), _record(tmp_path / "none", {})), _page(tmp_path))
    assert empty[-1].startswith("Not run yet (no finished run in part confirm_sgmod, confirm_sgmod_default")


def test_the_winners_curse_puts_each_sweeps_best_beside_its_fresh_seed_mean(tmp_path):
    fresh = [_trial(100 + s, a, {"seed": 100 + s}) for s, a in enumerate(FIXED)]  # val/acc_best 0.9129 on average
    record = _record(
        tmp_path,
        {
            "sweep_relu": [_trial(0, 0.925, {"optimizer.lr": 1e-3}), _trial(1, 0.930, {"optimizer.lr": 5e-3})],
            "confirm_relu": fresh,
            "confirm_tanh": fresh,  # its sweep has no trial yet: no line
        },
    )
    data = confirm.compute(_study(), record)
    assert [(c.sweep, c.label, c.n) for c in data.curse] == [("sweep_relu", "relu", 8)]
    mean, _, low, high = stats.mean_ci(FIXED)
    text = "\n".join(confirm.render(data, _page(tmp_path)))
    assert (
        "Each sweep's best val/acc_best beside the mean of the same configuration retrained on the fresh seeds" in text
    )
    assert (
        f"| sweep_relu | 0.9300 | relu | 8 | {mean:.4f} [{low:.4f}, {high:.4f}] | {100 * (mean - 0.93):+.2f} |" in text
    )


def test_the_machine_effect_from_the_controls_is_a_pooled_two_sample_estimate(tmp_path):
    cpu = [0.910, 0.914, 0.912]
    gpu = [0.915, 0.913, 0.917, 0.919]
    rows = _on(EPYC, [_row("relu", s, a) for s, a in enumerate(cpu)])
    rows += [_row("relu", 10 + s, a) for s, a in enumerate(gpu)]  # _row runs on "Test GPU"
    # one variant: exactly the pooled (equal-variance) two-sample t interval
    effect = confirm.controls_effect(_study(), _record(tmp_path / "a", {"controls": rows}))
    reference = scipy_stats.ttest_ind(gpu, cpu, equal_var=True).confidence_interval(0.95)
    assert effect["mean"] == pytest.approx(np.mean(gpu) - np.mean(cpu))
    assert (effect["low"], effect["high"]) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert (effect["cells"], effect["runs"]) == (1, 7)
    # a second variant whose GPU runs are 0.004 above its CPU runs, with the same two sizes: the same
    # weight, so the estimate is the plain mean of the two differences (0.004 and 0.00475)
    rows += _on(EPYC, [_row("tanh", s, a - 0.004) for s, a in enumerate(gpu[:3])])
    rows += [_row("tanh", 10 + s, a) for s, a in enumerate(gpu[:3] + [np.mean(gpu[:3])])]
    both = confirm.controls_effect(_study(), _record(tmp_path / "b", {"controls": rows}))
    assert both["mean"] == pytest.approx((0.004 + np.mean(gpu) - np.mean(cpu)) / 2)
    # a variant with one run on a side says nothing about its variance: left out
    one_side = [_row("sigmoid", 0, 0.9), _row("sigmoid", 1, 0.91), *_on(EPYC, [_row("sigmoid", 2, 0.92)])]
    assert confirm.controls_effect(_study(), _record(tmp_path / "c", {"controls": one_side})) is None


def test_a_configuration_retrained_on_a_gpu_and_a_cpu_gives_the_machine_effect_paired_by_seed(tmp_path):
    def runs(variant, lr, accs):
        return [
            {**_row(variant, s, a), "config": {"activation": {"name": variant}, "lr": lr}} for s, a in enumerate(accs)
        ]

    gpu_tanh = [a + 0.002 for a in FIXED]
    parts = {
        "confirm_sgmod": _on(EPYC, runs("sgmod", 1e-3, LEARNED)),
        "confirm_tanh": runs("tanh", 1e-3, gpu_tanh),
        "confirm_tanh_cpu": _on(EPYC, runs("tanh", 1e-3, FIXED)),
        "confirm_relu": runs("relu", 1e-3, FIXED),  # on a GPU, but no CPU twin
        "confirm_sigmoid": _on(EPYC, runs("tanh", 2e-3, FIXED)),  # another configuration: no twin of confirm_tanh
    }
    data = confirm.compute(_study(), _record(tmp_path / "a", parts))
    text = "\n".join(confirm.render(data, _page(tmp_path)))
    assert "- tanh on a GPU minus tanh_cpu, the same configuration and seeds on a CPU (paired, 8 seeds): +0.20" in text
    assert text.count("on a GPU minus") == 1 and "`tanh_cpu` is `tanh` again (its settings and seeds) on a CPU." in text
    assert "| sgmod - tanh (secondary) | CPU - GPU | 8 |" in text and "| sgmod - tanh_cpu | CPU - CPU | 8 |" in text
    assert "from the controls" not in text  # none given
    # the header reads the measured effect: +0.2 points on every seed, an interval away from 0, so the
    # header names a machine effect
    sentence = document.machine_effect_sentence(data, _study())
    assert sentence.startswith("Accuracies from different machines differ by the machine's own effect")
    assert "+0.20 points [+0.20, +0.20] for tanh against tanh_cpu (paired by seed)" in sentence
    # all on one kind of machine: no machine paragraph at all
    same = {name: _on(EPYC, rows) for name, rows in parts.items()}
    alike = confirm.render(confirm.compute(_study(), _record(tmp_path / "b", same)), _page(tmp_path))
    assert "one kind of machine" not in "\n".join(alike)


def test_a_machine_effect_whose_interval_holds_zero_is_consistent_with_non_determinism(tmp_path):
    noise = [0.001, -0.002, 0.0015, -0.001, 0.0005, -0.0005, 0.002, -0.0015]
    gpu = [a + e for a, e in zip(FIXED, noise, strict=True)]
    parts = {
        "confirm_tanh": [{**_row("tanh", s, a), "config": {"lr": 1}} for s, a in enumerate(gpu)],
        "confirm_tanh_cpu": _on(EPYC, [{**_row("tanh", s, a), "config": {"lr": 1}} for s, a in enumerate(FIXED)]),
    }
    data = confirm.compute(_study(), _record(tmp_path, parts))
    sentence = document.machine_effect_sentence(data, _study())
    assert sentence.startswith(
        "Accuracies from different machines are consistent with floating-point "
        "non-determinism alone (GPU convolutions use TF32): the machine's own effect, GPU "
        "minus CPU, measured in section 5, is +0.00 points ["
    )
    assert "differ only by" not in sentence


def test_sweep_travel_states_how_far_gamma_beta_could_and_did_move_over_the_trials(tmp_path):
    rows = [_row("sgmod", 0, 0.90, gamma=[1.5, 0.8], could=0.6), _row("sgmod", 1, 0.91, gamma=[1.1], could=2.3)]
    rows.append({**_row("sgmod", 2, 0.5), "state": "FAIL"})  # not finished: not counted
    moves = travel.sweep_travel(rows)
    # moved: the larger of |gamma - 1| and |beta - 0| = 0.5 in both (beta is -0.5 in _row)
    assert moves == {"n": 2, "could": [0.6, 2.3], "moved": [0.5, 0.5], "enough": 1}
    text = "\n".join(sweeps.render(sweeps.compute(_study(), _record(tmp_path, {"sweep_sgmod": rows})), _page(tmp_path)))
    assert "they could travel 1.45 (median; 0.60 to 2.30) and moved 0.50" in text
    assert "1 of 2 trials allowed the distance 1 from (1, 0)" in text


SGMOD_PARAMS = {
    "activation.gamma_init": 1.0,
    "activation.beta_init": 0.0,
    "activation.lr": 1e-3,
    "activation.weight_decay": 1e-4,
    "optimizer.lr": 1e-3,
    "optimizer.weight_decay": 1e-4,
}
BASELINE_PARAMS = {"optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-4}


def test_sweeps_are_compared_at_the_fewest_trials_any_sweep_has_finished(tmp_path):
    sgmod = [_trial(i, acc, SGMOD_PARAMS) for i, acc in enumerate((0.90, 0.92, 0.94))]
    relu = [_trial(i, acc, BASELINE_PARAMS) for i, acc in enumerate((0.91, 0.93))]
    record = _record(tmp_path, {"sweep_sgmod": sgmod, "sweep_relu": relu})
    text = "\n".join(sweeps.render(sweeps.compute(_study(), record), _page(tmp_path)))
    assert "| expected best of 2 [95% CI] |" in text
    # expected best of 2 draws: (0.90 * 1 + 0.92 * 3 + 0.94 * 5) / 9 for sgmod, (0.91 + 3 * 0.93) / 4 for relu
    assert "| sweep_sgmod | 3 | 0.9400 |" in text and "| 0.9289 [" in text
    assert "| sweep_relu | 2 | 0.9300 |" in text and "| 0.9250 [" in text
    # the intervals come from resampling the trials: inside the observed values, around the estimate
    low, high = map(float, text.split("| 0.9289 [")[1].split("]")[0].split(", "))
    assert 0.90 <= low < 0.9289 < high <= 0.94
    # Sgmod minus relu at 2 trials: 0.9289 - 0.9250 = +0.39 points
    difference = text.split("interval over each sweep's trials]: relu ")[1].split(".\n")[0]
    estimate, bounds = difference.split(" [")
    low, high = map(float, bounds.rstrip("]").split(", "))
    assert estimate == "+0.39" and -4 <= low < 0.39 < high <= 3
    assert "| sweep_tanh | 0 | - | - | - | - |" in text
    assert "The Sgmod sweep runs 64 trials over its six parameters, each baseline 32 over its two." in text
    assert "denser cover" not in text
    assert "Best Sgmod configuration so far: " in text  # 3 of its 64 trials
    complete = [_trial(i, 0.9 + i / 1000, SGMOD_PARAMS) for i in range(64)]
    full = sweeps.render(
        sweeps.compute(_study(), _record(tmp_path / "full", {"sweep_sgmod": complete})), _page(tmp_path)
    )
    assert any(line.startswith("Best Sgmod configuration: ") for line in full)
    assert (tmp_path / "study_figures" / "expected_best.png").stat().st_size > 5000


def test_the_share_of_small_gamma_inits_is_put_beside_the_rest(tmp_path):
    small = [_trial(i, acc, {**SGMOD_PARAMS, "activation.gamma_init": 0.2}) for i, acc in enumerate((0.5, 0.88, 0.91))]
    rest = [
        _trial(3 + i, acc, {**SGMOD_PARAMS, "activation.gamma_init": 2.0})
        for i, acc in enumerate((0.92, 0.93, 0.91, 0.925, 0.915))
    ]
    data = sweeps.compute(_study(), _record(tmp_path, {"sweep_sgmod": small + rest}))
    (g,) = data.small_gamma
    assert (g.total, g.n, g.failing, g.median, g.rest_median) == (8, 3, 2, 0.88, 0.92)
    text = "\n".join(sweeps.render(data, _page(tmp_path)))
    assert (
        "The searched ranges cost sweep_sgmod part of its budget: 3 of its 8 trials (38%) start at "
        "activation.gamma_init < 0.5, and they validate at a median 0.8800 (2 of them below 0.90), the other "
        "5 at 0.9200."
    ) in text
    without = stats.expected_best([r["values"][0] for r in rest], [8])[0]
    assert f"to {without:.4f}" in text


def test_the_best_learnable_sgmod_is_compared_with_the_best_fixed_member_of_the_family(tmp_path):
    worse = [a - 0.004 for a in FIXED]
    table = {
        "sgmod": LEARNED,
        "sgmod_tanh_init": worse,
        "sgmod_fixed": worse,
        "sigmoid": FIXED,  # the best fixed member
        "relu": [a + 0.05 for a in LEARNED],  # not of the family: ignored
    }
    data = controls.compute(_study(), _controls_record(tmp_path, table))
    (row,) = data.secondary
    assert (row["variant"], row["reference"]) == ("sgmod", "sigmoid")
    assert row["mean"] == pytest.approx(np.mean(np.array(LEARNED) - np.array(FIXED)))
    text = "\n".join(controls.render(data, _page(tmp_path)))
    assert "Secondary (both picked after the runs, the best mean of each group, so the p-value is optimistic)" in text
    assert controls.resolve(("sgmod", "sgmod_tanh_init"), {"relu": 0.9}) is None


def test_the_budget_is_read_from_the_rows_and_a_shorter_sweep_is_called_a_cheaper_fidelity(tmp_path):
    from sgmod_study.study.report.rows import epochs

    def run(epochs_, state="COMPLETE"):
        row = _row("sgmod", 0, 0.9)
        return {**row, "state": state, "config": {**row["config"], "trainer.max_epochs": epochs_}}

    assert epochs([run(10), run(3), run(10), run(1, state="FAIL")]) == "3, 10"  # failed runs do not count
    assert epochs([]) == "?"
    same = sweeps.fidelity(
        _study(), _record(tmp_path / "a", {"sweep_sgmod": [run(10)], "controls": [run(10)], "confirm_relu": [run(10)]})
    )
    assert same.startswith(
        "Every sweep trial trains for the full budget (10 epochs, as the controls and the confirmation runs)"
    )
    shorter = sweeps.fidelity(
        _study(), _record(tmp_path / "b", {"sweep_sgmod": [run(3)], "sweep_relu": [run(3)], "confirm_sgmod": [run(10)]})
    )
    assert shorter.startswith("The sweep trials train for 3 epochs, the controls and the confirmation runs for 10")
    assert sweeps.fidelity(_study(), _record(tmp_path / "c", {"controls": [run(10)]})) == ""  # no sweep finished


def test_which_values_work_reads_the_top_quarter_against_the_searched_range():
    space = {
        "activation.gamma_init": FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
    }
    # 12 trials: the top quarter is the 3 best, gamma 1, 4, 9 (geometric median 4), beta -2, -1, 0.5
    top = [(4.0, -1.0, 0.93), (1.0, 0.5, 0.92), (9.0, -2.0, 0.91)]
    rest = [(0.2, 3.0, 0.5 + i / 100) for i in range(9)]
    trials = [
        optuna.trial.create_trial(
            params={"activation.gamma_init": g, "activation.beta_init": b}, distributions=space, value=v
        )
        for g, b, v in top + rest
    ]
    (size, low, high), table = importance.good_values(trials)
    assert (size, low, high) == (3, 0.91, 0.93)
    rows = {v["parameter"]: v for v in table}
    gamma, beta = rows["activation.gamma_init"], rows["activation.beta_init"]
    assert gamma["log"] and (gamma["best"], gamma["min"], gamma["max"], gamma["recommended"]) == (4.0, 1.0, 9.0, 4.0)
    assert gamma["median"] == pytest.approx(4.0)
    assert (beta["best"], beta["median"], beta["min"], beta["max"], beta["recommended"]) == (
        -1.0,
        -1.0,
        -2.0,
        0.5,
        -1.0,
    )
    data = importance.Importance(
        "sweep_sgmod",
        12,
        10,
        200,
        searched={"x": (1.0, 0.5, 1.0)},
        values=table,
        top=(size, low, high),
        confirms=["confirm_sgmod_default"],
    )
    text = "\n".join(importance.render(data, _page(Path("."))))
    assert "the top quarter of the trials (3 of 12, val/acc_best 0.9100 to 0.9300)" in text
    assert "| activation.gamma_init | 0.1 to 10 (log) | 4 | 4 [1, 9] | 4 |" in text
    assert "what `confirm_sgmod_default` retrains on fresh seeds" in text


def test_a_best_value_at_the_edge_of_its_searched_range_is_named():
    distributions = {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
        "norm": optuna.distributions.CategoricalDistribution(["batch", "layer"]),
    }

    def trial(lr, beta):
        params = {"optimizer.lr": lr, "activation.beta_init": beta, "norm": "batch"}
        return optuna.trial.create_trial(params=params, distributions=distributions, value=0.9)

    # 0.00944 is 1.2% of the log range below 1e-2; -4.6 is 4% of the linear range above -5
    assert sweeps.at_edge(trial(0.00944, -4.6)) == [
        "activation.beta_init=-4.6 (searched -5 to 5)",
        "optimizer.lr=0.00944 (searched 0.0001 to 0.01)",
    ]
    # 0.007 is 92% of the way on the log scale and -4.4 6% (both inside), but 0.00012 only 4%: the low edge
    assert sweeps.at_edge(trial(0.007, -4.4)) == []
    assert sweeps.at_edge(trial(0.00012, 0.0)) == ["optimizer.lr=0.00012 (searched 0.0001 to 0.01)"]


def test_the_report_is_titled_results_once_every_part_is_complete(tmp_path):
    study = _study()
    parts = {name: [_row("relu", s, 0.9) for s in range(p.trials)] for name, p in study.parts.items()}
    assert document.is_complete(study, _record(tmp_path / "a", parts))
    parts["confirm_relu"][3] = {**parts["confirm_relu"][3], "state": "FAIL"}  # 9 of 10 finished
    assert not document.is_complete(study, _record(tmp_path / "b", parts))


def test_a_users_activation_gets_its_sweep_and_confirm_sections_against_the_baselines(tmp_path, monkeypatch):
    study = with_activation(_study(), "myact", {})
    mine = [_trial(i, 0.92 + i / 1000, BASELINE_PARAMS) for i in range(4)]
    relu = [_trial(i, 0.91 + i / 1000, BASELINE_PARAMS) for i in range(3)]
    fresh = [{**_row("myact", 100 + s, a), "config": {"lr": 1}} for s, a in enumerate(LEARNED)]
    base = [{**_row("relu", 100 + s, a), "config": {"lr": 2}} for s, a in enumerate(FIXED)]
    record = _record(
        tmp_path / "study" / "classifier",
        {"sweep_myact": mine, "sweep_relu": relu, "confirm_myact": fresh, "confirm_relu": base},
    )
    monkeypatch.chdir(tmp_path)
    text = write_report(study, record)
    assert (tmp_path / "docs" / "report" / "classifier_myact.md").is_file()
    assert (tmp_path / "docs" / "report" / "classifier_myact_figures" / "expected_best.png").is_file()
    assert text.startswith("# The myact study: status and results so far\n")
    assert "`python scripts/study.py report classifier --activation myact`" in text
    assert "## 1. The sweeps" in text and "## 2. Tuned against tuned, on fresh seeds" in text
    # no importance (nothing of its own searched): the ledger comes third
    assert "## 3. What ran" in text and "## 4." not in text and "Controls" not in text
    assert "myact minus each baseline, expected best of 3 trials" in text and "relu +" in text
    assert "| sweep_sgmod | 0 | - | - | - | - |" in text  # a baseline not recorded yet
    assert "| myact - relu | GPU - GPU | 8 | +0.49 [" in text
    assert "| sweep_myact | 0.9230 | myact | 8 |" in text  # the winner's curse of its own sweep
    assert "![expected best](classifier_myact_figures/expected_best.png)" in text


# --- no torch on the report's path ---------------------------------------------------------------

TORCH_FREE = """
import json, sys
from pathlib import Path
from sgmod_study.study.record import Record
from sgmod_study.study.spec import load_study
from sgmod_study.study.report.document import write_report
folder = Path(sys.argv[1])
write_report(load_study("classifier"), Record(folder / "study" / "classifier"), folder / "docs/report/study.md")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "pytorch_lightning")))
"""


def test_writing_the_report_imports_no_torch(tmp_path):
    rows = [_row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    _record(tmp_path / "study" / "classifier", {"controls": rows, "sweep_relu": [_trial(0, 0.9, BASELINE_PARAMS)]})
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", TORCH_FREE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")]
    assert "matplotlib" in imported and not {"torch", "lightning"} & set(imported)
    assert (tmp_path / "docs" / "report" / "study.md").is_file()
