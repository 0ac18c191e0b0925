"""Section "importance": what matters in a sweep. fANOVA importances (the mean over several
forests, a bootstrap interval over the trials) in the searched coordinates and with the derived
log(|beta_init|/gamma_init) added, PED-ANOVA on the top trials, how many trials failed to train
and where, which parameters show no effect (with the bound on it), which values work (the top
quarter against the searched range) and how the recommended default moves from the sweep's start."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.choose import is_log, rounded, top_trials, typical
from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.rows import FAILING, OBJECTIVE, prose
from sgmod_study.study.spec import Study

GAMMA, BETA = "activation.gamma_init", "activation.beta_init"
RATIO = "log(|beta_init|/gamma_init)"
FAILING_RATIO = 5.0  # |beta_init| / gamma_init above this: where the failing trials gather
# An importance whose bootstrap interval starts below this (0.00 in the table) is not told from none.
NO_EFFECT = 0.005
PED_QUANTILE = 0.1


@dataclass
class Failures:
    total: int
    failing: int  # trials validating below FAILING
    at_ratio: int  # of them with |beta|/gamma > FAILING_RATIO
    ratio: int  # all trials with |beta|/gamma > FAILING_RATIO


@dataclass
class Importance:
    part: str
    n: int  # finished trials
    seeds: int
    rounds: int
    searched: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    with_ratio: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    ratio_left_out: int = 0  # trials without a finite ratio (beta_init = 0)
    ped: dict[str, float] = field(default_factory=dict)
    failures: Failures | None = None
    no_effect: list[tuple[str, float]] = field(default_factory=list)  # (parameter, upper bound)
    values: list[dict] = field(default_factory=list)  # the top quarter against the searched range
    top: tuple[int, float, float] = (0, math.nan, math.nan)  # its size, lowest and highest score
    moved: list[tuple[str, float, float]] = field(default_factory=list)  # (parameter, start, recommended)
    start: tuple[int, bool] | None = None  # the trial the sweep started at, and whether it was enqueued
    confirms: list[str] = field(default_factory=list)  # the parts that retrain the recommended default
    trials: list = field(default_factory=list)


def log_ratio(params: Mapping) -> float:
    """log(|beta_init| / gamma_init); -inf (left out) at beta_init = 0."""
    beta = abs(params[BETA])
    return math.log(beta / params[GAMMA]) if beta > 0 else -math.inf


def ratio_trials(trials: Sequence) -> list:
    """The finished trials with the coordinate log(|beta_init|/gamma_init) added."""
    done = [t for t in stats.finished(trials) if GAMMA in t.params and BETA in t.params]
    values = [x for t in done if math.isfinite(x := log_ratio(t.params))]
    if not values:
        return []
    return stats.with_coordinate(done, RATIO, log_ratio, min(values), max(values))


def failures(trials: Sequence) -> Failures | None:
    """How many trials validate below FAILING, and how many of them at |beta|/gamma > FAILING_RATIO."""
    done = [t for t in stats.finished(trials) if GAMMA in t.params and BETA in t.params]
    if not done:
        return None
    wide = {t.number for t in done if abs(t.params[BETA]) / t.params[GAMMA] > FAILING_RATIO}
    failing = [t for t in done if t.values[0] < FAILING]
    return Failures(len(done), len(failing), sum(t.number in wide for t in failing), len(wide))


def no_effect(importances: Mapping[str, tuple[float, float, float]]) -> list[tuple[str, float]]:
    """The parameters whose importance interval reaches (almost) zero, with its upper end."""
    return [(name, high) for name, (_, low, high) in importances.items() if low < NO_EFFECT]


def good_values(trials: Sequence, maximize: bool = True) -> tuple[tuple[int, float, float], list[dict]]:
    """Each searched parameter over the top quarter of the finished ``trials`` (median, geometric
    on a log scale, and range) against the searched range, the best trial's value and the rounded
    median (the recommended default)."""
    top = top_trials(trials, maximize=maximize)
    table = []
    for key in sorted(top[0].params):
        dist, values, log = top[0].distributions[key], [t.params[key] for t in top], is_log(top[0], key)
        middle = typical(top, key)
        table.append(
            {
                "parameter": key,
                "low": dist.low,
                "high": dist.high,
                "log": log,
                "best": top[0].params[key],
                "median": middle,
                "min": min(values),
                "max": max(values),
                "recommended": rounded(middle, log),
            }
        )
    return (len(top), top[-1].values[0], top[0].values[0]), table


def start(study_trials: Sequence):
    """The trial the sweep started at: its first enqueued trial (else trial 0), or None."""
    enqueued = [t for t in study_trials if t.system_attrs.get("fixed_params")]
    return enqueued[0] if enqueued else next((t for t in study_trials if t.number == 0), None)


def moved(begin: Mapping, values: Sequence[Mapping]) -> list[tuple[str, float, float]]:
    """The network's parameters (not the activation's) whose recommended value left the start."""
    return [
        (v["parameter"], begin[v["parameter"]], v["recommended"])
        for v in values
        if not v["parameter"].startswith("activation.")
        and v["parameter"] in begin
        and not math.isclose(begin[v["parameter"]], v["recommended"], rel_tol=1e-9)
    ]


def compute(study: Study, record: Record, seeds: int = 10, rounds: int = 200) -> Importance | None:
    part = study.sections["importance"][0]
    if not record.has_journal(part):
        return None
    everything = record.load(part).get_trials(deepcopy=False)
    data = of_trials(part, everything, seeds, rounds, study.maximize)
    data.confirms = [
        p.name for p in study.parts.values() if p.of == part and p.pick == "recommended" and not p.changes()
    ]
    return data


def of_trials(part: str, trials: Sequence, seeds: int = 10, rounds: int = 200, maximize: bool = True) -> Importance:
    """The section's numbers from a sweep's trials (all of them, finished or not)."""
    done = stats.finished(trials)
    data = Importance(part, len(done), seeds, rounds, trials=done)
    data.searched = stats.fanova(done, seeds=seeds, rounds=rounds)
    if not data.searched:
        return data
    added = ratio_trials(done)
    if added:
        data.with_ratio = stats.fanova(added, seeds=seeds, rounds=rounds)
        data.ratio_left_out = len(done) - len(added)
    data.ped = stats.ped_anova(added or done, target_quantile=PED_QUANTILE, maximize=maximize)
    data.failures = failures(done)
    data.no_effect = no_effect(data.searched)
    data.top, data.values = good_values(done, maximize)
    first = start(trials)
    if first is not None:
        data.moved = moved(first.params, data.values)
        data.start = (first.number, bool(first.system_attrs.get("fixed_params")))
    return data


def render(data: Importance | None, page: figures.Page) -> list[str]:
    if data is None:
        return []
    lines = [page.title("importance", f"What matters in the {prose(data.part.removeprefix('sweep_'))} sweep"), ""]
    if not data.searched:
        return [*lines, "Fewer than 8 finished trials: no importances yet."]
    lines += [*_importance_lines(data), *_failure_lines(data), *_no_effect_lines(data), "", *_values_lines(data)]
    lines += _moved_lines(data)
    if not data.trials:
        return lines
    name = f"{data.part.removeprefix('sweep_')}_marginals"
    figures.marginals(data.trials, page.path(name))
    return [*lines, "", page.link("marginals", name)]


def _cell(value: tuple[float, float, float] | None) -> str:
    return "-" if value is None else f"{value[0]:.2f} [{value[1]:.2f}, {value[2]:.2f}]"


def _importance_lines(data: Importance) -> list[str]:
    ratio = bool(data.with_ratio)
    intro = (
        f"fANOVA importance (share of the variance of {OBJECTIVE}): the mean over {data.seeds} forests on all "
        f"{data.n} trials, with a 95% bootstrap interval over the trials ({data.rounds} resamples, each with a "
        "forest of its own), in the searched coordinates"
    )
    if ratio:
        k = data.ratio_left_out
        left = f" (left out there: {k} trial{'s' if k != 1 else ''} at beta_init = 0, where it is not finite)"
        intro += f" and with {RATIO} added{left if data.ratio_left_out else ''}"
    intro += (
        f"; PED-ANOVA importance (Watanabe et al. 2023): how much the top {PED_QUANTILE:.0%} of the trials "
        f"concentrate in each parameter against all of them{', with the ratio added' if ratio else ''}."
    )
    names = sorted(
        set(data.searched) | set(data.with_ratio) | set(data.ped),
        key=lambda n: -max(data.searched.get(n, (0,))[0], data.with_ratio.get(n, (0,))[0]),
    )
    head = ["parameter", "fANOVA, searched [95% CI]"] + ([f"fANOVA, with {RATIO} [95% CI]"] if ratio else [])
    head.append(f"PED-ANOVA, top {PED_QUANTILE:.0%}")
    lines = [intro, "", _row(head), "|" + "---|" * len(head)]
    for name in names:
        cells = [name, _cell(data.searched.get(name))] + ([_cell(data.with_ratio.get(name))] if ratio else [])
        cells.append(f"{data.ped[name]:.2f}" if name in data.ped else "-")
        lines.append(_row(cells))
    return lines


def _row(cells: Sequence[str]) -> str:
    """A Markdown table row; a | inside a cell is escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _failure_lines(data: Importance) -> list[str]:
    f = data.failures
    if f is None or not f.failing:
        return []
    return [
        "",
        f"Trials that failed to train: {f.failing} of the {f.total} trials validate below {FAILING:.2f}, "
        f"{f.at_ratio} of them with |beta_init|/gamma_init > {FAILING_RATIO:g} ({f.ratio} trials have a ratio "
        f"above {FAILING_RATIO:g} in all).",
    ]


def _no_effect_lines(data: Importance) -> list[str]:
    if not data.no_effect:
        return []
    each = [f"{name} (importance at most {high:.2f})" for name, high in data.no_effect]
    each = " and ".join([", ".join(each[:-1]), each[-1]] if len(each) > 1 else each)
    return [
        "",
        f"No effect detected for {each}: the lower end of their 95% interval is below {NO_EFFECT:g} (0.00 "
        "above); the bound is the interval's upper end, the bootstrap 97.5th percentile of their importance "
        "in the searched coordinates.",
    ]


def _values_lines(data: Importance) -> list[str]:
    size, low, high = data.top
    retrains = ", ".join(f"`{name}`" for name in data.confirms)
    lines = [
        f"Which values work: the top quarter of the trials ({size} of {data.n}, {OBJECTIVE} {low:.4f} to "
        f"{high:.4f}) against the searched range. A top-quarter range as wide as the searched one shows no "
        "effect of that parameter; the recommended default is the medians, rounded"
        + (f", what {retrains} retrains on fresh seeds." if retrains else "."),
        "",
        "| parameter | searched | best trial | top quarter: median [min, max] | recommended default |",
        "|---|---|---|---|---|",
    ]
    for v in data.values:
        lines.append(
            f"| {v['parameter']} | {v['low']:.3g} to {v['high']:.3g}{' (log)' if v['log'] else ''} | {v['best']:.3g} "
            f"| {v['median']:.3g} [{v['min']:.3g}, {v['max']:.3g}] | {v['recommended']:g} |"
        )
    return lines


def _moved_lines(data: Importance) -> list[str]:
    if not data.moved:
        return []
    each = ", ".join(f"{name} {begin:g} -> {value:g}" for name, begin, value in data.moved)
    number, enqueued = data.start
    return [
        "",
        "The recommended default also moves the network's own parameters from where the sweep started (trial "
        f"{number}{', enqueued at the defaults' if enqueued else ''}): {each}. Nothing in the record yet separates "
        "the effect of the gamma/beta init from that of these.",
    ]
