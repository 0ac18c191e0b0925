"""Paired differences as the report states them: Holm's correction over a table, the verdict
(different, equivalent within a margin, both, or inconclusive), and their Markdown cells. The
numbers come from ``stats.paired``; this module only decides and formats."""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence

from sgmod_study.study import stats
from sgmod_study.study.report.rows import table_head

ALPHA = 0.05
# Fewer paired seeds than this and a verdict is qualified (`qualified`; the study brief asks for >= 8).
SEEDS_FOR_A_VERDICT = 8


def margins_of(study) -> tuple[float, ...]:
    """The study's equivalence margin first, then the ones also reported."""
    return (study.margin, *(m for m in study.also_margins if m != study.margin))


def compare(values: Mapping[int, float], reference: Mapping[int, float], margins: Sequence[float]) -> dict:
    """Variant minus reference paired by seed (``stats.paired``)."""
    return stats.paired(values, reference, margins)


def family(study, section: str) -> int:
    """How many primary contrasts ``study`` declares in ``section``: the family Holm's correction counts."""
    return sum(c.primary for c in study.contrasts.get(section, ()))


def correct_holm(rows: Sequence[MutableMapping], family: int = 0) -> None:
    """Set ``p_holm`` on the rows that have a p-value: Holm-corrected over the ``family`` tests
    declared before the runs (at least these rows). A declared test with no p yet counts as p = 1:
    Holm's adjusted p-values never rise when a raw p falls, so an interim one is never below the
    value it will have once every test has run (correcting over the tests run so far would be)."""
    tested = [r for r in rows if not math.isnan(r["p"])]
    adjusted = stats.holm([r["p"] for r in tested] + [1.0] * max(family - len(tested), 0))
    for row, p in zip(tested, adjusted[: len(tested)], strict=True):
        row["p_holm"] = p


def family_note(rows: Sequence[Mapping], family: int) -> list[str]:
    """A paragraph saying how many of the declared primary tests the correction counted as p = 1
    (none once every one has a p)."""
    tested = sum(not math.isnan(r["p"]) for r in rows)
    if tested >= family:
        return []
    head = f"Holm's correction counts the {family} primary tests declared; the {family - tested} without a p"
    unpaired = sum(math.isnan(r["p"]) and _all_ran(r) for r in rows)
    if not unpaired:
        return [
            "",
            f"{head} yet count as p = 1 until they have one, so no corrected p here is below the value it "
            "will have then.",
        ]
    waiting = family - tested - unpaired
    later = (
        f"; {waiting} until they have one (runs still to come), so no corrected p here is below its final value"
        if waiting
        else ""
    )
    return ["", f"{head} count as p = 1: {unpaired} for good (too few seeds where neither side failed){later}."]


def points(margin: float) -> str:
    return f"{100 * margin:g} points"


def tightest_equivalence(row: Mapping, alpha: float = ALPHA) -> float | None:
    """The smallest margin whose TOST p is below ``alpha`` (None: none)."""
    held = [m for m, p in row["p_tost"].items() if not math.isnan(p) and p < alpha]
    return min(held) if held else None


def verdict(row: Mapping, corrected: bool = True, alpha: float = ALPHA) -> str:
    """ "different" where p (Holm-corrected, unless not ``corrected``) < alpha, "equivalent within
    +-m" at the tightest margin m whose TOST p < alpha; both where both hold."""
    return qualified(_verdict(row, corrected, alpha), row)


def qualified(text: str, row: Mapping) -> str:
    """A verdict marked where fewer than SEEDS_FOR_A_VERDICT seeds are paired: preliminary while seeds
    are still to run; once every seed has run (paired, or ``excluded`` for a failure), the failures
    that left too few pairs are named instead."""
    n = row["n"]
    if n >= SEEDS_FOR_A_VERDICT:
        return text
    if not _all_ran(row):
        return f"preliminary (n < {SEEDS_FOR_A_VERDICT}): {text}"
    if n == 0:
        return "no pair: on every seed one side or both failed"
    return f"only {n} pairs, the other seeds failed: {text}"


def _all_ran(row: Mapping) -> bool:
    return row["n"] + row.get("excluded", 0) >= SEEDS_FOR_A_VERDICT


def _verdict(row: Mapping, corrected: bool, alpha: float) -> str:
    p = row.get("p_holm", math.nan) if corrected else row["p"]
    different = not math.isnan(p) and p < alpha
    margin = tightest_equivalence(row, alpha)
    better = "variant" if row["mean"] > 0 else "reference"
    if different and margin is not None:
        return f"different ({better} better), and within +-{points(margin)}"
    if different:
        return f"different ({better} better)"
    if margin is not None:
        return f"equivalent within +-{points(margin)}"
    return "inconclusive"


def pct(value: float) -> str:
    """A difference of accuracies in percentage points, signed."""
    return "-" if math.isnan(value) else f"{100 * value:+.2f}"


def p_text(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def difference(row: Mapping) -> str:
    return f"{pct(row['mean'])} [{pct(row['low'])}, {pct(row['high'])}]"


def tost_header(margins: Sequence[float]) -> list[str]:
    """One TOST column per margin (named by its margin when there are several)."""
    if len(margins) == 1:
        return ["TOST p"]
    return [f"TOST p (+-{100 * m:g})" for m in margins]


def header(first: Sequence[str], margins: Sequence[float]) -> list[str]:
    """A paired-difference table's two header lines: ``first`` columns, then the tests."""
    columns = [*first, "paired n", "difference [95% CI]", "p (Holm)", *tost_header(margins), "verdict"]
    return table_head(columns)


def cells(row: Mapping, margins: Sequence[float]) -> list[str]:
    """The test columns of ``header`` for one row; a secondary row (``primary`` false: not in the
    Holm correction) shows its raw p, marked, and its verdict on that."""
    tosts = [p_text(row["p_tost"].get(m, math.nan)) for m in margins]
    if row.get("primary", True):
        return [str(row["n"]), difference(row), p_text(row.get("p_holm", math.nan)), *tosts, verdict(row)]
    raw = f"{p_text(row['p'])} (raw)"
    return [str(row["n"]), difference(row), raw, *tosts, verdict(row, corrected=False)]


def line(first: Sequence[str], row: Mapping, margins: Sequence[float]) -> str:
    return "| " + " | ".join([*first, *cells(row, margins)]) + " |"


def tests_note(margins: Sequence[float]) -> str:
    """What the p-value columns test, below every table of paired differences."""
    also = "".join(f" and, in the next column, within +-{points(m)}" for m in margins[1:])
    return (
        "p: paired t-test of no difference, Holm-corrected over the table's primary rows (a secondary row's raw p "
        "is optimistic); TOST p: two one-sided tests that "
        f"the difference lies within +-{points(margins[0])} (the study's equivalence margin){also}; verdicts at "
        f"{ALPHA:g}: different where p (Holm) < {ALPHA:g}, equivalent within the tightest margin whose TOST p "
        f"< {ALPHA:g}, both where both hold."
    )


def sentence(row: Mapping, margins: Sequence[float]) -> str:
    """A secondary contrast in words (its p-value not corrected, its verdict on the raw p)."""
    tosts = ", ".join(f"{p_text(row['p_tost'].get(m, math.nan))} (+-{points(m)})" for m in margins)
    return (
        f"{pct(row['mean'])} points [{pct(row['low'])}, {pct(row['high'])}] over {row['n']} paired seeds, "
        f"p {p_text(row['p'])}, TOST p {tosts}: {verdict(row, corrected=False)}"
    )
