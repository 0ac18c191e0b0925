"""The depth study's cell contrasts and the normalization study's sections (lr_choice,
confirm_table, contrasts) from synthetic records with known values: no training, no torch."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from scipy import stats as scipy_stats

from sgmod_study.study import choose, stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import cell_contrasts, confirm_table, contrasts, figures, lr_choice
from sgmod_study.study.spec import Contrast, load_study

CONF = Path(__file__).resolve().parents[1] / "conf" / "study"
DEPTH = dataclasses.replace(load_study("depth", CONF), margins={"test/acc": (0.01, 0.005)})
NORM = dataclasses.replace(load_study("norm", CONF), margins={"test/acc": (0.005, 0.002)})
SEEDS = range(8)
NOISE = [0.0010, -0.0005, 0.0008, -0.0012, 0.0003, 0.0007, -0.0009, 0.0002]  # per seed, to the variant
CONFIRM_SEEDS = range(100, 108)


def _record(folder: Path, parts: dict) -> Record:
    """A record in ``folder`` holding each part's rows (runs.jsonl only)."""
    for part, rows in parts.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Record(folder)


def _run(params: dict, acc: float | None, number: int, norm=("none", "before"), lr=1e-3, objective=None) -> dict:
    """A finished classifier run (``acc``: its test accuracy), or a diverged one (``acc`` None)."""
    config = {"norm": {"name": norm[0], "placement": norm[1]}, "optimizer": {"lr": lr}, "trainer.max_epochs": 10}
    config["activation"] = {"name": params.get("activation", "sgmod")}
    if acc is None:
        return {
            "number": number,
            "state": "FAIL",
            "status": "diverged",
            "fail_reason": "training diverged: the loss is nan",
            "values": None,
            "params": params,
            "metrics": {},
            "config": config,
        }
    value = acc + 0.01 if objective is None else objective
    return {
        "number": number,
        "state": "COMPLETE",
        "status": "complete",
        "values": [value],
        "params": params,
        "metrics": {"test/acc": acc, "test/loss": 0.3, "val/acc_best": value},
        "config": config,
    }


def _page(tmp_path) -> figures.Page:
    return figures.Page(tmp_path / "figures", {})


def _text(module, study, record, tmp_path) -> str:
    return "\n".join(module.render(module.compute(study, record), _page(tmp_path)))


# --- cell_contrasts (the depth study) -------------------------------------------------------------

# test accuracy by activation and depth on seed s: base + step * s (+ NOISE[s] for sgmod_2tanh)
DEPTH_GRID = {
    ("sgmod_2tanh_fixed", 4): (0.900, 0.001),
    ("sgmod_2tanh", 4): (0.902, 0.001),  # 0.2 points above the fixed one
    ("sgmod_2tanh_fixed", 8): (0.880, 0.001),
    ("sgmod_2tanh", 8): (0.900, 0.001),  # 2 points above: the best Sgmod at depth 8
    ("sgmod_own_lr", 4): (0.950, 0.002),  # the best Sgmod at depth 4
    ("sgmod_own_lr", 8): (0.800, 0.002),
    ("sigmoid", 4): (0.850, 0.0015),
    ("sigmoid", 8): (0.850, 0.0015),
}
DIVERGED = ("sgmod_2tanh", 8, 3)  # (activation, depth, seed)


def _accuracy(activation, depth, seed) -> float:
    base, step = DEPTH_GRID[(activation, depth)]
    return base + step * seed + (NOISE[seed] if activation == "sgmod_2tanh" else 0.0)


def _depth_record(tmp_path) -> Record:
    rows = []
    for (activation, depth), _ in DEPTH_GRID.items():
        for seed in SEEDS:
            acc = None if (activation, depth, seed) == DIVERGED else _accuracy(activation, depth, seed)
            rows.append(_run({"activation": activation, "model.depth": depth, "seed": seed}, acc, len(rows)))
    return _record(tmp_path / "depth", {"none_kaiming": rows})


SGMODS = ("sgmod_own_lr", "sgmod_2tanh")
CELL_CONTRASTS = (
    Contrast(
        "sgmod_2tanh", "sgmod_2tanh_fixed", "learnable vs fixed", part="none_kaiming", by="model.depth", at=(4, 8)
    ),
    Contrast(SGMODS, "sigmoid", "best Sgmod vs sigmoid", part="none_kaiming", by="model.depth", at=(8,)),
    Contrast(
        SGMODS, "sigmoid", "best Sgmod vs sigmoid, all", primary=False, part="none_kaiming", by="model.depth", at=(4, 8)
    ),
    Contrast("sgmod_2tanh", "relu", "learnable vs relu", part="none_kaiming", by="model.depth", at=(4,)),
    Contrast("sgmod_2tanh", "sigmoid", "not run", part="layer_kaiming", by="model.depth", at=(4, 8, 16)),
)


def _depth_study():
    return dataclasses.replace(DEPTH, contrasts={"cell_contrasts": CELL_CONTRASTS})


def _pairs(variant, reference, depth):
    """The accuracies of the seeds where neither side diverged."""
    kept = [s for s in SEEDS if DIVERGED not in ((variant, depth, s), (reference, depth, s))]
    return [_accuracy(variant, depth, s) for s in kept], [_accuracy(reference, depth, s) for s in kept]


def test_cell_contrasts_pair_by_seed_at_each_depth_and_holm_correct_the_primary_rows_only(tmp_path):
    data = cell_contrasts.compute(_depth_study(), _depth_record(tmp_path))
    found = {(r["question"].split(" (")[0], r["at"]): r for r in data.rows}
    # every depth present for the first contrast, only depth 8 (`at`) for the second, both for the secondary
    assert list(found) == [
        ("learnable vs fixed", "depth 4"),
        ("learnable vs fixed", "depth 8"),
        ("best Sgmod vs sigmoid", "depth 8"),
        ("best Sgmod vs sigmoid, all", "depth 4"),
        ("best Sgmod vs sigmoid, all", "depth 8"),
    ]
    tests = {
        ("learnable vs fixed", "depth 4"): _pairs("sgmod_2tanh", "sgmod_2tanh_fixed", 4),
        ("learnable vs fixed", "depth 8"): _pairs("sgmod_2tanh", "sgmod_2tanh_fixed", 8),
        ("best Sgmod vs sigmoid", "depth 8"): _pairs("sgmod_2tanh", "sigmoid", 8),
        ("best Sgmod vs sigmoid, all", "depth 4"): _pairs("sgmod_own_lr", "sigmoid", 4),
        ("best Sgmod vs sigmoid, all", "depth 8"): _pairs("sgmod_2tanh", "sigmoid", 8),
    }
    for key, (variant, reference) in tests.items():
        row = found[key]
        assert row["n"] == len(variant) and math.isclose(row["mean"], np.mean(np.subtract(variant, reference)))
        assert math.isclose(row["p"], scipy_stats.ttest_rel(variant, reference).pvalue, rel_tol=1e-9)
    # the diverged seed of sgmod_2tanh at depth 8 leaves its pair out and is counted
    assert [found[k]["excluded"] for k in tests] == [0, 1, 1, 0, 1]
    assert found[("learnable vs fixed", "depth 8")]["n"] == 7
    assert math.isclose(found[("learnable vs fixed", "depth 4")]["mean"], 0.002 + np.mean(NOISE))
    # Holm over the three primary rows together with the primary cells still waiting, each counted as
    # p = 1: learnable vs relu at depth 4 (no relu runs) and the unrun part's three declared depths;
    # the secondary rows are not corrected
    primary = list(tests)[:3]
    raw = [found[k]["p"] for k in primary]
    holm = stats.holm([*raw, 1.0, 1.0, 1.0, 1.0])
    assert [found[k]["p_holm"] for k in primary] == holm[:3]
    assert math.isclose(min(holm), 7 * min(raw))  # seven primary tests declared, three of them run
    assert data.family == 7
    assert not any("p_holm" in found[k] for k in list(tests)[3:])


def test_a_list_side_is_the_best_member_at_each_cell_and_the_table_says_which(tmp_path):
    text = _text(cell_contrasts, _depth_study(), _depth_record(tmp_path), tmp_path)
    variant, reference = _pairs("sgmod_2tanh", "sgmod_2tanh_fixed", 8)
    difference = 100 * np.mean(np.subtract(variant, reference))
    assert (
        "| learnable vs fixed (none_kaiming) | depth 8 | sgmod_2tanh - sgmod_2tanh_fixed | 7 | 1 | 0 | "
        f"{difference:+.2f} [" in text
    )
    assert "| only 7 pairs, the other seeds failed: different (variant better) |" in text  # 8 seeds, 1 failed
    best = "(best of sgmod_own_lr/sgmod_2tanh)"
    question = "| best Sgmod vs sigmoid, all (none_kaiming) (secondary)"
    assert f"{question} | depth 4 | sgmod_own_lr {best} - sigmoid | 8 | 0 | 0 |" in text
    assert f"{question} | depth 8 | sgmod_2tanh {best} - sigmoid | 7 | 1 | 0 |" in text
    raw = scipy_stats.ttest_rel(*_pairs("sgmod_own_lr", "sigmoid", 4)).pvalue
    assert f"| {raw:.3g} (raw) |" in text
    assert "| TOST p (+-1) | TOST p (+-0.5) | verdict |" in text
    assert "picked after the runs on the same runs it is tested on: its p-value is optimistic" in text
    # at depth 4 the learnable one is 0.2 points above the fixed one on average: within +-0.5 points
    assert "different (variant better), and within +-0.5 points" in text
    assert "Waiting for runs: learnable vs relu (none_kaiming), depth 4: no runs of relu yet; " in text
    assert "not run (layer_kaiming): not run yet." in text


def test_cell_contrasts_letter_the_machines_of_their_pairs_and_name_the_pairs_across_machines(tmp_path):
    record = _depth_record(tmp_path)
    rows = record.rows("none_kaiming")
    for row in rows:  # the seed-0 sgmod_2tanh_fixed run at depth 4 ran on a second machine
        other = (row["params"]["activation"], row["params"]["model.depth"], row["params"]["seed"])
        row["machine"] = (
            {"cpu": "CPU B", "cpu_count": 2}
            if other == ("sgmod_2tanh_fixed", 4, 0)
            else {"cpu": "CPU A", "cpu_count": 2}
        )
    text = _text(cell_contrasts, _depth_study(), _record(tmp_path / "mixed", {"none_kaiming": rows}), tmp_path)
    lines = [line for line in text.splitlines() if line.startswith("| learnable vs fixed (none_kaiming) |")]
    assert [line.rsplit("|", 2)[1].strip() for line in lines] == ["A, B", "A"]  # depth 4, depth 8
    assert "Paired across machines: sgmod_2tanh - sgmod_2tanh_fixed at depth 4. Machines round" in text
    # on one machine: no such paragraph
    assert "Paired across machines" not in _text(cell_contrasts, _depth_study(), record, tmp_path)


def _trained(row: dict, best: float) -> dict:
    """``row`` with a two-epoch training-accuracy curve whose best is ``best``."""
    return row | {"curves": {"train/acc": [[214, 0.1], [429, best]]}}


def test_pairs_where_neither_side_trained_are_counted_and_a_cell_of_only_such_pairs_says_so(tmp_path):
    rows = []
    for seed in SEEDS:
        for activation in ("sgmod_2tanh", "sgmod_2tanh_fixed"):
            # depth 4: both sides at chance on every seed, their best training accuracy 50% (not above)
            rows.append(_trained(_run({"activation": activation, "model.depth": 4, "seed": seed}, 0.1, len(rows)), 0.5))
            # depth 8: seeds 0 and 1 untrainable on both sides; on seed 2 only the variant; seed 3 has no curve
            untrainable = seed < 2 or (seed == 2 and activation == "sgmod_2tanh")
            row = _run({"activation": activation, "model.depth": 8, "seed": seed}, 0.1 if untrainable else 0.9, 0)
            rows.append(row if seed == 3 else _trained(row, 0.3 if untrainable else 0.9 + NOISE[seed]))
    data = cell_contrasts.compute(_depth_study(), _record(tmp_path / "chance", {"none_kaiming": rows}))
    found = {r["at"]: r for r in data.rows if r["question"].startswith("learnable vs fixed")}
    assert (found["depth 4"]["untrainable"], found["depth 8"]["untrainable"]) == (8, 2)
    lines = _text(cell_contrasts, _depth_study(), Record(tmp_path / "chance"), tmp_path).splitlines()
    depth_4, depth_8 = (
        next(x for x in lines if x.startswith(f"| learnable vs fixed (none_kaiming) | depth {d} |")) for d in (4, 8)
    )
    assert "| 8 | 0 | 8 | +0.00 [+0.00, +0.00] |" in depth_4
    assert depth_4.endswith("(neither side trained, in any pair) | A |")
    assert "| 8 | 0 | 2 |" in depth_8 and "neither side trained" not in depth_8


def test_cell_contrasts_with_nothing_run_say_so(tmp_path):
    text = _text(cell_contrasts, _depth_study(), Record(tmp_path / "none"), tmp_path)
    assert "Not run yet (no contrast has runs on both sides at any of its cells)." in text


# --- lr_choice (the normalization study) ----------------------------------------------------------

LRS = (1e-3, 3e-3, 1e-2)
# (activation, lr, seed): (trial number, objective, test accuracy); None: diverged
LR_GRID = {
    ("relu", 1e-3, 0): (0, 0.940, 0.930),
    ("relu", 3e-3, 0): (1, 0.950, 0.945),
    ("relu", 1e-2, 0): (2, 0.980, 0.975),  # the largest lr: flagged
    ("tanh", 1e-3, 0): (3, 0.960, 0.955),  # the smallest: flagged
    ("tanh", 3e-3, 0): (4, 0.950, 0.950),
    ("tanh", 1e-2, 0): (5, None, None),
    ("sigmoid", 1e-3, 0): (9, 0.3098, 0.300),  # tied with 3e-3, which ran first (trial 6): 3e-3 is picked
    ("sigmoid", 3e-3, 0): (6, 0.3098, 0.310),
    ("sigmoid", 1e-2, 0): (7, 0.300, 0.290),
    # sgmod: 1e-2 has the best objective but a diverged seed: the fewest failures first, 3e-3
    ("sgmod", 1e-3, 0): (8, 0.900, 0.890),
    ("sgmod", 3e-3, 0): (10, 0.910, 0.905),
    ("sgmod", 1e-2, 0): (11, 0.990, 0.985),
    ("sgmod", 1e-3, 1): (12, 0.900, 0.890),
    ("sgmod", 3e-3, 1): (13, 0.910, 0.905),
    ("sgmod", 1e-2, 1): (14, None, None),
}


def _lr_rows():
    rows = []
    for (activation, lr, seed), (number, objective, acc) in LR_GRID.items():
        params = {"activation": activation, "optimizer.lr": lr, "seed": seed}
        rows.append(_run(params, acc, number, ("batch", "after"), lr, objective))
    return rows[::-1]  # runs.jsonl in another order than the trials'


def _chosen_by_the_sweeper(activation) -> float:
    """The lr choose.best_cell picks on the same runs as Optuna trials, among the activation's cells."""
    space = {
        "activation": CategoricalDistribution(["relu", "tanh", "sigmoid", "sgmod"]),
        "optimizer.lr": CategoricalDistribution(list(LRS)),
        "seed": CategoricalDistribution([0, 1]),
    }
    trials = []
    for (name, lr, seed), (_, objective, _) in sorted(LR_GRID.items(), key=lambda item: item[1][0]):
        params = {"activation": name, "optimizer.lr": lr, "seed": seed}
        if objective is None:
            trial = optuna.trial.create_trial(
                params=params,
                distributions=space,
                state=optuna.trial.TrialState.FAIL,
                user_attrs={"fail_reason": "training diverged: the loss is nan"},
            )
        else:
            trial = optuna.trial.create_trial(params=params, distributions=space, value=objective)
        trials.append(trial)
    where = (("activation", activation),)
    kept = [t for t in trials if all(t.params.get(k) == v for k, v in where)]
    return dict(choose.best_cell(kept, maximize=True))["optimizer.lr"]


def _lr_record(tmp_path, confirm_parts=None) -> Record:
    return _record(tmp_path / "norm", {"lr_bn_after": _lr_rows(), **(confirm_parts or {})})


def test_lr_choice_picks_the_lr_the_sweeper_picks_failures_first_and_ties_to_the_first_run(tmp_path):
    data = lr_choice.compute(NORM, _lr_record(tmp_path))
    setting = next(s for s in data.settings if s.part == "lr_bn_after")
    picked = {c.activation: c.picked for c in setting.choices}
    assert picked == {a: _chosen_by_the_sweeper(a) for a in ("sigmoid", "sgmod", "tanh", "relu")}
    assert picked == {"sigmoid": 3e-3, "sgmod": 3e-3, "tanh": 1e-3, "relu": 1e-2}
    assert [c.activation for c in setting.choices] == ["sigmoid", "sgmod", "tanh", "relu"]  # the confirm parts' order
    edges = {c.activation: c.edge for c in setting.choices}
    assert edges == {"sigmoid": "", "sgmod": "", "tanh": "smallest", "relu": "largest"}
    assert [c.activation for c in setting.choices if c.tied] == ["sigmoid"]
    sgmod = next(c for c in setting.choices if c.activation == "sgmod").cells[1e-2]
    assert (sgmod.runs, sgmod.failed, sgmod.objective, sgmod.test) == (2, 1, 0.99, 0.985)
    assert data.lrs == list(LRS) and setting.name == "BatchNorm after" and setting.seeds == 2


def test_lr_choice_table_bolds_the_pick_and_flags_the_range_ties_and_a_stale_confirm(tmp_path):
    stale = {"confirm_bn_after_tanh": [_run({"seed": 100}, 0.95, 0, ("batch", "after"), 3e-3)]}
    text = _text(lr_choice, NORM, _lr_record(tmp_path, stale), tmp_path)
    assert "| norm setting | activation | lr 1e-3 | lr 3e-3 | lr 1e-2 | picked lr |" in text
    relu = "| BatchNorm after | relu | 0.9400 / 0.9300 | 0.9500 / 0.9450 | **0.9800 / 0.9750** |"
    assert f"{relu} 1e-2 (the largest tried) |" in text
    assert (
        "| BatchNorm after | tanh | **0.9600 / 0.9550** | 0.9500 / 0.9500 | diverged | 1e-3 (the smallest tried) |"
        in text
    )
    assert (
        "| BatchNorm after | sigmoid | 0.3098 / 0.3000 | **0.3098 / 0.3100** | 0.3000 / 0.2900 | 3e-3 (tie) |" in text
    )
    assert (
        "| BatchNorm after | sgmod | 0.9000 / 0.8900 | **0.9100 / 0.9050** | 0.9900 / 0.9850 (1 of 2 diverged) | 3e-3 |"
        in text
    )
    assert (
        "Picked at the end of the lrs tried: BatchNorm after tanh (smallest); BatchNorm after relu (largest)." in text
    )
    assert "Tied (the same failures and objective at two lrs): BatchNorm after sigmoid;" in text
    assert "Not the lr the grid picks now: confirm_bn_after_tanh trained at lr 3e-3" in text
    assert "Not run yet: lr_none, lr_bn_before, lr_ln_before, lr_ln_after." in text


# --- confirm_table and contrasts (the normalization study) ----------------------------------------

SGMOD = [0.912, 0.915, 0.910, 0.918, 0.913, 0.916, 0.911, 0.914]
SIGMOID = [0.905, 0.909, 0.904, 0.910, 0.907, 0.908, 0.903, 0.906]


def _confirm(accuracies, norm, lr, diverged=()):
    return [
        _run({"seed": s}, None if s in diverged else a, i, norm, lr)
        for i, (s, a) in enumerate(zip(CONFIRM_SEEDS, accuracies, strict=True))
    ]


def _confirm_record(tmp_path) -> Record:
    return _record(
        tmp_path / "norm",
        {
            "confirm_none_sgmod": _confirm(SGMOD, ("none", "before"), 3e-3),
            "confirm_none_sigmoid": _confirm(SIGMOID, ("none", "before"), 1e-3, diverged=(103,)),
            "confirm_bn_after_tanh": _confirm([a + 0.01 for a in SGMOD], ("batch", "after"), 1e-2),
        },
    )


def _interval(values):
    n, mean = len(values), float(np.mean(values))
    half = scipy_stats.t.ppf(0.975, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean, float(np.std(values, ddof=1)), mean - half, mean + half


def test_confirm_table_states_each_norm_setting_and_activation_with_its_lr_and_interval(tmp_path):
    data = confirm_table.compute(NORM, _confirm_record(tmp_path))
    # a norm setting with no runs yet is named from its parts' overrides (norm=batch, placement before by default)
    assert list(data.settings.values()) == [
        "no norm",
        "BatchNorm before",
        "BatchNorm after",
        "LayerNorm before",
        "LayerNorm after",
    ]
    assert data.activations == ["sigmoid", "sgmod", "tanh", "relu"]
    sgmod = data.entry("lr_none", "sgmod")
    assert (sgmod.finished, sgmod.diverged, sgmod.lrs) == (8, 0, [3e-3])
    assert np.allclose((sgmod.mean, sgmod.sd, sgmod.low, sgmod.high), _interval(SGMOD))
    text = "\n".join(confirm_table.render(data, _page(tmp_path)))
    mean, sd, low, high = _interval([a for i, a in enumerate(SIGMOID) if i != 3])
    assert "| norm setting | sigmoid | sgmod | tanh | relu |" in text
    assert f"| no norm | {mean:.4f} [{low:.4f}, {high:.4f}] <sub>lr 1e-3, 7 of 8 runs</sub> | " in text
    assert (
        f"| confirm_none_sigmoid | no norm | sigmoid | 1e-3 | 7 of 8 | 1 | {mean:.4f} | {sd:.4f} | [{low:.4f}, " in text
    )
    mean, _, low, high = _interval([a + 0.01 for a in SGMOD])
    cell = f"{mean:.4f} [{low:.4f}, {high:.4f}] <sub>lr 1e-2</sub>"
    assert f"| BatchNorm after | not run yet | not run yet | {cell} | not run yet |" in text
    assert "| confirm_ln_after_relu | LayerNorm after | relu | - | 0 of 8 | 0 | - | - | - |" in text
    assert "![confirm_table](figures/confirm_table.png)" in text
    assert (tmp_path / "figures" / "confirm_table.png").stat().st_size > 5000


def test_norm_contrasts_write_accuracy_to_four_decimals_with_both_margins_and_no_fid_floor(tmp_path):
    text = _text(contrasts, NORM, _confirm_record(tmp_path), tmp_path)
    kept = [i for i in range(8) if i != 3]
    difference = np.mean([SGMOD[i] - SIGMOID[i] for i in kept])
    assert f"| learnable vs fixed at (1, 0), no norm | none_sgmod - none_sigmoid | 7 | 1 | {difference:+.4f} [" in text
    assert "| TOST p (+-0.005) | TOST p (+-0.002) | verdict |" in text
    assert "**test accuracy** (`test/acc`; equivalence margin +-0.005; also +-0.002):" in text
    margins = text.split("Margins: ")[1]
    assert "FID" not in margins and "gan" not in margins and "floor" in margins  # "has no measured floor"
    assert "set in conf/study/norm.yaml before the runs; also reported: +-0.002 in accuracy" in margins
    assert "(diverged or collapsed)" not in text and "either side failed (diverged)" in text
