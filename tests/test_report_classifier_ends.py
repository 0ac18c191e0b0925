"""The classifier study's loose ends in its report: the line search above the lr ceiling, the
train/eval gap reruns, and confirm contrasts that are secondary (not in the Holm correction)."""

from __future__ import annotations

import pytest

from helpers.records import CLASSIFIER, write_parts
from sgmod_study.study.report import confirm, figures, line_search, paired, train_eval_gap

CONFIRMED = [0.915, 0.916, 0.914, 0.917, 0.915, 0.916, 0.914, 0.915, 0.916, 0.915]  # mean 0.9153


def _confirm_rows(values, lr=0.003):
    config = {"optimizer": {"lr": lr}}
    return [
        {"number": i, "state": "COMPLETE", "params": {"seed": 100 + i}, "metrics": {"test/acc": v}, "config": config}
        for i, v in enumerate(values)
    ]


def _search_rows(by_lr):
    rows = []
    for lr, values in by_lr.items():
        for seed, value in zip((200, 201), values, strict=True):
            params = {"optimizer.lr": lr, "seed": seed}
            rows.append({"number": len(rows), "state": "COMPLETE", "params": params, "metrics": {"test/acc": value}})
    return rows


def _text(module, record, tmp_path) -> str:
    return "\n".join(module.render(module.compute(CLASSIFIER, record), figures.Page(tmp_path / "f", {})))


def test_a_learning_rate_above_the_confirmed_interval_is_flagged(tmp_path):
    record = write_parts(
        tmp_path,
        {
            "linesearch_sgmod": _search_rows({0.01: [0.914, 0.916], 0.02: [0.921, 0.923], 0.03: [0.90, 0.91]}),
            "confirm_sgmod_default": _confirm_rows(CONFIRMED),
        },
    )
    data = line_search.compute(CLASSIFIER, record)
    sgmod = data.searches[0]
    assert sgmod.reference.n == 10 and sgmod.reference.mean == pytest.approx(0.9153)
    assert sgmod.flagged() == [0.02]  # 0.922 is above the interval's upper end (about 0.916); 0.915 is not
    text = _text(line_search, record, tmp_path)
    assert "| 0.02 | 2 | 0.9220 | 0.9210 0.9230 | above |" in text
    assert "confirm_sgmod_default: lr 0.003, 10 seeds, mean 0.9153" in text
    assert "**linesearch_tanh** (the best tanh configuration at network lr 1e-2, 1.5e-2, 2e-2, 3e-2; 0 of 8" in text
    assert "the ceiling did not bind" not in text  # linesearch_sgmod has 6 of its 8 runs


def test_a_complete_line_search_that_never_beats_its_reference_says_the_ceiling_did_not_bind(tmp_path):
    runs = {lr: [0.910, 0.912] for lr in (0.01, 0.015, 0.02, 0.03)}
    record = write_parts(
        tmp_path, {"linesearch_sgmod": _search_rows(runs), "confirm_sgmod_default": _confirm_rows(CONFIRMED)}
    )
    text = _text(line_search, record, tmp_path)
    assert "No learning rate above the ceiling beat its tuned configuration (linesearch_sgmod)" in text


def _curves(train, val, batch):
    return {"train/acc": [[215, 0.5], [430, train]], "val/acc": [[430, val]], "val_batch_stats/acc": [[430, batch]]}


def test_each_gap_rerun_is_read_from_its_two_validations(tmp_path):
    swept = [
        {
            "number": n,
            "state": "COMPLETE",
            "values": [0.5],
            "params": {},
            "curves": {"train/acc": [[1, 0.93]]},
            "config": {"activation": {"gamma_init": 0.2, "beta_init": 1.0}, "optimizer": {"lr": 0.005}},
        }
        for n in (6, 7, 14, 23, 35, 51, 70)
    ]
    reruns = {
        "gap_6": _curves(0.95, 0.40, 0.93),  # batch statistics recover it: the running statistics
        "gap_7": _curves(0.95, 0.40, 0.45),  # neither validation does
        "gap_14": _curves(0.95, 0.93, 0.94),  # the gap did not recur
        "gap_23": _curves(0.50, 0.20, 0.45),  # the rerun did not fit the training set
    }
    parts = {"sweep_sgmod": swept} | {
        part: [
            {"number": 0, "state": "COMPLETE", "params": {"seed": 42}, "metrics": {"test/acc": 0.5}, "curves": curves}
        ]
        for part, curves in reruns.items()
    }
    data = train_eval_gap.compute(CLASSIFIER, write_parts(tmp_path, parts))
    assert [r.reading() for r in data.reruns] == [
        train_eval_gap.RUNNING,
        train_eval_gap.GENERALISE,
        train_eval_gap.NONE,
        train_eval_gap.UNFIT,
        None,
        None,
        None,
    ]
    assert data.reruns[0].swept == {"train/acc": 0.93, "val/acc_best": 0.5}
    text = _text(train_eval_gap, write_parts(tmp_path, parts), tmp_path)
    assert "| 6 | 0.2 | 1 | 0.005 | 0.93 / 0.5 | 0.95 | 0.4 | 0.93 | running statistics |" in text
    assert "| 35 | 0.2 | 1 | 0.005 | 0.93 / 0.5 | - | - | - | not run yet |" in text
    assert "4 of 7 rerun: running statistics 1, does not generalise 1, no gap 1, did not fit 1." in text


def test_secondary_confirm_contrasts_keep_their_raw_p_out_of_the_holm_correction():
    runs = {
        "confirm_sgmod": _confirm_rows([v + 0.004 for v in CONFIRMED]),
        "confirm_tanh": _confirm_rows(CONFIRMED),  # a GPU reference: secondary
        "confirm_tanh_cpu": _confirm_rows(CONFIRMED),
        "confirm_relu_cpu": _confirm_rows([v + 0.001 for v in CONFIRMED]),
    }
    labels = {name: name.removeprefix("confirm_") for name in runs}
    rows = confirm.contrasts(CLASSIFIER, runs, labels, (0.005, 0.002), paired.family(CLASSIFIER, "confirm"))
    secondary = [r for r in rows if not r["primary"]]
    primary = [r for r in rows if r["primary"]]
    assert [(r["variant"], r["reference"]) for r in secondary] == [("sgmod", "tanh")]
    assert all("p_holm" not in r for r in secondary) and all("p_holm" in r for r in primary if r["n"] >= 2)
    cells = paired.cells(secondary[0], (0.005, 0.002))
    assert cells[2] == f"{paired.p_text(secondary[0]['p'])} (raw)"
