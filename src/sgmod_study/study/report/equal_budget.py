"""Section "equal_budget": searches compared at an equal number of trials, in either direction:
each sweep's expected best objective (the rows' first value; the lowest for a minimising study) of
as many trials as the shortest sweep has (Dodge et al. 2019), with bootstrap intervals, the first
sweep listed minus each other one, and each sweep's best trial. Failed trials are counted, not
dropped: a collapsed trial keeps the value it finished with, and a diverged one (no value) counts as
the sweep's worst finished value (it found nothing better)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import COLLAPSE, DIVERGED, failure, fmt, name, results, signed
from sgmod_study.study.report.outcomes import validation as val
from sgmod_study.study.report.rows import machines, params_text
from sgmod_study.study.report.sweeps import edges, lost_points
from sgmod_study.study.spec import Study


@dataclass
class Search:
    name: str
    planned: int
    runs: int = 0  # trials with a result
    diverged: int = 0
    collapsed: int = 0
    values: list[float] = field(default_factory=list)  # one per trial with a result, as ranked
    best: float = math.nan  # the best trial that did not fail: its objective
    best_test: dict[str, float] = field(default_factory=dict)  # and its test metrics
    best_params: dict = field(default_factory=dict)
    machines: list[str] = field(default_factory=list)
    at_equal: float = math.nan  # the expected best of the equal budget, and its 95% interval
    low: float = math.nan
    high: float = math.nan


@dataclass
class EqualBudget:
    objective: str  # what the rows' first value is: val/fid
    metrics: tuple[str, ...]
    maximize: bool
    equal: int  # the fewest trials with a result any sweep has
    searches: list[Search]
    differences: list[tuple[str, str, float, float, float]] = field(default_factory=list)  # first minus each
    edges: list[str] = field(default_factory=list)
    lost: dict[str, list[dict]] = field(default_factory=dict)


def compute(study: Study, record: Record) -> EqualBudget:
    parts = study.sections["equal_budget"]
    rows = {p: record.rows(p) for p in parts}
    searches = [search(p, study.parts[p].trials, rows[p], study.metrics, study.maximize) for p in parts]
    equal = min((s.runs for s in searches if s.values), default=0)
    data = EqualBudget(val(study.metric), study.metrics, study.maximize, equal, searches)
    draws = {}
    for i, s in enumerate(searches):
        if s.values:  # a seed of its own per sweep: independent resamples
            draws[s.name] = stats.expected_best_draws(s.values, equal, seed=i, maximize=study.maximize)
            s.at_equal = stats.expected_best(s.values, [equal], study.maximize)[0]
            s.low, s.high = stats.interval(draws[s.name])
    first = searches[0] if searches and searches[0].name in draws else None
    for other in searches[1:]:
        if first is not None and other.name in draws:
            low, high = stats.interval(draws[first.name] - draws[other.name])
            data.differences.append((first.name, other.name, first.at_equal - other.at_equal, low, high))
    data.edges = edges(record, parts)
    data.lost = {p: points for p in parts if (points := lost_points(rows[p]))}
    return data


def search(part: str, planned: int, rows: Sequence[Mapping], metrics: Sequence[str], maximize: bool) -> Search:
    found = Search(part, planned)
    ran = results(rows)
    if not ran:
        return found
    outcomes = [failure(r) for r in ran]
    found.runs, found.diverged, found.collapsed = len(ran), outcomes.count(DIVERGED), outcomes.count(COLLAPSE)
    finished = [r["values"][0] for r in ran if r["state"] == "COMPLETE" and r.get("values")]
    if not finished:
        return found
    worst = min(finished) if maximize else max(finished)
    found.values = [r["values"][0] if r.get("values") else worst for r in ran]  # diverged: no value
    kept = [r for r, f in zip(ran, outcomes, strict=True) if f is None and r.get("values")]
    found.machines = machines(ran)
    if kept:
        best = sorted(kept, key=lambda r: r["values"][0], reverse=maximize)[0]
        found.best, found.best_params = best["values"][0], dict(best["params"])
        found.best_test = {m: (best.get("metrics") or {}).get(m, math.nan) for m in metrics}
    return found


def render(data: EqualBudget, page: figures.Page) -> list[str]:
    lines = [page.title("equal_budget", "The sweeps, compared at an equal number of trials"), ""]
    if not data.equal:
        return [*lines, f"Not run yet (no finished trial in parts {', '.join(s.name for s in data.searches)})."]
    best = "lowest" if not data.maximize else "highest"
    lines += [
        f"The best of more trials is better by chance alone, so the sweeps are compared by the expected {best} "
        f"{data.objective} of {data.equal} trials (the fewest any sweep has), estimated from all of each sweep's "
        "trials (Dodge et al. 2019), with a 95% bootstrap interval. Failed trials are counted, not dropped: a "
        "collapsed trial keeps its value, a diverged one counts as its sweep's worst finished value.",
        "",
        f"| sweep | trials | diverged | collapsed | best {data.objective} (did not fail) | "
        + " | ".join(f"its test {name(m)}" for m in data.metrics)
        + f" | expected best of {data.equal} [95% CI] | machines |",
        "|" + "---|" * (7 + len(data.metrics)),
        *(_line(s, data) for s in data.searches),
    ]
    for difference in data.differences:
        lines += ["", _difference_line(difference, data)]
    for s in data.searches:
        if s.best_params:
            so_far = " so far" if s.runs < s.planned else ""
            lines += ["", f"Best trial of {s.name}{so_far}: {params_text(s.best_params)}."]
    lines += _notes(data)
    return lines + _curves(data, page)


def _line(s: Search, data: EqualBudget) -> str:
    if not s.runs:
        return f"| {s.name} | 0 of {s.planned} | - | - | - | " + "- | " * len(data.metrics) + "- | - |"
    tests = " | ".join(fmt(m, s.best_test.get(m)) for m in data.metrics)
    o = data.objective
    at = "-" if math.isnan(s.at_equal) else f"{fmt(o, s.at_equal)} [{fmt(o, s.low)}, {fmt(o, s.high)}]"
    return (
        f"| {s.name} | {s.runs} of {s.planned} | {s.diverged} | {s.collapsed} | {fmt(data.objective, s.best)} | "
        f"{tests} | {at} | {', '.join(s.machines) or '-'} |"
    )


def _difference_line(difference: tuple, data: EqualBudget) -> str:
    first, other, d, low, high = difference
    o = data.objective
    favoured = first if (d > 0) == data.maximize else other
    zero = "holds" if low <= 0 <= high else "excludes"
    return (
        f"{first} minus {other}, expected best of {data.equal} trials: {signed(o, d)} [{signed(o, low)}, "
        f"{signed(o, high)}] (95% bootstrap interval over each sweep's trials): the estimate favours {favoured}, "
        f"and the interval {zero} zero."
    )


def _notes(data: EqualBudget) -> list[str]:
    lines = []
    if data.lost:
        each = "; ".join(f"{p} {len(points)}" for p, points in data.lost.items())
        lines += ["", f"Points never trained (interrupted before they were queued again): {each}."]
    if data.edges:
        lines += [
            "",
            "At the edge of the searched range in a sweep's best trial: " + "; ".join(data.edges) + ". The best "
            "configuration there may lie outside the range.",
        ]
    return lines


def _curves(data: EqualBudget, page: figures.Page) -> list[str]:
    curves = {
        s.name: stats.expected_best(s.values, range(1, len(s.values) + 1), data.maximize)
        for s in data.searches
        if s.values
    }
    figures.expected_best_curves(curves, f"expected best {data.objective}", page.path("expected_best"))
    return [
        "",
        f"Expected best {data.objective} against the number of trials: a curve still falling (rising, for a score "
        "to maximise) says the search has not converged.",
        "",
        page.link("expected best", "expected_best"),
    ]
