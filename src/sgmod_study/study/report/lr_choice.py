"""Section "lr_choice": which network learning rate each activation got under each norm setting.

Each lr-grid part trains every activation at a few learning rates (``optimizer.lr``). The lr an
activation's confirm part retrains is the grid's best cell among the cells with that activation,
decided as the sweeper decides it (``outcomes.best_cell``, the rule of ``choose.best_cell``): the
fewest failed runs, then the best mean objective (val/acc_best, the rows' first value; over all runs
with a value where every one failed), an exact tie to the cell run first. One table, a row per norm
setting and activation, a column per lr: each cell shows the objective and the test accuracy (which
played no part in the choice), the picked lr in bold. A pick at the grid's largest or smallest lr
is flagged (the range may bind), and so is a confirm part that trained at another lr than the grid
picks now."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import (
    best_cell,
    cell_score,
    cells,
    edge,
    failed,
    failure,
    good,
    lr_text,
    matching,
    mean_of,
    results,
    values,
)
from sgmod_study.study.report.rows import OBJECTIVE, config_value, declared_norm, norm_setting, table_head
from sgmod_study.study.spec import Study

LR = "optimizer.lr"  # the grid parameter picked per activation
ACTIVATION = "activation"
METRIC = "test/acc"


@dataclass
class Cell:
    runs: int
    failed: int
    objective: float  # mean over the runs that did not fail; nan for none
    test: float


@dataclass
class Choice:
    """One activation in one lr grid: its cells by lr and the lr its confirm part retrains."""

    activation: str
    cells: dict[float, Cell]
    picked: float | None
    edge: str = ""  # "largest" or "smallest": the pick is at the end of the lrs tried
    tied: bool = False  # another cell scored the same: the tie went to the cell run first
    confirmed: dict[str, float] = field(default_factory=dict)  # {confirm part: the lr it trained at, if another}


@dataclass
class Setting:
    part: str
    name: str  # the norm setting: "BatchNorm after"
    seeds: int  # distinct seeds in the part's runs
    choices: list[Choice] = field(default_factory=list)


@dataclass
class LrChoice:
    settings: list[Setting]
    lrs: list[float]  # every lr any part tried, ascending

    @property
    def seeds(self) -> list[int]:
        return sorted({s.seeds for s in self.settings if s.choices})


def compute(study: Study, record: Record) -> LrChoice:
    settings = [_setting(part, study, record) for part in study.sections["lr_choice"]]
    lrs = sorted({lr for s in settings for c in s.choices for lr in c.cells})
    return LrChoice(settings, lrs)


def _setting(part: str, study: Study, record: Record) -> Setting:
    rows = results(record.rows(part))
    seeds = len({(r.get("params") or {}).get("seed") for r in rows})
    setting = Setting(part, norm_setting(rows) or declared_norm(study.parts[part].overrides) or part, seeds)
    lrs = sorted({r["params"][LR] for r in rows if LR in (r.get("params") or {})})
    for activation in activations(part, rows, study):
        choice = choose(matching(rows, ((ACTIVATION, activation),)), activation, study.maximize)
        choice.edge = edge(choice.picked, lrs)
        choice.confirmed = _confirmed(part, activation, choice.picked, study, record)
        setting.choices.append(choice)
    return setting


def activations(grid: str, rows: Sequence[Mapping], study: Study) -> list[str]:
    """The grid's activations: those its confirm parts retrain, in their order, then any other."""
    declared = [dict(p.where)[ACTIVATION] for p in study.parts.values() if p.of == grid and ACTIVATION in dict(p.where)]
    ran = sorted({r["params"][ACTIVATION] for r in rows if ACTIVATION in (r.get("params") or {})})
    return [a for a in dict.fromkeys([*declared, *ran]) if a in ran]


def choose(rows: Sequence[Mapping], activation: str, maximize: bool) -> Choice:
    """One activation's cells (``rows``: its runs) and the lr its best cell has."""
    found = {dict(key)[LR]: runs for key, runs in cells(rows).items() if LR in dict(key)}
    picked = best_cell(rows, maximize)
    lr = dict(picked).get(LR) if picked is not None else None
    scores = [cell_score(runs, maximize) for runs in found.values()]
    tied = lr is not None and scores.count(cell_score(found[lr], maximize)) > 1
    return Choice(activation, {k: _cell(runs) for k, runs in sorted(found.items())}, lr, tied=tied)


def _cell(runs: Sequence[Mapping]) -> Cell:
    kept = [r["values"][0] for r in runs if failure(r) is None and r.get("values")]
    return Cell(len(runs), len(failed(runs)), mean_of(kept), mean_of(values(good(runs), METRIC)))


def _confirmed(grid: str, activation: str, picked: float | None, study: Study, record: Record) -> dict[str, float]:
    """The confirm parts of this activation in ``grid`` that trained at another lr than ``picked``."""
    found = {}
    for part in study.parts.values():
        if part.of != grid or dict(part.where).get(ACTIVATION) != activation:
            continue
        trained = {config_value(r.get("config") or {}, LR) for r in results(record.rows(part.name))} - {None}
        if trained - {picked}:
            found[part.name] = min(trained - {picked})
    return found


def render(data: LrChoice, page: figures.Page) -> list[str]:
    lines = [page.title("lr_choice", "The network learning rate of each activation and norm setting"), ""]
    run = [s for s in data.settings if s.choices]
    if not run:
        return [*lines, f"Not run yet (no run in {', '.join(s.part for s in data.settings)})."]
    lines += [
        _intro(data),
        "",
        *table_head(["norm setting", "activation", *(f"lr {lr_text(lr)}" for lr in data.lrs), "picked lr"]),
        *(_line(s, c, data.lrs) for s in run for c in s.choices),
    ]
    lines += _flags(run)
    waiting = [s.part for s in data.settings if not s.choices]
    if waiting:
        lines += ["", f"Not run yet: {', '.join(waiting)}."]
    return lines


def _intro(data: LrChoice) -> str:
    seeds = " or ".join(map(str, data.seeds))
    one = data.seeds == [1]
    per_cell = "one run (one seed)" if one else f"the mean over {seeds} seeds"
    return (
        "Each cell: best validation accuracy (`val/acc_best`, the objective the pick ranks by) / test accuracy "
        f"(`test/acc`, shown only: it played no part in the pick), {per_cell} per cell. **Bold**: the lr picked, "
        "as the confirm parts pick it: among the activation's cells, the fewest failed (diverged) runs, then the "
        f"best mean {OBJECTIVE}." + (" With one seed per cell the ranking of the lrs is that seed's." if one else "")
    )


def _line(setting: Setting, choice: Choice, lrs: Sequence[float]) -> str:
    texts = [_cell_text(choice.cells.get(lr), lr == choice.picked) for lr in lrs]
    picked = "-" if choice.picked is None else lr_text(choice.picked)
    marks = ([f"the {choice.edge} tried"] if choice.edge else []) + (["tie"] if choice.tied else [])
    shown = f"{picked} ({', '.join(marks)})" if marks else picked
    return "| " + " | ".join([setting.name, choice.activation, *texts, shown]) + " |"


def _cell_text(cell: Cell | None, bold: bool) -> str:
    if cell is None:
        return "-"
    if math.isnan(cell.objective):
        text = "diverged" if cell.failed == cell.runs else "-"
    else:
        text = f"{cell.objective:.4f} / {_four(cell.test)}"
        if cell.failed:
            text += f" ({cell.failed} of {cell.runs} diverged)"
    return f"**{text}**" if bold else text


def _four(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _flags(settings: Sequence[Setting]) -> list[str]:
    notes = []
    edges = [f"{s.name} {c.activation} ({c.edge})" for s in settings for c in s.choices if c.edge]
    if edges:
        notes.append(
            f"Picked at the end of the lrs tried: {'; '.join(edges)}. A better lr may lie beyond the range: "
            "the activation's results under that norm setting may understate it."
        )
    ties = [f"{s.name} {c.activation}" for s in settings for c in s.choices if c.tied]
    if ties:
        notes.append(
            f"Tied (the same failures and objective at two lrs): {'; '.join(ties)}; the tie went to the cell run "
            "first, as the sweeper decides it."
        )
    stale = [f"{p} trained at lr {lr_text(lr)}" for s in settings for c in s.choices for p, lr in c.confirmed.items()]
    if stale:
        notes.append(
            f"Not the lr the grid picks now: {'; '.join(stale)} (the grid changed after the confirm part ran)."
        )
    return ["", " ".join(notes)] if notes else []
