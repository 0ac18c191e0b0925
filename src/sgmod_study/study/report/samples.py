"""Section "samples": one sample grid per confirmed configuration, its first seed's final-epoch
grid (copied into the record by its run, a path relative to the part's record folder), copied
beside the report into its figures folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import failure, fmt, label, name, results, seed_of
from sgmod_study.study.spec import Study

PER_ROW = 4  # sample grids side by side


@dataclass
class Sample:
    part: str
    label: str
    seed: int | None
    source: Path
    test: dict[str, float | None]  # its run's test metrics
    failed: str | None = None  # "collapsed" where its final evaluation flagged a collapse


@dataclass
class Samples:
    metrics: tuple[str, ...]
    found: list[Sample] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # parts with no sample grid yet


def compute(study: Study, record: Record) -> Samples:
    data = Samples(study.metrics)
    for part in study.sections["samples"]:
        rows = [r for r in results(record.rows(part)) if r.get("samples")]
        rows = [r for r in rows if (record.part_dir(part) / r["samples"]).is_file()]
        if not rows:
            data.missing.append(part)
            continue
        first = min(rows, key=lambda r: (seed_of(r) is None, seed_of(r) or 0))
        test = {m: (first.get("metrics") or {}).get(m) for m in study.metrics}
        source = record.part_dir(part) / first["samples"]
        data.found.append(Sample(part, label(part), seed_of(first), source, test, failure(first)))
    return data


def render(data: Samples, page: figures.Page) -> list[str]:
    lines = [page.title("samples", "Samples"), ""]
    if not data.found:
        return [*lines, f"Not run yet (no sample grid in parts {', '.join(data.missing)})."]
    lines.append(
        "64 images from each configuration's generator (train mode, as the metrics are measured) after the last "
        "epoch of its first seed's confirmation run, with that run's test metrics (and its failure, where it "
        "failed: the grid shows a failed run as it is)."
    )
    page.figures.mkdir(parents=True, exist_ok=True)
    for s in data.found:
        shutil.copyfile(s.source, page.path(f"samples_{s.label}"))
    for start in range(0, len(data.found), PER_ROW):
        lines += ["", *_table(data.found[start : start + PER_ROW], page)]
    if data.missing:
        lines += ["", f"No sample grid yet: {', '.join(data.missing)}."]
    return lines


def _table(found: list[Sample], page: figures.Page) -> list[str]:
    """A row of sample grids under their configurations' names and metrics."""
    heads = [
        f"{s.label} (seed {s.seed}; "
        + ", ".join(f"{name(m)} {fmt(m, v)}" for m, v in s.test.items())
        + (f"; {s.failed}" if s.failed else "")
        + ")"
        for s in found
    ]
    images = [page.link(f"{s.label} samples", f"samples_{s.label}") for s in found]
    return ["| " + " | ".join(heads) + " |", "|" + "---|" * len(found), "| " + " | ".join(images) + " |"]
