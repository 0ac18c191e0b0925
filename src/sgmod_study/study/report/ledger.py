"""The report's last section, "What ran": every part of the study as its record has it. Per part:
the runs with a result against the runs it plans, those of them that failed (diverged, or finished
with a collapse flag: the GAN's), the runs that were interrupted, crashed or lost (left without a
result: their parameters run again), the epochs, the seeds, the wall time and the machines. Every report
ends with it, so a study's budget is read from the record, not from a note.

The wall time is the sum of the durations of every run the record holds, the interrupted ones
too: compute spent, where runs side by side each count their own time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sgmod_study.study.record import Record, machine_name
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import failure, results, seed_of
from sgmod_study.study.report.rows import config_value, table_head
from sgmod_study.study.spec import Study

SECTION = "ledger"  # its name among the page's section numbers: after the study's own sections
COLUMNS = (
    "part",
    "kind",
    "runs",
    "failed",
    "interrupted, crashed or lost",
    "epochs",
    "seeds",
    "wall time (h)",
    "machines",
)


@dataclass
class Line:
    """One part's runs as its record has them."""

    part: str
    kind: str
    planned: int
    results: int  # finished, or diverged (never run again)
    failed: int  # of the results: diverged, or finished with a collapse flag
    rerun: int  # interrupted, crashed or lost: run again, or to be (running and queued ones not counted)
    epochs: list[int]
    seeds: list[int]
    hours: float
    machines: list[str]


def compute(study: Study, record: Record) -> list[Line]:
    return [line(name, part.kind, part.trials, record.rows(name)) for name, part in study.parts.items()]


def line(name: str, kind: str, planned: int, rows: Sequence[Mapping]) -> Line:
    done = results(rows)
    epochs = {config_value(r.get("config") or {}, "trainer.max_epochs") for r in done}
    return Line(
        part=name,
        kind=kind,
        planned=planned,
        results=len(done),
        failed=sum(failure(r) is not None for r in done),
        rerun=len(rows) - len(done) - sum(r["state"] in ("RUNNING", "WAITING") for r in rows),
        epochs=sorted(e for e in epochs if e is not None),
        seeds=sorted({s for r in done if (s := seed_of(r)) is not None}),
        hours=sum(float(r.get("duration_s") or 0.0) for r in rows) / 3600,
        machines=sorted({machine_name(r) for r in done}),
    )


def spans(numbers: Iterable[int]) -> str:
    """Sorted integers as runs of consecutive ones: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    found: list[list[int]] = []
    for n in sorted(numbers):
        if found and n == found[-1][1] + 1:
            found[-1][1] = n
        else:
            found.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in found) or "-"


def letters(lines: Sequence[Line]) -> dict[str, str]:
    """{machine name: its letter}: A for the first machine in the parts' order, then B, ..."""
    machines = dict.fromkeys(m for line in lines for m in line.machines)
    return {m: chr(ord("A") + i) for i, m in enumerate(machines)}


def machine_letters(study: Study, record: Record) -> dict[str, str]:
    """The letters this section gives the machines, for the sections that name them too."""
    return letters(compute(study, record))


def lettered(names: Iterable[str], known: Mapping[str, str]) -> str:
    """Machines by their letters ("A, B"); "-" for none."""
    return ", ".join(sorted(known.get(n, "?") for n in set(names))) or "-"


def render(lines: Sequence[Line], page: figures.Page) -> list[str]:
    letters_of = letters(lines)
    text = [
        page.title(SECTION, "What ran"),
        "",
        "Every part as its record has it: runs with a result (finished, or diverged: never run again) of the runs "
        "it plans; of those, the failed ones (diverged, or finished with a collapse flag); runs interrupted, "
        "crashed or lost (ended, but their machine stopped before their run folder was read into the record), left "
        "without a result (their parameters run again, in that session or the part's next); the "
        "epochs and seeds of the runs with a result; the wall time, the sum of every recorded run's duration (runs "
        "side by side each count theirs); and the machines"
        + (": " + "; ".join(f"{letter} = {m}" for m, letter in letters_of.items()) if letters_of else "")
        + ".",
        "",
        *table_head(COLUMNS),
    ]
    for x in lines:
        shown = [x.part, x.kind, f"{x.results} of {x.planned}", str(x.failed), str(x.rerun)]
        shown += [spans(x.epochs), spans(x.seeds), f"{x.hours:.1f}", lettered(x.machines, letters_of)]
        text.append("| " + " | ".join(shown) + " |")
    total = sum(x.results for x in lines), sum(x.planned for x in lines), sum(x.hours for x in lines)
    text += ["", f"In all {total[0]} of {total[1]} runs, {total[2]:.1f} hours of runs."]
    return text
