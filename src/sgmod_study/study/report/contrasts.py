"""Section "contrasts": the study's contrasts between confirmed configurations, variant minus
reference in each of its metrics, paired by seed: the mean difference with its 95% interval, the
paired t-test's p (Holm-corrected over the primary contrasts of each metric), TOST against each of
that metric's margins, and a verdict in the study's direction (lower is better when it minimises).

A seed where either side failed (diverged, or collapsed) has no comparable final metrics: its pair
is left out of the paired test and counted, and the failures themselves are compared by seed with
an exact McNemar test (the exact sign test over the seeds where only one side failed). The margin
paragraph puts the margins beside the spread over seeds measured here and, for the metrics that have
one (FID, KID), points to their real-vs-real floor."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from sgmod_study.study import stats
from sgmod_study.study.record import Record, machine_name
from sgmod_study.study.report import figures, ledger, paired
from sgmod_study.study.report.outcomes import (
    FLOORED,
    failure,
    fmt,
    good,
    label,
    mean_of,
    name,
    results,
    seed_of,
    short,
    signed,
    values,
)
from sgmod_study.study.report.rows import table_head
from sgmod_study.study.spec import Study

ALPHA = paired.ALPHA
FLOOR = "docs/gan_metric_sanity.md"


@dataclass
class Failures:
    """One contrast's seeds with a result on both sides, and which side failed on them."""

    contrast: str  # "g_sgmod - g_relu"
    seeds: int
    variant: int  # failed on the variant's side
    reference: int
    only_variant: int
    only_reference: int
    p: float  # exact McNemar; nan where no seed failed on one side only


@dataclass
class Spread:
    """One metric's spread over seeds: pooled over the confirmed configurations, and the range of
    the configurations' own standard deviations (a pool can mix configurations whose noise differs
    tenfold, and the range shows when it does)."""

    sd: float
    freedom: int
    groups: int
    lowest: tuple[str, float] = ("", math.nan)  # (configuration, its own sd)
    highest: tuple[str, float] = ("", math.nan)


@dataclass
class Contrasts:
    metrics: tuple[str, ...]
    margins: dict[str, tuple[float, ...]]  # {metric: its equivalence margin, then the ones also reported}
    maximize: bool
    declared: str  # the study's file, where the margins were set: conf/study/gan.yaml
    tests: dict[str, list[dict]] = field(default_factory=dict)  # {metric: a row per contrast}
    failures: list[Failures] = field(default_factory=list)
    spread: dict[str, Spread] = field(default_factory=dict)
    seeds: int = 0  # a confirm part's seeds
    waiting: list[str] = field(default_factory=list)  # contrasts with a side not run yet
    letters: dict[str, str] = field(default_factory=dict)  # {machine: its letter in the section "What ran"}
    family: int = 0  # the primary tests declared (contrasts x co-primary metrics): Holm's correction counts them all


def compute(study: Study, record: Record) -> Contrasts:
    data = Contrasts(study.metrics, {m: study.margins[m] for m in study.metrics}, study.maximize, declared(study))
    data.letters = ledger.machine_letters(study, record)
    contrasts = study.contrasts.get("contrasts", ())
    sides = [n for c in contrasts for side in (c.variant, c.reference) for n in _names(side)]
    runs = {p: results(record.rows(p)) for p in dict.fromkeys([*study.sections["contrasts"], *sides])}
    data.tests = {m: [] for m in study.metrics}
    for contrast in contrasts:
        variant, reference = pick(contrast.variant, runs, study), pick(contrast.reference, runs, study)
        named = f"{_label(contrast.variant, variant)} - {_label(contrast.reference, reference)}"
        if variant is None or reference is None:
            data.waiting.append(named)
            continue
        data.failures.append(failures(named, runs[variant], runs[reference]))
        for metric in study.metrics:
            row = paired_test(runs[variant], runs[reference], metric, data.margins[metric])
            data.tests[metric].append(
                {"question": contrast.question, "label": named, "primary": contrast.primary} | row
            )
    # the metrics are co-primary (a GAN's FID and KID): one family over every primary contrast of each
    data.family = paired.family(study, "contrasts") * len(study.metrics)
    paired.correct_holm([r for m in study.metrics for r in data.tests[m] if r["primary"]], data.family)
    for metric in study.metrics:
        data.spread[metric] = spread({label(p): values(good(runs[p]), metric) for p in study.sections["contrasts"]})
    data.seeds = min(
        (len(study.parts[p].seeds) for p in study.sections["contrasts"] if study.parts[p].seeds), default=0
    )
    return data


def spread(groups: Mapping[str, Sequence[float]]) -> Spread:
    """The pooled sd of ``groups`` ({configuration: its values}) and the configurations with the
    smallest and the largest sd of their own, over those with two values or more."""
    own = {c: stats.pooled_sd([v])[0] for c, v in groups.items() if len(v) >= 2}
    sd, freedom = stats.pooled_sd(list(groups.values()))
    if not own:
        return Spread(sd, freedom, 0)
    ordered = sorted(own.items(), key=itemgetter(1))
    return Spread(sd, freedom, len(own), ordered[0], ordered[-1])


def _spread_words(metric: str, each: Spread, seeds: int) -> str:
    words = f"{each.freedom} degrees of freedom over {each.groups} configuration{'s' if each.groups > 1 else ''}"
    if each.groups > 1:
        (low, low_sd), (high, high_sd) = each.lowest, each.highest
        words += f", their own from {fmt(metric, low_sd)} in {low} to {fmt(metric, high_sd)} in {high}"
    if seeds:
        words += f"; a difference of two {seeds}-seed means: about {fmt(metric, each.sd * math.sqrt(2 / seeds))}"
    return words


def _family_words(data: Contrasts) -> str:
    contrasts = data.family // len(data.metrics)
    if len(data.metrics) == 1:
        return f"{contrasts} tests"
    return f"{data.family} tests: {contrasts} contrasts x {len(data.metrics)} co-primary metrics"


def declared(study: Study) -> str:
    """The study's file (a user's own activation's study is declared in its template's)."""
    return f"conf/study/{study.record}.yaml"


def _names(side: str | tuple[str, ...]) -> tuple[str, ...]:
    return (side,) if isinstance(side, str) else side


def _label(side: str | tuple[str, ...], picked: str | None) -> str:
    if picked is not None:
        return label(picked)
    return "/".join(label(n) for n in _names(side))


def pick(side: str | tuple[str, ...], runs: Mapping[str, Sequence[Mapping]], study: Study) -> str | None:
    """A contrast's side: the named part once it has a run with a result, or the group member with
    the best mean of the study's metric over its runs that did not fail (picked after the runs)."""
    if isinstance(side, str):
        return side if runs.get(side) else None
    means = {n: mean_of(values(good(runs.get(n, ())), study.metric)) for n in side}
    present = [n for n, m in means.items() if not math.isnan(m)]
    if not present:
        return None
    return max(present, key=means.get) if study.maximize else min(present, key=means.get)


def paired_test(
    variant: Sequence[Mapping], reference: Sequence[Mapping], metric: str, margins: Sequence[float]
) -> dict:
    """Variant minus reference of ``metric`` over the seeds where neither side failed
    (``stats.paired``, TOST at each of ``margins``), with ``excluded``: the seeds of both sides left
    out for a failure, and ``machines``: the names of the machines the paired runs ran on."""
    ours, theirs = _by_seed(variant), _by_seed(reference)
    seeds = sorted(set(ours) & set(theirs))
    kept = [s for s in seeds if failure(ours[s]) is None and failure(theirs[s]) is None]
    measured = {
        side: {s: rows[s]["metrics"][metric] for s in kept if (rows[s].get("metrics") or {}).get(metric) is not None}
        for side, rows in (("variant", ours), ("reference", theirs))
    }
    found = stats.paired(measured["variant"], measured["reference"], margins)
    both = set(measured["variant"]) & set(measured["reference"])
    machines = {machine_name(rows[s]) for rows in (ours, theirs) for s in both}
    return found | {"excluded": len(seeds) - len(kept), "machines": sorted(machines)}


def _by_seed(rows: Sequence[Mapping]) -> dict[int, Mapping]:
    return {seed_of(r): r for r in rows}


def failures(contrast: str, variant: Sequence[Mapping], reference: Sequence[Mapping]) -> Failures:
    ours, theirs = _by_seed(variant), _by_seed(reference)
    seeds = sorted(set(ours) & set(theirs))
    pairs = [(failure(ours[s]) is not None, failure(theirs[s]) is not None) for s in seeds]
    only_variant = sum(a and not b for a, b in pairs)
    only_reference = sum(b and not a for a, b in pairs)
    p = stats.sign_test_p([int(a) - int(b) for a, b in pairs]) if only_variant + only_reference else math.nan
    return Failures(
        contrast, len(seeds), sum(a for a, _ in pairs), sum(b for _, b in pairs), only_variant, only_reference, p
    )


def verdict(row: Mapping, maximize: bool) -> str:
    """The direction of a significant difference (Holm-corrected for a primary contrast, raw for a
    secondary one), equivalence within the tightest margin whose TOST says so, else inconclusive."""
    p = row.get("p_holm", math.nan) if row["primary"] else row["p"]
    different = not math.isnan(p) and p < ALPHA
    margin = paired.tightest_equivalence(row, ALPHA)
    equivalent = margin is not None
    better = "variant" if (row["mean"] < 0) != maximize else "reference"
    if different and equivalent:
        text = f"{better} better, but within +-{margin:g}"
    elif different:
        text = f"{better} better"
    elif equivalent:
        text = f"equivalent within +-{margin:g}"
    else:
        text = "inconclusive"
    return paired.qualified(text, row)


def render(data: Contrasts, page: figures.Page) -> list[str]:
    lines = [page.title("contrasts", "Contrasts, paired by seed"), ""]
    tested = any(data.tests[m] for m in data.metrics)
    if not tested:
        lines.append("Not run yet (no contrast has runs that did not fail on both sides).")
    else:
        direction = "higher" if data.maximize else "lower"
        failed = "diverged or collapsed" if _floored(data) else "diverged"
        several = any(len(m) > 1 for m in data.margins.values())
        within = (
            "each of the metric's margins (the verdict names the tightest that holds)"
            if several
            else "the metric's margin"
        )
        lines += [
            f"Variant minus reference of each final test metric ({direction} is better), paired by seed. A seed "
            f"where either side failed ({failed}) has no comparable metrics: its pair is left out of the "
            "paired test and counted (`excluded`); the failures are compared below. p: paired t-test of no "
            f"difference, Holm-corrected over the primary contrasts of every metric together "
            f"({_family_words(data)}; secondary ones: raw p, optimistic); TOST p: two one-sided tests that "
            f"the difference lies within {within}; verdicts at {ALPHA:g}; machines: where the paired runs ran, "
            "lettered as in the last section.",
            *machine_note(data.tests.values()),
        ]
        lines += paired.family_note([r for m in data.metrics for r in data.tests[m] if r["primary"]], data.family)
        for metric in data.metrics:
            lines += _metric_lines(data, metric)
        lines += _failure_lines(data.failures)
    if data.waiting:
        lines += ["", f"Waiting for runs: {'; '.join(data.waiting)}."]
    return lines + _margin_lines(data)


def _metric_lines(data: Contrasts, metric: str) -> list[str]:
    margins = data.margins[metric]
    also = "".join(f"; also +-{m:g}" for m in margins[1:])
    columns = ["contrast", "variant - reference", "paired n", "excluded", "difference [95% CI]", "p"]
    lines = [
        "",
        f"**test {name(metric)}** (`{metric}`; equivalence margin +-{margins[0]:g}{also}):",
        "",
        *table_head([*columns, *(f"TOST p (+-{m:g})" for m in margins), "verdict", "machines"]),
    ]
    for row in data.tests[metric]:
        question = row["question"] + ("" if row["primary"] else " (secondary)")
        p = row.get("p_holm", math.nan) if row["primary"] else row["p"]
        p_text = "-" if math.isnan(p) else f"{p:.3g}" + ("" if row["primary"] else " (raw)")
        difference = f"{signed(metric, row['mean'])} [{signed(metric, row['low'])}, {signed(metric, row['high'])}]"
        tosts = "".join(f"{paired.p_text(row['p_tost'][m])} | " for m in margins)
        lines.append(
            f"| {question} | {row['label']} | {row['n']} | {row['excluded']} | {difference} | {p_text} | "
            f"{tosts}{verdict(row, data.maximize)} | {ledger.lettered(row['machines'], data.letters)} |"
        )
    return lines


def machine_note(
    tables: Iterable[Sequence[Mapping]], called: Callable[[Mapping], str] = itemgetter("label")
) -> list[str]:
    """A paragraph naming (``called``) the contrasts that pair runs from more than one machine; none if no
    contrast does."""
    mixed = list(dict.fromkeys(called(row) for rows in tables for row in rows if len(row["machines"]) > 1))
    if not mixed:
        return []
    return [
        "",
        f"Paired across machines: {', '.join(mixed)}. Machines round differently, so a seed's runs on two "
        "machines start alike and then part: there the pairing removes less of the spread over seeds, and the "
        "difference includes whatever the machines themselves add.",
    ]


def _failure_lines(found: Sequence[Failures]) -> list[str]:
    if not any(f.variant or f.reference for f in found):
        return ["", "Failures: no run of the compared configurations failed so far, so no pair is left out."]
    lines = [
        "",
        "Failures on the seeds both sides ran, compared by seed with an exact McNemar test (the exact sign test "
        "over the seeds where only one side failed):",
        "",
        "| variant - reference | seeds | variant failed | reference failed | only variant | only reference | exact p |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in found:
        lines.append(
            f"| {f.contrast} | {f.seeds} | {f.variant} | {f.reference} | {f.only_variant} | {f.only_reference} | "
            f"{paired.p_text(f.p)} |"
        )
    return lines


def _floored(data: Contrasts) -> bool:
    """Whether a metric tested has a measured real-vs-real floor (the GAN's FID/KID, whose runs can
    also fail by a collapse of their samples)."""
    return any(short(m) in FLOORED for m in data.metrics)


def _margin_lines(data: Contrasts) -> list[str]:
    margins = " and ".join(f"+-{data.margins[m][0]:g} in {name(m)}" for m in data.metrics)
    also = " and ".join(f"+-{a:g} in {name(m)}" for m in data.metrics for a in data.margins[m][1:])
    spreads = []
    for metric in data.metrics:
        each = data.spread[metric]
        if each.freedom:
            spreads.append(f"test {name(metric)} {fmt(metric, each.sd)} ({_spread_words(metric, each, data.seeds)})")
    spread = "; ".join(spreads) if spreads else "not measured yet (no configuration has two runs that did not fail)"
    floor = (
        f"Two yardsticks to judge them by. The floor: FID/KID of two disjoint sets of real images against each other "
        f"on this toolkit's feature net, measured in {FLOOR}: a difference near it is the metric's own noise. The "
        f"spread over seeds"
        if _floored(data)
        else "The yardstick to judge them by (the metric has no measured floor): the spread over seeds"
    )
    return [
        "",
        f"Margins: differences within {margins} count as equivalent (set in {data.declared} before the runs"
        f"{f'; also reported: {also}' if also else ''}). {floor}, the pooled standard deviation of the final test "
        "metric over the seeds of each confirmed configuration (runs that did not fail), and the standard error it "
        f"gives the difference of two configurations' means with unrelated seeds: {spread}.",
    ]
