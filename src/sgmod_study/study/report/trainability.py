"""Section "trainability": for each part, each activation at each depth over its seeds: how many runs
trained (their best training accuracy over the epochs above TRAINABLE), the median number of epochs
to a training accuracy of THRESHOLD, and the mean test accuracy with its 95% t-interval; and the
mean test accuracy against the depth in a figure (a panel per part).

Read from each run's row: ``curves["train/acc"]`` (one point per epoch) and ``metrics["test/acc"]``.
A diverged run counts as a run that did not train and never reached the threshold; it has no test
accuracy. Runs that crashed (to be run again) are not counted."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.record import Record, is_diverged
from sgmod_study.study.report import figures
from sgmod_study.study.report.depth_grid import (
    TRAIN_ACC,
    GridPart,
    budget,
    color,
    curve,
    depths,
    grid,
    marker,
    parts_lines,
    read_part,
    so_far,
    steps_per_epoch,
    waiting,
)
from sgmod_study.study.report.outcomes import results
from sgmod_study.study.report.rows import epochs, table_head
from sgmod_study.study.spec import Study

TRAINABLE = 0.5  # a run trained when its best training accuracy over its epochs is above this
THRESHOLD = 0.85  # the training accuracy whose first epoch the table gives
METRIC = "test/acc"


@dataclass
class Cell:
    """One activation at one depth, over its seeds."""

    runs: int  # with a result (finished or diverged)
    trainable: int
    reached: list[int | None]  # each run's first epoch at THRESHOLD; None: not within its budget
    budget: int  # the epochs a run trains
    test: list[float]  # the finished runs' test accuracy

    def median_epochs(self) -> float | None:
        """The median of ``reached``, a run that never reached THRESHOLD ranked above every run that
        did; None where the median falls among those."""
        ranked = sorted(math.inf if e is None else e for e in self.reached)
        if not ranked or math.isinf(ranked[len(ranked) // 2]):
            return None
        return (ranked[(len(ranked) - 1) // 2] + ranked[len(ranked) // 2]) / 2

    def test_mean(self) -> tuple[float, float]:
        """The mean test accuracy and its 95% interval's half-width (nan for fewer than 2 runs)."""
        if not self.test:
            return math.nan, math.nan
        mean, _, low, high = stats.mean_ci(self.test)
        return mean, (high - low) / 2


@dataclass
class Part(GridPart):
    cells: dict[str, dict[int, Cell]] = field(default_factory=dict)  # {activation: {depth: cell}}


@dataclass
class Trainability:
    parts: list[Part]
    epochs: str  # the runs' training length: "10"
    steps: int | None  # optimizer steps per epoch


def compute(study: Study, record: Record) -> Trainability:
    found, every = [], []
    for name in study.sections["trainability"]:
        about, rows = read_part(study, record, name)
        every += results(rows)
        cells = {a: {d: cell(runs) for d, runs in by_depth.items()} for a, by_depth in grid(rows).items()}
        found.append(Part(**vars(about), cells=cells))
    return Trainability(found, epochs(every), steps_per_epoch(every))


def cell(runs: Sequence[Mapping]) -> Cell:
    finished = [r for r in runs if not is_diverged(r)]
    return Cell(
        runs=len(runs),
        trainable=sum(is_trainable(r) for r in runs),
        reached=[None if is_diverged(r) else first_epoch_at(r, THRESHOLD) for r in runs],
        budget=max(budget(r) for r in runs),
        test=[float(r["metrics"][METRIC]) for r in finished if (r.get("metrics") or {}).get(METRIC) is not None],
    )


def best_train_accuracy(row: Mapping) -> float | None:
    accuracies = [acc for _, acc in curve(row, TRAIN_ACC)]
    return max(accuracies) if accuracies else None


def is_trainable(row: Mapping) -> bool:
    best = best_train_accuracy(row)
    return not is_diverged(row) and best is not None and best > TRAINABLE


def first_epoch_at(row: Mapping, threshold: float) -> int | None:
    """The first epoch (1, 2, ...) whose training accuracy is at least ``threshold``; None if none."""
    return next((epoch for epoch, (_, acc) in enumerate(curve(row, TRAIN_ACC), 1) if acc >= threshold), None)


def render(data: Trainability, page: figures.Page) -> list[str]:
    lines = [page.title("trainability", "Trainability by depth"), ""]
    ran = [p for p in data.parts if p.cells]
    if not ran:
        return [*lines, waiting([p.name for p in data.parts])]
    steps = f" of {data.steps} optimizer steps each" if data.steps else ""
    lines += [
        f"Every run trains for {data.epochs} epochs{steps}. Each cell, over the seeds of one activation at one "
        'depth, reads "trainable / runs · epochs to the threshold · test accuracy":',
        "",
        f"- trainable: the runs whose best training accuracy over their epochs (each epoch's accuracy over its "
        f"training batches) is above {TRAINABLE:.0%}; a diverged run is not trainable;",
        f"- epochs to the threshold: the median number of epochs to a training accuracy of {THRESHOLD:.0%} or more. "
        "A run that never reached it (a diverged run among them) ranks above every run that did; the cell shows "
        '">E" where the median falls among those (E: the epochs a run trains);',
        "- test accuracy: the mean ± the half-width of its 95% t-interval over the finished runs, each tested at "
        "its best epoch by validation accuracy; their number in brackets where it is fewer than the runs (a diverged "
        "run has none).",
    ]
    return lines + parts_lines(data.parts, _part_lines) + _figure(data, page)


def _part_lines(part: Part) -> list[str]:
    if not part.cells:
        return ["Not run yet."]
    shown = depths(part.cells)
    lines = so_far(part) + table_head(["activation", *(f"depth {d}" for d in shown)])
    for activation, by_depth in part.cells.items():
        found = [cell_text(by_depth[d]) if d in by_depth else "-" for d in shown]
        lines.append(f"| {activation} | " + " | ".join(found) + " |")
    return lines


def cell_text(c: Cell) -> str:
    """ "8/8 · 3 · 0.912 ± 0.004": trainable / runs, median epochs to THRESHOLD, mean test accuracy."""
    median = c.median_epochs()
    reached = f">{c.budget}" if median is None else f"{median:g}"
    return f"{c.trainable}/{c.runs} · {reached} · {_test_text(c)}"


def _test_text(c: Cell) -> str:
    mean, half = c.test_mean()
    if math.isnan(mean):
        return "-"
    text = f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"
    return text if len(c.test) == c.runs else f"{text} ({len(c.test)})"


def _figure(data: Trainability, page: figures.Page) -> list[str]:
    panels = {p.heading.removeprefix("### "): _lines(p) for p in data.parts}
    shown = sorted({d for p in data.parts for d in depths(p.cells)})
    path = page.path("trainability")
    figures.panel_grid(panels, "depth (hidden layers)", "test accuracy", path, log2_x=True, xticks=shown)
    return [
        "",
        "The mean test accuracy against the depth, with its 95% t-interval, over each cell's finished runs:",
        "",
        page.link("test accuracy against the depth", "trainability"),
    ]


def _lines(part: Part) -> list[figures.Line]:
    lines = []
    for i, (activation, by_depth) in enumerate(part.cells.items()):
        shift = 2 ** (0.03 * (i - (len(part.cells) - 1) / 2))  # side by side at each depth, not on top
        points = [(d * shift, *c.test_mean()) for d, c in by_depth.items() if c.test]
        if points:
            x, mean, half = zip(*points, strict=True)
            half = [0.0 if math.isnan(h) else h for h in half]
            lines.append(figures.Line(x, mean, activation, half, color(activation), marker=marker(activation)))
    return lines
