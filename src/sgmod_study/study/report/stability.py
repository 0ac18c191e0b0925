"""Section "stability": each configuration of the stability grid at each learning rate: how many of
its runs failed (diverged, or a collapse flagged by the final test evaluation), that share with an
exact Clopper-Pearson interval, and the final test metrics over the runs that did not fail; a total
row per configuration; the learning rate each configuration's confirmation retrains, flagged where it
is the largest or smallest tried (a better one may lie beyond); which criterion flagged the collapsed
runs and what they scored; and the test FID against the learning rate in a figure."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import (
    COLLAPSE,
    DIVERGED,
    best_cell,
    cell_text,
    cell_x,
    cells,
    edge,
    failure,
    good,
    label,
    mean_cell,
    name,
    progress,
    results,
    values,
)
from sgmod_study.study.report.rows import table_head
from sgmod_study.study.spec import Study
from sgmod_study.tasks.gan_collapse import (
    COLLAPSE_MAX_CLASSES,
    COLLAPSE_MIN_RECALL,
    COVERED_SHARE,
    FEW_CLASSES,
    NO_RECALL,
    collapse_reasons,
)

FLAG_METRICS = ("test/classes", "test/recall", "test/fid")  # what the flagged runs' table gives
FLAG_DIGITS = (1, 3, 2)  # their digits there


@dataclass
class Cell:
    label: str  # "lr 2e-4", or "all" for a configuration's total
    x: float | None  # its learning rate on the figure
    runs: int  # with a result
    diverged: int
    collapsed: int
    low: float  # the failed share's 95% interval
    high: float
    metrics: dict[str, list[float]]  # {test metric: its values over the runs that did not fail}
    reasons: list[tuple[str, ...]] = field(default_factory=list)  # each collapsed run's criteria
    flagged: dict[str, list[float]] = field(default_factory=dict)  # {FLAG_METRICS: the collapsed runs' values}

    @property
    def failed(self) -> int:
        return self.diverged + self.collapsed


@dataclass
class Configuration:
    part: str
    label: str  # grid_g_sgmod -> g_sgmod
    planned: int
    progress: str
    cells: list[Cell] = field(default_factory=list)
    total: Cell | None = None
    picked: str = ""  # the label of the cell its confirmation retrains
    edge: str = ""  # "largest" or "smallest": the picked lr is at the end of the lrs tried


@dataclass
class Stability:
    metrics: tuple[str, ...]
    configurations: list[Configuration]


def compute(study: Study, record: Record) -> Stability:
    found = []
    for part in study.sections["stability"]:
        rows = record.rows(part)
        planned = study.parts[part].trials
        configuration = Configuration(part, label(part), planned, progress(rows, planned))
        configuration.cells = [cell(cell_text(k), cell_x(k), runs, study.metrics) for k, runs in cells(rows).items()]
        if configuration.cells:
            configuration.total = cell("all", None, results(rows), study.metrics)
            picked = best_cell(rows, study.maximize)  # the cell a best_cell confirm part retrains
            configuration.picked = cell_text(picked)
            configuration.edge = edge(cell_x(picked), [c.x for c in configuration.cells if c.x is not None])
        found.append(configuration)
    return Stability(study.metrics, found)


def cell(label: str, x: float | None, runs: Sequence[Mapping], metrics: Sequence[str]) -> Cell:
    outcomes = [failure(r) for r in runs]
    diverged, collapsed = outcomes.count(DIVERGED), outcomes.count(COLLAPSE)
    low, high = stats.clopper_pearson(diverged + collapsed, len(runs))
    kept = good(runs)
    found = Cell(label, x, len(runs), diverged, collapsed, low, high, {m: values(kept, m) for m in metrics})
    found.reasons, found.flagged = flagged(runs)
    return found


def flagged(runs: Sequence[Mapping]) -> tuple[list[tuple[str, ...]], dict[str, list[float]]]:
    """Each collapsed run's criteria, and the collapsed runs' values of FLAG_METRICS."""
    collapsed = [r for r in runs if failure(r) == COLLAPSE]
    reasons = [collapse_reasons(*(r["metrics"].get(k, 0.0) for k in FLAG_METRICS[:2])) for r in collapsed]
    return reasons, {m: values(collapsed, m) for m in FLAG_METRICS}


def render(data: Stability, page: figures.Page) -> list[str]:
    lines = [page.title("stability", "Stability over the learning rate"), ""]
    ran = [c for c in data.configurations if c.cells]
    if not ran:
        return [*lines, f"Not run yet (no finished run in parts {', '.join(c.part for c in data.configurations)})."]
    lines += [
        "Each configuration at each learning rate over its seeds. A run fails when its training diverged (the "
        "run stopped) or when its final test evaluation flagged a collapse; the failed share has an exact "
        f"(Clopper-Pearson) 95% interval. The test {' and '.join(name(m) for m in data.metrics)} are the means "
        "[95% CI] over the runs that did not fail. A configuration's total row counts its failures only: a mean "
        "over the learning rates would leave out the failed runs, and so favour the configurations that fail more. "
        "`*`: the learning rate the configuration's confirmation retrains (the fewest runs failed in validation, "
        "then the best mean validation objective, as the sweeper picks it).",
        "",
        _header(data.metrics),
        "|" + "---|" * (6 + len(data.metrics)),
    ]
    for c in ran:
        lines += [_line(c.label, cell, data.metrics, picked=cell.label == c.picked) for cell in c.cells]
        lines.append(_line(f"**{c.label}**", c.total, data.metrics, total=True))
    unfinished = [f"{c.part} {c.progress}" for c in data.configurations if not c.cells or c.total.runs < c.planned]
    if unfinished:
        lines += ["", f"Runs so far: {'; '.join(unfinished)}."]
    return lines + _edge_lines(ran) + _flagged_lines(ran) + _figure(ran, data.metrics[0], page)


def _edge_lines(configurations: Sequence[Configuration]) -> list[str]:
    edges = [f"{c.label} ({c.picked}, the {c.edge} tried)" for c in configurations if c.edge]
    if not edges:
        return []
    return [
        "",
        f"Picked at the end of the learning rates tried: {'; '.join(edges)}. A better learning rate may lie "
        "beyond the grid, so that configuration's confirmation, and the contrasts it is in, may understate it.",
    ]


def _flagged_lines(configurations: Sequence[Configuration]) -> list[str]:
    """Which criterion flagged the collapsed runs of each cell, and their medians."""
    found = [(c.label, at) for c in configurations for at in c.cells if at.collapsed]
    if not found:
        return []
    lines = [
        "",
        f"Why the collapsed runs were flagged: {FEW_CLASSES} (at most {COLLAPSE_MAX_CLASSES} of the 10 classes "
        f"hold {COVERED_SHARE:.0%} of the generated images each) or {NO_RECALL} (recall below {COLLAPSE_MIN_RECALL}: "
        "hardly any real image has a generated one nearby), and their final test values, median over the flagged "
        "runs. Few classes with some recall is a generator that leaves out kinds of garment; no recall, one whose "
        "images lie far from the real ones (repeated images, or a generator that has not learned yet).",
        "",
        *table_head(
            ["configuration", "setting", "collapsed", FEW_CLASSES, NO_RECALL, "classes covered", "recall", "test FID"]
        ),
    ]
    for configuration, at in found:
        counts = reason_counts(at.reasons)
        medians = [median(at.flagged[m], digits) for m, digits in zip(FLAG_METRICS, FLAG_DIGITS, strict=True)]
        lines.append(f"| {configuration} | {at.label} | {at.collapsed} | " + " | ".join(counts + medians) + " |")
    return lines


def reason_counts(reasons: Sequence[tuple[str, ...]]) -> list[str]:
    """How many of the collapsed runs each criterion flagged: few classes, then no recall."""
    return [str(sum(reason in r for r in reasons)) for reason in (FEW_CLASSES, NO_RECALL)]


def median(found: Sequence[float], digits: int) -> str:
    return f"{statistics.median(found):.{digits}f}" if found else "-"


def _header(metrics: Sequence[str]) -> str:
    columns = ["configuration", "setting", "runs", "diverged", "collapsed", "failed [95% CI]"]
    return "| " + " | ".join([*columns, *(f"test {name(m)} [95% CI]" for m in metrics)]) + " |"


def _line(label: str, cell: Cell, metrics: Sequence[str], total: bool = False, picked: bool = False) -> str:
    share = f"{cell.failed}/{cell.runs} = {cell.failed / cell.runs:.2f} [{cell.low:.2f}, {cell.high:.2f}]"
    found = ["-" if total else mean_cell(m, cell.metrics[m]) for m in metrics]
    setting = f"{cell.label}*" if picked else cell.label
    return f"| {label} | {setting} | {cell.runs} | {cell.diverged} | {cell.collapsed} | {share} | " + (
        " | ".join(found) + " |"
    )


def _figure(configurations: Sequence[Configuration], metric: str, page: figures.Page) -> list[str]:
    series = {}
    for c in configurations:
        points = []
        for cell in c.cells:
            if cell.x is not None and cell.metrics[metric]:
                mean, _, low, high = stats.mean_ci(cell.metrics[metric])
                points.append((cell.x, mean, low, high))
        if points:
            series[c.label] = points
    if not series:
        return []
    figures.against_lr(series, f"test {name(metric)} (runs that did not fail)", page.path("stability"))
    return [
        "",
        f"The test {name(metric)} against the learning rate, mean and 95% CI over the runs that did not fail:",
        "",
        page.link(f"test {name(metric)} against the learning rate", "stability"),
    ]
