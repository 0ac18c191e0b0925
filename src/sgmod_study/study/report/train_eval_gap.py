"""Section "train_eval_gap": why some Sgmod sweep trials fit the training set but validate poorly.

Each part retrains one such trial of the sweep (its ``trial``, same configuration and seed) and
validates every epoch twice: as usual, BatchNorm with its running statistics, and with each
validation batch's own statistics (``val_batch_stats/acc``, the network otherwise unchanged). At the
final epoch a run is read as:

- "running statistics": the batch-statistics validation is within GAP of the training accuracy
  while the usual one is more than GAP below it; the weights generalise, BatchNorm's running
  averages do not describe the activations any more;
- "does not generalise": both validations are more than GAP below the training accuracy;
- "no gap": the usual validation is within GAP of the training accuracy (the trial's gap did not
  recur in this run);
- "did not fit": the rerun's training accuracy stayed below FIT, the sweep trials' own (so it did
  not reproduce them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sgmod_study.study.record import Record, complete
from sgmod_study.study.report import figures
from sgmod_study.study.report.rows import config_value, table_head
from sgmod_study.study.spec import Study

GAP = 0.05  # accuracy below the training accuracy that counts as a gap
FIT = 0.91  # the training accuracy the sweep's trials reached (what selected them)
RUNNING, GENERALISE, NONE, UNFIT = "running statistics", "does not generalise", "no gap", "did not fit"
SHOWN = ("activation.gamma_init", "activation.beta_init", "optimizer.lr")


@dataclass
class Rerun:
    part: str
    trial: int | None
    settings: dict[str, float | None]
    swept: dict[str, float | None]  # the sweep's trial: final train accuracy, best validation accuracy
    final: dict[str, float | None] = field(default_factory=dict)  # train/acc, val/acc, val_batch_stats/acc

    def reading(self) -> str | None:
        train, usual, batch = (self.final.get(k) for k in ("train/acc", "val/acc", "val_batch_stats/acc"))
        if None in (train, usual, batch):
            return None
        if train < FIT:
            return UNFIT
        if usual >= train - GAP:
            return NONE
        return RUNNING if batch >= train - GAP else GENERALISE


@dataclass
class Gap:
    of: str | None
    reruns: list[Rerun] = field(default_factory=list)


def compute(study: Study, record: Record) -> Gap:
    parts = [study.parts[p] for p in study.sections["train_eval_gap"]]
    of = parts[0].of if parts else None
    swept = {row["number"]: row for row in record.rows(of)} if of else {}
    data = Gap(of)
    for part in parts:
        original = swept.get(part.trial, {})
        config = original.get("config") or {}
        rerun = Rerun(part.name, part.trial, {k: config_value(config, k) for k in SHOWN}, _swept(original))
        runs = complete(record.rows(part.name))
        if runs:
            rerun.final = {k: _last(runs[0], k) for k in ("train/acc", "val/acc", "val_batch_stats/acc")}
        data.reruns.append(rerun)
    return data


def _last(row: Mapping, tag: str) -> float | None:
    points = (row.get("curves") or {}).get(tag)
    return float(points[-1][1]) if points else None


def _swept(row: Mapping) -> dict[str, float | None]:
    values = row.get("values")
    return {"train/acc": _last(row, "train/acc"), "val/acc_best": float(values[0]) if values else None}


def render(data: Gap, page: figures.Page) -> list[str]:
    lines = [
        page.title("train_eval_gap", "The train/eval gap"),
        "",
        f"Trials of {data.of} that reached a training accuracy of at least 0.91 but validated far lower, each "
        "retrained as it was (same configuration and seed, on a CPU as the sweep's trials were; the machines "
        "are in What ran) and "
        "validated every epoch with BatchNorm's running statistics (as usual) and with each batch's own statistics. "
        f"Final epoch. Reading: {RUNNING} (batch statistics within {GAP:g} of the training accuracy, the usual "
        f"validation further below), {GENERALISE} (both further below), {NONE} (the usual validation within "
        f"{GAP:g}: the gap did not recur), {UNFIT} (training accuracy below {FIT:g}: the trial not reproduced).",
        "",
        *table_head(
            [
                "trial",
                "gamma_init",
                "beta_init",
                "lr",
                "sweep: train / best val",
                "rerun: train",
                "val",
                "val (batch statistics)",
                "reading",
            ]
        ),
    ]
    lines += [_row(r) for r in data.reruns]
    readings = [r.reading() for r in data.reruns]
    if any(readings):
        counts = {k: readings.count(k) for k in (RUNNING, GENERALISE, NONE, UNFIT)}
        lines += [
            "",
            f"{len([r for r in readings if r])} of {len(readings)} rerun: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + ".",
        ]
    return lines


def _row(r: Rerun) -> str:
    def num(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}g}"

    swept = f"{num(r.swept['train/acc'])} / {num(r.swept['val/acc_best'])}"
    final = [num(r.final.get(k)) for k in ("train/acc", "val/acc", "val_batch_stats/acc")]
    settings = [num(r.settings[k]) for k in SHOWN]
    return "| " + " | ".join([str(r.trial), *settings, swept, *final, r.reading() or "not run yet"]) + " |"
