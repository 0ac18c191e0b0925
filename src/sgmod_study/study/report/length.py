"""Section "length": the DCGAN baseline's validation FID and KID against the epoch (from each run's
per-epoch evaluations), the mean over its seeds at each learning rate, and how much that mean still
changed over the last epochs: what justifies the runs' length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import cell_text, cells, failed, fmt, good, name, progress, results, signed
from sgmod_study.study.report.outcomes import validation as val
from sgmod_study.study.spec import Study

LAST = 2  # the change is stated over this many last evaluations


@dataclass
class Curve:
    """The mean over one cell's seeds of each validation metric at each epoch."""

    cell: str  # "lr 2e-4"
    n: int  # its runs that did not fail
    epochs: list[int]
    means: dict[str, list[float]]  # {metric: [mean at each epoch]}

    def change(self, metric: str) -> float | None:
        """The mean's change over the last LAST evaluations (None for a shorter curve)."""
        found = self.means[metric]
        return found[-1] - found[-1 - LAST] if len(found) > LAST else None


@dataclass
class Length:
    part: str
    progress: str  # "12 of 15 runs", "not run yet"
    complete: bool
    metrics: tuple[str, ...]  # the validation metrics: val/fid, val/kid
    margins: dict[str, float]  # {validation metric: the equivalence margin of its test metric}
    left_out: int = 0  # failed runs (diverged or collapsed): not in the means
    curves: list[Curve] = field(default_factory=list)


def compute(study: Study, record: Record) -> Length:
    part = study.sections["length"][0]
    rows = record.rows(part)
    metrics = tuple(val(m) for m in study.metrics)
    data = Length(
        part,
        progress(rows, study.parts[part].trials),
        len(results(rows)) >= study.parts[part].trials,
        metrics,
        {val(m): study.margins[m][0] for m in study.metrics},
        left_out=len(failed(rows)),
    )
    for key, runs in cells(rows).items():
        kept = good(runs)
        if kept:
            data.curves.append(curve(cell_text(key), kept, metrics))
    return data


def curve(label: str, rows: Sequence[Mapping], metrics: Sequence[str]) -> Curve:
    """Means over ``rows`` at every epoch any of them evaluated."""
    at: dict[int, dict[str, list[float]]] = {}
    for row in rows:
        for evaluation in row.get("evaluations") or ():
            for metric in metrics:
                if evaluation.get(metric) is not None:
                    at.setdefault(evaluation["epoch"], {}).setdefault(metric, []).append(evaluation[metric])
    epochs = sorted(e for e in at if all(m in at[e] for m in metrics))
    means = {m: [sum(at[e][m]) / len(at[e][m]) for e in epochs] for m in metrics}
    return Curve(label, len(rows), epochs, means)


def render(data: Length, page: figures.Page) -> list[str]:
    lines = [page.title("length", f"Run length: the DCGAN baseline ({data.part}) by epoch"), ""]
    if not data.curves:
        return [*lines, f"Not run yet (no finished run in part {data.part})."]
    if not data.complete:
        lines += [f"So far {data.progress} of {data.part}.", ""]
    left = ""
    if data.left_out:
        verb = "run (diverged or collapsed) is" if data.left_out == 1 else "runs (diverged or collapsed) are"
        left = f"; {data.left_out} failed {verb} left out"
    lines += [
        f"The validation {' and '.join(name(m) for m in data.metrics)} after each epoch, the mean over the seeds "
        f"of the runs that did not fail at each learning rate{left}.",
        "",
        *_change_lines(data),
    ]
    panels = {m: {c.cell: (c.epochs, c.means[m]) for c in data.curves if len(c.epochs) > 0} for m in data.metrics}
    figures.line_panels(panels, "epoch", page.path("length"), f"{data.part}: mean over seeds")
    return [*lines, "", page.link("validation metrics by epoch", "length")]


def _change_lines(data: Length) -> list[str]:
    lines = []
    for metric in data.metrics:
        changes = [(c, c.change(metric)) for c in data.curves if c.change(metric) is not None]
        if not changes:
            continue
        each = "; ".join(f"{signed(metric, d)} at {c.cell} (to {fmt(metric, c.means[metric][-1])})" for c, d in changes)
        first, final = changes[0][0].epochs[-1 - LAST], changes[0][0].epochs[-1]
        lines.append(
            f"- {name(metric)} changed over the last {final - first} epochs ({first} to {final}) by: {each}. "
            f"For scale: the contrasts' equivalence margin is +-{data.margins[metric]:g}."
        )
    return lines or ["- Too few epochs evaluated yet to say how much the last ones changed."]
