"""Section "cell_contrasts": the study's contrasts between two activations within one grid part,
at each of the values ``at`` of a grid parameter (``by``, e.g. the depth).

At each value, variant minus reference of the study's metric, paired by seed over the part's runs
with that activation and that value (``stats.paired``). A side named by a list is the member with
the best mean of the metric at that value, picked after the runs on the runs tested (its p-value is
optimistic). A seed where either side failed (diverged) has no comparable metric: its pair is left
out and counted (``excluded``). The pairs where neither side trained (``untrainable``) are counted
too: a verdict over only such pairs compares two failures to train, not two that learned. The
p-values of the primary rows of the whole section are Holm-corrected together; a secondary row
keeps its raw p and its verdict uses it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study.record import Record, is_diverged
from sgmod_study.study.report import figures, ledger, paired
from sgmod_study.study.report.contrasts import machine_note, paired_test, pick
from sgmod_study.study.report.outcomes import cell_text, results, seed_of
from sgmod_study.study.report.rows import metric_words, table_head
from sgmod_study.study.report.trainability import TRAINABLE, best_train_accuracy
from sgmod_study.study.spec import Contrast, Study

ACTIVATION = "activation"  # the grid parameter the two sides differ in


@dataclass
class CellContrasts:
    metric: str
    margins: tuple[float, ...]
    rows: list[dict] = field(default_factory=list)  # one per contrast and value of its ``by``
    waiting: list[str] = field(default_factory=list)  # a contrast at a value where a side has no runs yet
    family: int = 0  # the primary tests declared: each primary contrast's ``at`` values
    letters: dict[str, str] = field(default_factory=dict)  # {machine: its letter in the section "What ran"}


def compute(study: Study, record: Record) -> CellContrasts:
    data = CellContrasts(study.metric, paired.margins_of(study), letters=ledger.machine_letters(study, record))
    for contrast in study.contrasts.get("cell_contrasts", ()):
        runs = results(record.rows(contrast.part))
        data.family += len(contrast.at) * contrast.primary
        if not runs:
            data.waiting.append(f"{_question(contrast)}: not run yet")
            continue
        for value in contrast.at:
            found = contrast_row(contrast, value, runs, study)
            if isinstance(found, str):
                data.waiting.append(found)
            else:
                data.rows.append(found)
    paired.correct_holm([r for r in data.rows if r["primary"]], data.family)
    return data


def by_activation(runs: Sequence[Mapping], by: str, value) -> dict[str, list[Mapping]]:
    """{activation: its runs at ``by`` = ``value``} of a grid part's runs with a result."""
    table: dict[str, list[Mapping]] = {}
    for row in runs:
        params = row.get("params") or {}
        if params.get(by) == value and ACTIVATION in params:
            table.setdefault(params[ACTIVATION], []).append(row)
    return table


def contrast_row(contrast: Contrast, value, runs: Sequence[Mapping], study: Study) -> dict | str:
    """Variant minus reference at ``by`` = ``value``, or a line saying which side has no runs yet."""
    table = by_activation(runs, contrast.by, value)
    variant, reference = pick(contrast.variant, table, study), pick(contrast.reference, table, study)
    at = cell_text(((contrast.by, value),))
    if variant is None or reference is None:
        missing = [_side(s) for s, found in ((contrast.variant, variant), (contrast.reference, reference)) if not found]
        return f"{_question(contrast)}, {at}: no runs of {' or '.join(missing)} yet"
    tested = paired_test(table[variant], table[reference], study.metric, paired.margins_of(study))
    return {
        "question": _question(contrast),
        "at": at,
        "label": f"{_label(contrast.variant, variant)} - {_label(contrast.reference, reference)}",
        "primary": contrast.primary,
        "picked": not isinstance(contrast.variant, str) or not isinstance(contrast.reference, str),
        "untrainable": both_untrainable(table[variant], table[reference]),
    } | tested


def both_untrainable(variant: Sequence[Mapping], reference: Sequence[Mapping]) -> int:
    """The seeds where both sides finished with a best training accuracy of at most TRAINABLE."""
    ours, theirs = ({seed_of(r): r for r in rows} for rows in (variant, reference))
    return sum(_untrainable(ours[s]) and _untrainable(theirs[s]) for s in set(ours) & set(theirs))


def _untrainable(row: Mapping) -> bool:
    """A finished run that never trained; a run without a training curve is not counted as one."""
    best = best_train_accuracy(row)
    return not is_diverged(row) and best is not None and best <= TRAINABLE


def _question(contrast: Contrast) -> str:
    return f"{contrast.question or 'contrast'} ({contrast.part})"


def _side(side: str | tuple[str, ...]) -> str:
    return side if isinstance(side, str) else "any of " + "/".join(side)


def _label(side: str | tuple[str, ...], picked: str) -> str:
    """A side as the table names it: the activation, or the member picked from a list."""
    return picked if isinstance(side, str) else f"{picked} (best of {'/'.join(side)})"


def render(data: CellContrasts, page: figures.Page) -> list[str]:
    lines = [page.title("cell_contrasts", "Contrasts within each grid, by cell"), ""]
    if not data.rows:
        lines.append("Not run yet (no contrast has runs on both sides at any of its cells).")
    else:
        lines += [
            f"Variant minus reference of {metric_words(data.metric)} within one part, at each value of the grid "
            "parameter named (its other settings shared), paired by seed; differences in percentage points. A seed "
            "where either side failed (diverged) has no comparable result: its pair is left out and counted "
            "(`excluded`). Both untrainable: the paired seeds where neither side's best training accuracy rose above "
            f"{TRAINABLE:.0%} (the trainability threshold); where every pair is such a pair the verdict says so: a "
            "verdict there compares two runs that failed to train, not two that learned. Machines: where the paired "
            "runs ran, lettered as in the last section.",
            *machine_note([data.rows], lambda row: f"{row['label']} at {row['at']}"),
            "",
            *table_head(
                ["question", "at", "variant - reference", "paired n", "excluded", "both untrainable"]
                + ["difference [95% CI]", "p (Holm)"]
                + [*paired.tost_header(data.margins), "verdict", "machines"]
            ),
            *(_line(r, data.margins, data.letters) for r in data.rows),
            "",
            paired.tests_note(data.margins),
            *paired.family_note([r for r in data.rows if r["primary"]], data.family),
            *_notes(data.rows),
        ]
    if data.waiting:
        lines += ["", f"Waiting for runs: {'; '.join(data.waiting)}."]
    return lines


def _line(row: Mapping, margins: Sequence[float], letters: Mapping[str, str]) -> str:
    """A row of the table: the test columns as ``paired.cells`` writes them (a secondary row's raw
    p marked), with the excluded pairs beside the paired n, and the machines last."""
    question = row["question"] + ("" if row["primary"] else " (secondary)")
    n, *tests = paired.cells(row, margins)
    if row["n"] and row["untrainable"] >= row["n"]:
        tests[-1] += " (neither side trained, in any pair)"
    machines = ledger.lettered(row["machines"], letters)
    counts = [n, str(row["excluded"]), str(row["untrainable"])]
    return "| " + " | ".join([question, row["at"], row["label"], *counts, *tests, machines]) + " |"


def _notes(rows: Sequence[Mapping]) -> list[str]:
    if not any(r["picked"] for r in rows):
        return []
    return [
        "",
        'A side written "best of" is the member with the best mean at that cell, picked after the runs on the same '
        "runs it is tested on: its p-value is optimistic.",
    ]
