"""Section "sweeps": each sweep's finished trials and best configuration, compared at an equal
number of trials by the expected best validation score (Dodge et al. 2019) with bootstrap
intervals, the contrasts the study names between sweeps, best values at the edge of a searched
range, whether the sweeps train as long as the runs that confirm them, and where a Sgmod sweep's
trials went (gamma/beta travel, its share of small gamma inits)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.choose import best_row, best_trial, finished_trials, is_log, maximizes
from sgmod_study.study.record import Record, complete
from sgmod_study.study.report import figures, travel
from sgmod_study.study.report.paired import pct
from sgmod_study.study.report.rows import (
    FAILING,
    OBJECTIVE,
    count_word,
    epochs,
    machines,
    params_text,
    prose,
)
from sgmod_study.study.spec import Study

# A best value within this share of its searched range from a bound (on the log scale for a log
# parameter) is "at the edge": the optimum may lie outside the range.
EDGE_SHARE = 0.05
# A gamma init below this: the part of a Sgmod sweep's range where it trains poorly.
SMALL_GAMMA = 0.5


@dataclass
class Sweep:
    name: str
    planned: int
    n: int = 0
    best_val: float = math.nan
    best_test: float = math.nan
    best_params: dict = field(default_factory=dict)
    values: list[float] = field(default_factory=list)  # every finished trial's objective
    machines: list[str] = field(default_factory=list)
    at_equal: float = math.nan  # the expected best of the equal budget, and its 95% interval
    low: float = math.nan
    high: float = math.nan


@dataclass
class SmallGamma:
    """A Sgmod sweep's trials with gamma_init < SMALL_GAMMA against the rest."""

    part: str
    total: int
    n: int
    median: float
    failing: int  # of them below FAILING
    rest_median: float
    without: float  # the expected best of the equal budget without them
    with_all: float


@dataclass
class Sweeps:
    metric: str
    equal: int  # the fewest trials any sweep has finished
    sweeps: list[Sweep]
    counts: list[str] = field(default_factory=list)  # "The Sgmod sweep runs 64 trials over ..."
    differences: dict[str, list[tuple[str, float, float, float]]] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)
    fidelity: str = ""
    travel: dict[str, dict] = field(default_factory=dict)
    best: list[tuple[str, dict, bool]] = field(default_factory=list)  # (part, params, so far)
    small_gamma: list[SmallGamma] = field(default_factory=list)
    lost: dict[str, list[dict]] = field(default_factory=dict)  # {sweep: params of points never trained}


def summary(name: str, planned: int, rows: Sequence[Mapping], metric: str, maximize: bool = True) -> Sweep:
    sweep = Sweep(name, planned)
    finished = complete(rows)
    if finished:
        best = best_row(finished, maximize)
        sweep.n, sweep.best_val, sweep.best_test = len(finished), best["values"][0], best["metrics"].get(metric)
        sweep.best_params, sweep.values = best["params"], [r["values"][0] for r in finished]
        sweep.machines = machines(finished)
    return sweep


def compute(study: Study, record: Record) -> Sweeps:
    parts = study.sections["sweeps"]
    rows = {name: record.rows(name) for name in parts}
    sweeps = [summary(name, study.parts[name].trials, rows[name], study.metric, study.maximize) for name in parts]
    data = Sweeps(study.metric, min((s.n for s in sweeps if s.n), default=0), sweeps)
    draws = _equal_budget(data)
    variants = list(dict.fromkeys(c.variant for c in study.contrasts.get("sweeps", ()) if isinstance(c.variant, str)))
    for contrast in study.contrasts.get("sweeps", ()):
        if contrast.variant in draws and contrast.reference in draws:
            data.differences.setdefault(contrast.variant, []).append(_difference(data, draws, contrast))
    data.counts = [
        _counts(data, v, [c.reference for c in study.contrasts["sweeps"] if c.variant == v]) for v in variants
    ]
    data.edges = edges(record, parts)
    data.fidelity = fidelity(study, record)
    data.travel = {name: m for name in parts if (m := travel.sweep_travel(rows[name]))}
    data.best = [(s.name, s.best_params, s.n < s.planned) for s in sweeps if s.name in variants and s.n]
    data.small_gamma = [g for v in variants if (g := small_gamma(v, rows[v], data.equal))]
    data.lost = {name: points for name in parts if (points := lost_points(rows[name]))}
    return data


def lost_points(rows: Sequence[Mapping]) -> list[dict]:
    """The searched points of interrupted trials that no finished trial trained: a sweep recorded
    before interrupted points were queued again (2026-12-05) lost them for good."""
    trained = [r["params"] for r in rows if r["state"] == "COMPLETE"]
    return [r["params"] for r in rows if r.get("interrupted") and r["params"] and r["params"] not in trained]


def _equal_budget(data: Sweeps) -> dict[str, object]:
    """Each sweep's expected best of ``data.equal`` trials with its bootstrap draws (a seed of its
    own per sweep, its place in the section: independent resamples)."""
    draws = {}
    for i, sweep in enumerate(data.sweeps):
        if sweep.n:
            draws[sweep.name] = stats.expected_best_draws(sweep.values, data.equal, seed=i)
            sweep.at_equal = stats.expected_best(sweep.values, [data.equal])[0]
            sweep.low, sweep.high = stats.interval(draws[sweep.name])
    return draws


def _difference(data: Sweeps, draws: Mapping, contrast) -> tuple[str, float, float, float]:
    """Variant minus reference at the equal budget, with a 95% interval from resampling each
    sweep's trials independently (the sweeps share no seeds or configurations)."""
    at = {s.name: s.at_equal for s in data.sweeps}
    low, high = stats.interval(draws[contrast.variant] - draws[contrast.reference])
    return contrast.reference, at[contrast.variant] - at[contrast.reference], low, high


def _counts(data: Sweeps, variant: str, references: Sequence[str]) -> str:
    """How many trials each sweep runs over how many parameters, in words."""
    by_name = {s.name: s for s in data.sweeps}

    def size(name: str) -> tuple[int, str]:
        return by_name[name].planned, count_word(len(by_name[name].best_params))

    own, others = size(variant), [(r, size(r)) for r in references if by_name[r].n]
    text = f"The {prose(variant.removeprefix('sweep_'))} sweep runs {own[0]} trials"
    text += f" over its {own[1]} parameters" if by_name[variant].n else ""
    if not others:
        return text + "."
    if len({s for _, s in others}) == 1:
        return text + f", each baseline {others[0][1][0]} over its {others[0][1][1]}."
    return text + "; " + ", ".join(f"{r} {n} over its {k}" for r, (n, k) in others) + "."


def at_edge(trial) -> list[str]:
    """The searched numeric parameters of ``trial`` whose value lies at the edge of their range."""
    found = []
    for key, value in sorted(trial.params.items()):
        dist = trial.distributions[key]
        if not hasattr(dist, "low") or dist.high <= dist.low:
            continue  # a categorical or a fixed value
        scale = math.log if is_log(trial, key) else float
        share = (scale(value) - scale(dist.low)) / (scale(dist.high) - scale(dist.low))
        if min(share, 1 - share) < EDGE_SHARE:
            found.append(f"{key}={value:.3g} (searched {dist.low:.3g} to {dist.high:.3g})")
    return found


def edges(record: Record, parts: Sequence[str]) -> list[str]:
    """Which sweeps' best trials sit at the edge of a searched range (read from their journals)."""
    found = []
    for name in parts:
        if not record.has_journal(name):
            continue
        study = record.load(name)
        if trials := finished_trials(study):
            found += [f"{name}'s {edge}" for edge in at_edge(best_trial(trials, maximizes(study)))]
    return found


def fidelity(study: Study, record: Record) -> str:
    """Whether the sweeps train as long as the study's other runs: if not, their ranking of
    configurations stands in for full training and would need checking against it."""
    sweeps = [n for n in study.sections["sweeps"] if study.parts[n].kind == "sweep"]
    others = [n for n, p in study.parts.items() if p.kind != "sweep"]
    short, full = epochs(_all_rows(record, sweeps)), epochs(_all_rows(record, others))
    if short == "?":
        return ""
    kinds = {study.parts[n].kind for n in others}
    names = " and ".join(w for k, w in (("grid", "the controls"), ("confirm", "the confirmation runs")) if k in kinds)
    if short == full or full == "?":
        return (
            f"Every sweep trial trains for the full budget ({short} epochs, as {names or 'the other runs'}): no "
            "shorter run stands in for full training, so there is no cheap fidelity whose ranking of "
            "configurations would need checking."
        )
    return (
        f"The sweep trials train for {short} epochs, {names or 'the other runs'} for {full}: the sweeps' "
        "ranking of configurations is a cheaper fidelity's, not checked here against full training."
    )


def _all_rows(record: Record, parts: Sequence[str]) -> list[Mapping]:
    return [r for name in parts for r in record.rows(name)]


def small_gamma(part: str, rows: Sequence[Mapping], equal: int) -> SmallGamma | None:
    """The trials of a sweep over activation.gamma_init that started it below SMALL_GAMMA."""
    finished = [r for r in complete(rows) if "activation.gamma_init" in r["params"]]
    small = [r["values"][0] for r in finished if r["params"]["activation.gamma_init"] < SMALL_GAMMA]
    rest = [r["values"][0] for r in finished if r["params"]["activation.gamma_init"] >= SMALL_GAMMA]
    if not small or not rest or not equal:
        return None
    return SmallGamma(
        part,
        len(finished),
        len(small),
        statistics.median(small),
        sum(v < FAILING for v in small),
        statistics.median(rest),
        stats.expected_best(rest, [equal])[0],
        stats.expected_best(small + rest, [equal])[0],
    )


def render(data: Sweeps, page: figures.Page) -> list[str]:
    lines = [
        page.title("sweeps", "The sweeps (the same sampler and ranges; compared at equal trial counts)"),
        "",
        f"| sweep | finished trials | best {OBJECTIVE} | its {data.metric} | expected best of {data.equal} [95% CI] "
        "| machines |",
        "|---|---|---|---|---|---|",
        *(_sweep_line(s) for s in data.sweeps),
    ]
    if data.equal:
        lines += _equal_budget_lines(data)
    lines += _small_gamma_lines(data)
    lines += _lost_lines(data.lost)
    lines += _edge_lines(data.edges)
    lines += ["", data.fidelity] if data.fidelity else []
    for name, moves in data.travel.items():
        lines += travel.sweep_lines(name, moves)
    for name, params, so_far in data.best:
        label = prose(name.removeprefix("sweep_"))
        lines += ["", f"Best {label} configuration{' so far' if so_far else ''}: {params_text(params)}."]
    return lines + _curves(data, page)


def _sweep_line(s: Sweep) -> str:
    if not s.n:
        return f"| {s.name} | 0 | - | - | - | - |"
    test = "-" if s.best_test is None else f"{s.best_test:.4f}"
    return (
        f"| {s.name} | {s.n} | {s.best_val:.4f} | {test} | {s.at_equal:.4f} [{s.low:.4f}, {s.high:.4f}] "
        f"| {', '.join(s.machines)} |"
    )


def _equal_budget_lines(data: Sweeps) -> list[str]:
    lines = [
        "",
        "Equal budget: the best of more trials is higher by chance alone, so the sweeps are compared by the "
        f"expected best validation accuracy of {data.equal} trials (the fewest any sweep has finished), estimated "
        "from all of each sweep's trials (Dodge et al. 2019). " + " ".join(data.counts),
    ]
    for variant, found in data.differences.items():
        each = "; ".join(f"{r.removeprefix('sweep_')} {pct(d)} [{pct(lo)}, {pct(hi)}]" for r, d, lo, hi in found)
        lines += [
            "",
            f"{prose(variant.removeprefix('sweep_'))} minus each baseline, expected best of {data.equal} trials, in "
            f"percentage points [95% bootstrap interval over each sweep's trials]: {each}.",
        ]
    return lines


def _small_gamma_lines(data: Sweeps) -> list[str]:
    lines = []
    for g in data.small_gamma:
        lines += [
            "",
            f"The searched ranges cost {g.part} part of its budget: {g.n} of its {g.total} trials "
            f"({g.n / g.total:.0%}) start at activation.gamma_init < {SMALL_GAMMA:g}, and they validate at a "
            f"median {g.median:.4f} ({g.failing} of them below {FAILING:.2f}), the other {g.total - g.n} at "
            f"{g.rest_median:.4f}. Left out, they change its expected best of {data.equal} trials from "
            f"{g.with_all:.4f} to {g.without:.4f} ({pct(g.without - g.with_all)} points): that estimate resamples "
            f"the trials that ran, so it cannot say what those {g.n} trials would have found elsewhere in the range.",
        ]
    return lines


def _lost_lines(lost: Mapping[str, Sequence[dict]]) -> list[str]:
    if not lost:
        return []

    def shown(points: Sequence[dict]) -> str:  # the points themselves where they are short enough to read
        return f" ({'; '.join(params_text(p) for p in points)})" if len(points[0]) <= 2 else ""

    each = "; ".join(f"{name} {len(points)}{shown(points)}" for name, points in lost.items())
    return [
        "",
        f"Points never trained: trials interrupted before their points were queued again, so the quasi-random "
        f"sequence moved on without them: {each}. Each sweep's finished trials are still its first points in "
        "order less these, not a chosen subset; a point lost near a sweep's best leaves that region thinner.",
    ]


def _edge_lines(found: Sequence[str]) -> list[str]:
    if not found:
        return []
    return [
        "",
        f"At the edge of the searched range (within {EDGE_SHARE:.0%} of it) in a sweep's best trial: "
        + "; ".join(found)
        + ". The best configuration there may lie outside the range, so that activation may be under-tuned.",
    ]


def _curves(data: Sweeps, page: figures.Page) -> list[str]:
    curves = {s.name: stats.expected_best(s.values, range(1, s.n + 1)) for s in data.sweeps if s.n}
    if not curves:
        return []
    figures.expected_best_curves(curves, f"expected best {OBJECTIVE}", page.path("expected_best"))
    return [
        "",
        "Expected best validation accuracy against the number of trials (Dodge et al. 2019): "
        "a curve that is still rising says the search has not converged.",
        "",
        page.link("expected best", "expected_best"),
    ]
