"""Section "controls": every variant of a grid part over seeds, and the contrasts the study
named before the runs, paired by seed (primary ones Holm-corrected together)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.record import Record, complete
from sgmod_study.study.report import figures, paired
from sgmod_study.study.report.rows import by_variant, epochs, interval_cell, mean, metric_words
from sgmod_study.study.spec import Contrast, Study


@dataclass
class Variant:
    name: str
    values: list[float]
    mean: float
    sd: float
    low: float
    high: float


@dataclass
class Controls:
    part: str
    metric: str
    planned: int  # the part's trials
    finished: int
    epochs: str
    margins: tuple[float, ...]
    variants: list[Variant] = field(default_factory=list)  # best mean first
    primary: list[dict] = field(default_factory=list)  # Holm-corrected together
    secondary: list[dict] = field(default_factory=list)
    family: int = 0  # the primary contrasts declared: Holm's correction counts them all


def compute(study: Study, record: Record) -> Controls:
    part = study.sections["controls"][0]
    rows = record.rows(part)
    table = by_variant(rows, study.metric)
    data = Controls(
        part, study.metric, study.parts[part].trials, len(complete(rows)), epochs(rows), paired.margins_of(study)
    )
    data.variants = sorted(
        (_variant(name, list(seeds.values())) for name, seeds in table.items()), key=lambda v: -v.mean
    )
    found = [contrast_row(c, table, data.margins) for c in study.contrasts.get("controls", ())]
    data.primary = [r for r in found if r and r["primary"]]
    data.secondary = [r for r in found if r and not r["primary"]]
    data.family = paired.family(study, "controls")
    paired.correct_holm(data.primary, data.family)
    return data


def _variant(name: str, values: list[float]) -> Variant:
    return Variant(name, values, *stats.mean_ci(values))


def resolve(names: str | tuple[str, ...], means: Mapping[str, float]) -> str | None:
    """A contrast's side: the named variant, or the best mean of a group (picked after the runs)."""
    if isinstance(names, str):
        return names if names in means else None
    present = [n for n in names if n in means]
    return max(present, key=means.get) if present else None


def contrast_row(contrast: Contrast, table: Mapping[str, Mapping[int, float]], margins: Sequence[float]) -> dict | None:
    """Variant minus reference paired by seed, or None while either side has no runs."""
    means = {v: mean(list(s.values())) for v, s in table.items() if s}
    variant, reference = resolve(contrast.variant, means), resolve(contrast.reference, means)
    if variant is None or reference is None:
        return None
    picked = (not isinstance(contrast.variant, str), not isinstance(contrast.reference, str))
    return {
        "question": contrast.question,
        "variant": variant,
        "reference": reference,
        "primary": contrast.primary,
        "picked": picked,
        **paired.compare(table[variant], table[reference], margins),
    }


def render(data: Controls, page: figures.Page) -> list[str]:
    lines = [page.title("controls", "Controls at the full budget"), ""]
    if not data.finished:
        return [*lines, f"Not run yet (no finished run in part {data.part}, {data.planned} planned)."]
    lines += [
        f"{metric_words(data.metric).capitalize()} over seeds ({data.epochs} epochs each); {data.finished} of "
        f"{data.planned} runs finished.",
        "",
        "| variant | n | mean | std | 95% CI |",
        "|---|---|---|---|---|",
        *(_variant_line(v) for v in data.variants),
        *_primary_lines(data),
        *_secondary_lines(data),
    ]
    _bar_chart(data, page)
    return [*lines, "", page.link("controls", "controls_test_acc")]


def _variant_line(v: Variant) -> str:
    interval = interval_cell(v.low, v.high)
    sd = "-" if math.isnan(v.sd) else f"{v.sd:.4f}"
    return f"| {v.name} | {len(v.values)} | {v.mean:.4f} | {sd} | {interval} |"


def _primary_lines(data: Controls) -> list[str]:
    if not data.primary:
        return []
    return [
        "",
        "Primary contrasts (named before the runs), paired by seed, differences in percentage points:",
        "",
        *paired.header(["question", "variant - reference"], data.margins),
        *(paired.line([r["question"], f"{r['variant']} - {r['reference']}"], r, data.margins) for r in data.primary),
        "",
        paired.tests_note(data.margins),
        *paired.family_note(data.primary, data.family),
    ]


def _secondary_lines(data: Controls) -> list[str]:
    lines = []
    for row in data.secondary:
        lines += [
            "",
            f"Secondary ({_why(row['picked'])}): {row['question']}, {row['variant']} - {row['reference']}: "
            f"{paired.sentence(row, data.margins)}.",
        ]
    return lines


def _why(picked: tuple[bool, bool]) -> str:
    """Why a secondary contrast's p-value is optimistic (or only uncorrected)."""
    if all(picked):
        return "both picked after the runs, the best mean of each group, so the p-value is optimistic"
    if any(picked):
        side = "variant" if picked[0] else "reference"
        return f"the {side} picked after the runs, the best mean of its group, so the p-value is optimistic"
    return "not in the Holm correction of the primary contrasts"


def _bar_chart(data: Controls, page: figures.Page) -> None:
    bars = [(v.name, v.mean, 0.0 if math.isnan(v.low) else v.mean - v.low, v.values) for v in reversed(data.variants)]
    figures.bar_chart(bars, data.metric, page.path("controls_test_acc"))
