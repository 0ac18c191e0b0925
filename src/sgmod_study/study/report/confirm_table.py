"""Section "confirm_table": the test accuracy of every norm setting and activation at the network
learning rate its grid picked, over the confirm part's fresh seeds.

Each confirm part retrains one activation (its ``where``) of one lr grid (its ``of``: one norm
setting). Per part: the norm setting and the lr it trained at (both read from its runs' configs),
its runs finished and diverged, and the mean test accuracy of the finished runs with its sd and 95%
t-interval (``stats.mean_ci``). A table of norm settings (rows) by activations (columns), a table
per part, and a figure: the means and intervals per norm setting, a marker per activation. Cells
are unpaired; the paired differences are the contrasts'."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sgmod_study.study import stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import failed, good, lr_text, results, values
from sgmod_study.study.report.rows import config_value, declared_norm, interval_cell, norm_setting, table_head
from sgmod_study.study.spec import Part, Study

METRIC = "test/acc"
LR = "optimizer.lr"
FIGURE = "confirm_table"


@dataclass
class Entry:
    """One confirm part: one norm setting (its grid, ``of``) and activation."""

    part: str
    grid: str  # the lr grid it retrains a cell of: one norm setting
    activation: str
    lrs: list[float]  # the lr its runs trained at (one, unless the grid changed between runs)
    planned: int
    finished: int
    diverged: int
    mean: float = math.nan
    sd: float = math.nan
    low: float = math.nan
    high: float = math.nan


@dataclass
class ConfirmTable:
    entries: list[Entry]
    settings: dict[str, str]  # {grid: its norm setting as the report names it}, in order
    activations: list[str]  # in order

    def entry(self, grid: str, activation: str) -> Entry | None:
        return next((e for e in self.entries if e.grid == grid and e.activation == activation), None)


def compute(study: Study, record: Record) -> ConfirmTable:
    parts = [study.parts[p] for p in study.sections["confirm_table"]]
    rows = {p.name: record.rows(p.name) for p in parts}
    entries = [_entry(p, results(rows[p.name])) for p in parts]
    settings = {}
    for entry in entries:
        if entry.grid not in settings:
            confirmed = [r for e in entries if e.grid == entry.grid for r in rows[e.part]]
            grid = record.rows(entry.grid) if entry.grid in study.parts else []
            declared = declared_norm(study.parts[entry.part].overrides)
            settings[entry.grid] = norm_setting(confirmed) or norm_setting(grid) or declared or entry.grid
    activations = list(dict.fromkeys(e.activation for e in entries))
    return ConfirmTable(entries, settings, activations)


def activation_of(part: Part) -> str:
    """The activation a confirm part retrains: its ``where``'s, else its label."""
    return str(dict(part.where).get("activation", part.label))


def _entry(part: Part, rows: Sequence[Mapping]) -> Entry:
    lrs = sorted({config_value(r.get("config") or {}, LR) for r in rows} - {None})
    found = values(good(rows), METRIC)
    entry = Entry(part.name, part.of or part.name, activation_of(part), lrs, part.trials, len(found), len(failed(rows)))
    if found:
        entry.mean, entry.sd, entry.low, entry.high = stats.mean_ci(found)
    return entry


def render(data: ConfirmTable, page: figures.Page) -> list[str]:
    lines = [page.title("confirm_table", "Test accuracy by norm setting and activation"), ""]
    if not any(e.finished for e in data.entries):
        return [*lines, f"Not run yet (no finished run in any of its {len(data.entries)} confirm parts)."]
    where = f" (section {page.numbers['lr_choice']})" if "lr_choice" in page.numbers else ""
    lines += [
        f"Test accuracy at the network lr each activation got under each norm setting{where}, over its confirm "
        "part's fresh seeds: mean [95% t-interval] of the runs that finished; runs that diverged are left out and "
        "counted below. The lr it trained at in small type. Cells are unpaired: the paired differences are the "
        "contrasts'.",
        "",
        *table_head(["norm setting", *data.activations]),
        *(_matrix_line(data, grid, name) for grid, name in data.settings.items()),
        "",
        "Per confirm part:",
        "",
        *table_head(["part", "norm setting", "activation", "lr", "finished", "diverged", "mean", "sd", "95% CI"]),
        *(_part_line(e, data.settings[e.grid]) for e in data.entries),
    ]
    _figure(data, page)
    return [*lines, "", page.link("confirm_table", FIGURE)]


def _matrix_line(data: ConfirmTable, grid: str, name: str) -> str:
    return "| " + " | ".join([name, *(_matrix_cell(data.entry(grid, a)) for a in data.activations)]) + " |"


def _matrix_cell(entry: Entry | None) -> str:
    if entry is None:
        return "-"
    if not entry.finished:
        return f"{entry.diverged} of {entry.planned} diverged, none finished" if entry.diverged else "not run yet"
    interval = "" if math.isnan(entry.low) else f" [{entry.low:.4f}, {entry.high:.4f}]"
    lr = f"lr {_lrs(entry)}" + (f", {entry.finished} of {entry.planned} runs" if entry.finished < entry.planned else "")
    return f"{entry.mean:.4f}{interval} <sub>{lr}</sub>"


def _lrs(entry: Entry) -> str:
    return " and ".join(lr_text(lr) for lr in entry.lrs) or "-"


def _part_line(entry: Entry, setting: str) -> str:
    mean = "-" if math.isnan(entry.mean) else f"{entry.mean:.4f}"
    sd = "-" if math.isnan(entry.sd) else f"{entry.sd:.4f}"
    cells = [entry.part, setting, entry.activation, _lrs(entry), f"{entry.finished} of {entry.planned}"]
    return "| " + " | ".join([*cells, str(entry.diverged), mean, sd, interval_cell(entry.low, entry.high)]) + " |"


def _figure(data: ConfirmTable, page: figures.Page) -> None:
    groups = {
        name: {a: (e.mean, e.low, e.high) for a in data.activations if (e := data.entry(grid, a)) and e.finished}
        for grid, name in data.settings.items()
    }
    figures.intervals_by_group(groups, "test accuracy", page.path(FIGURE), "mean and 95% CI over the confirm seeds")
