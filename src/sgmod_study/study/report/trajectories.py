"""Section "trajectories": where learnable gamma and beta went during training, per layer, from the
runs' TensorBoard curves (``sgmod/<layer>/gamma``, ``sgmod/<layer>/beta``: each layer's mean over
its channels, every 50 steps). A figure per configuration at its best learning rate (the cell its
confirm part retrains), mean over the seeds; a table of the final values at every learning rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import best_cell, cell_text, cells, good, label, progress
from sgmod_study.study.spec import Study

PREFIX = "sgmod/"
PARAMETERS = ("gamma", "beta")


@dataclass
class Cell:
    label: str  # "lr 2e-4"
    n: int  # runs with curves (that did not fail)
    # {parameter: {layer: (steps, mean over the runs at each step)}}
    series: dict[str, dict[str, tuple[list[int], list[float]]]]

    def final(self, parameter: str, layer: str) -> float | None:
        found = self.series[parameter].get(layer)
        return found[1][-1] if found and found[1] else None


@dataclass
class Trajectory:
    part: str
    label: str
    progress: str
    best: str | None = None  # the best cell's label
    cells: list[Cell] = field(default_factory=list)

    @property
    def layers(self) -> list[str]:
        return sorted({layer for c in self.cells for p in PARAMETERS for layer in c.series[p]})


@dataclass
class Trajectories:
    parts: list[Trajectory]


def compute(study: Study, record: Record) -> Trajectories:
    found = []
    for part in study.sections["trajectories"]:
        rows = record.rows(part)
        trajectory = Trajectory(part, label(part), progress(rows, study.parts[part].trials))
        best = best_cell(rows, study.maximize)
        trajectory.best = cell_text(best) if best is not None else None
        for key, runs in cells(rows).items():
            kept = [r for r in good(runs) if _curves(r)]
            if kept:
                trajectory.cells.append(Cell(cell_text(key), len(kept), mean_series(kept)))
        found.append(trajectory)
    return Trajectories(found)


def _curves(row: Mapping) -> dict[tuple[str, str], list]:
    """{(parameter, layer): [[step, value], ...]} of a run's gamma/beta curves."""
    found = {}
    for tag, points in (row.get("curves") or {}).items():
        layer, _, parameter = tag.removeprefix(PREFIX).rpartition("/")
        if tag.startswith(PREFIX) and parameter in PARAMETERS and layer:
            found[(parameter, layer)] = points
    return found


def mean_series(rows: Sequence[Mapping]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """Per parameter and layer, the mean over ``rows`` at every step any of them logged."""
    at: dict[tuple[str, str], dict[int, list[float]]] = {}
    for row in rows:
        for key, points in _curves(row).items():
            for step, value in points:
                at.setdefault(key, {}).setdefault(int(step), []).append(float(value))
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {p: {} for p in PARAMETERS}
    for (parameter, layer), steps in sorted(at.items()):
        ordered = sorted(steps)
        series[parameter][layer] = (ordered, [sum(steps[s]) / len(steps[s]) for s in ordered])
    return series


def render(data: Trajectories, page: figures.Page) -> list[str]:
    lines = [page.title("trajectories", "Where gamma and beta went"), ""]
    ran = [t for t in data.parts if t.cells]
    if not ran:
        return [*lines, f"Not run yet (no gamma/beta curves in parts {', '.join(t.part for t in data.parts)})."]
    labels = sorted({c.label for t in ran for c in t.cells}, key=_cell_order)
    lines += [
        "Each layer's mean gamma and beta (over its channels) at the end of training, mean over the seeds of the "
        "runs that did not fail, as gamma / beta at each learning rate (`*`: the configuration's best learning "
        "rate, fewest failed runs and then the lowest mean val FID, over all its runs where every one failed: "
        "the one its confirmation retrains):",
        "",
        "| configuration | layer | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for t in ran:
        lines += [_final_line(t, layer, labels) for layer in t.layers]
    waiting = [f"{t.part} {t.progress}" for t in data.parts if not t.cells]
    if waiting:
        lines += ["", f"No curves yet: {'; '.join(waiting)}."]
    for t in ran:
        lines += _figure(t, page)
    return lines


def _cell_order(label: str) -> tuple:
    try:
        return (0, float(label.rsplit(" ", 1)[-1]))
    except ValueError:
        return (1, label)


def _final_line(t: Trajectory, layer: str, labels: Sequence[str]) -> str:
    by_label = {c.label: c for c in t.cells}
    found = []
    for column in labels:
        c = by_label.get(column)
        gamma, beta = (c.final("gamma", layer), c.final("beta", layer)) if c else (None, None)
        text = "-" if gamma is None and beta is None else f"{_value(gamma)} / {_value(beta)}"
        found.append(f"{text}{'*' if column == t.best and c else ''}")
    return f"| {t.label} | {layer} | " + " | ".join(found) + " |"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _figure(t: Trajectory, page: figures.Page) -> list[str]:
    shown = next((c for c in t.cells if c.label == t.best), t.cells[0])
    name = f"trajectories_{t.label}"
    panels = {p: shown.series[p] for p in PARAMETERS if shown.series[p]}
    over = "one seed" if shown.n == 1 else f"mean over {shown.n} seeds"
    figures.line_panels(panels, "step", page.path(name), f"{t.label} at {shown.label}: {over}")
    return [
        "",
        f"{t.label} at {shown.label} ({over}):",
        "",
        page.link(f"{t.label} gamma/beta", name),
    ]
