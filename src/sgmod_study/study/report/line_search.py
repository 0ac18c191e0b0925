"""Section "line_search": the tuned configurations above the sweeps' learning-rate ceiling.

The sweeps searched the network's lr up to 1e-2, and the best sigmoid, tanh and ReLU trials sat near
it. Each line-search part retrains one tuned configuration at several network lrs (1e-2 to 3e-2) on
two fresh seeds; the section's contrasts (``contrasts.line_search`` in the study) name the confirm
part each one is read against: the same configuration at its tuned lr on 10 seeds, the same kind
of machine. A line-search lr is flagged when its two-seed mean test accuracy lies above the upper
end of that confirm part's 95% interval: a screening rule, not a test; a flagged activation needs
its comparison widened and run again at an equal budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.record import Record, complete
from sgmod_study.study.report import figures
from sgmod_study.study.report.rows import config_value, table_head
from sgmod_study.study.spec import Study

LR = "optimizer.lr"


@dataclass
class Reference:
    part: str
    lr: float | None
    n: int
    mean: float
    low: float
    high: float


@dataclass
class Search:
    part: str
    question: str
    reference: Reference | None
    by_lr: dict[float, list[float]]  # {lr: test accuracies of its finished runs}
    planned: int

    def flagged(self) -> list[float]:
        """The lrs whose mean test accuracy is above the reference's 95% interval."""
        if self.reference is None or self.reference.n < 2:
            return []
        return [lr for lr, found in self.by_lr.items() if found and _mean(found) > self.reference.high]


@dataclass
class LineSearch:
    metric: str
    searches: list[Search] = field(default_factory=list)


def compute(study: Study, record: Record) -> LineSearch:
    references = {c.variant: c.reference for c in study.contrasts.get("line_search", ())}
    data = LineSearch(study.metric)
    for part in study.sections["line_search"]:
        runs = complete(record.rows(part))
        by_lr: dict[float, list[float]] = {}
        for row in sorted(runs, key=lambda r: r["params"][LR]):
            by_lr.setdefault(float(row["params"][LR]), []).append(float(row["metrics"][study.metric]))
        reference = references.get(part)
        found = _reference(reference, record.rows(reference), study.metric) if isinstance(reference, str) else None
        data.searches.append(Search(part, study.parts[part].question, found, by_lr, study.parts[part].trials))
    return data


def _reference(part: str, rows: Sequence[Mapping], metric: str) -> Reference | None:
    runs = complete(rows)
    if not runs:
        return None
    mean, _, low, high = stats.mean_ci([float(r["metrics"][metric]) for r in runs])
    return Reference(part, config_value(runs[0].get("config") or {}, LR), len(runs), mean, low, high)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def render(data: LineSearch, page: figures.Page) -> list[str]:
    lines = [
        page.title("line_search", "Above the learning-rate ceiling"),
        "",
        "The sweeps searched the network's learning rate up to 1e-2. Each tuned configuration again, at learning "
        "rates from 1e-2 up, on 2 fresh seeds (200, 201): mean test accuracy per learning rate, beside the same "
        "configuration at its tuned learning rate on 10 seeds (its confirm part, same kind of machine). Flagged: a "
        "learning rate whose 2-seed mean lies above that confirm part's 95% interval, a screening rule, not a test: "
        "where the learning rate changes nothing, the 2-seed mean's own spread flags about one learning rate in "
        "five (19% in simulation), so a flag asks for the wider comparison and does not show an improvement.",
    ]
    for search in data.searches:
        lines += ["", *_search_lines(search)]
    flagged = [s.part for s in data.searches if s.flagged()]
    done = [s for s in data.searches if sum(map(len, s.by_lr.values())) >= s.planned and s.reference]
    if done:
        lines += ["", _verdict(flagged, done)]
    return lines


def _search_lines(search: Search) -> list[str]:
    finished = sum(map(len, search.by_lr.values()))
    head = f"**{search.part}** ({search.question}; {finished} of {search.planned} runs)"
    if not finished:
        return [head + ": not run yet."]
    ref = search.reference
    against = (
        f"{ref.part}: lr {ref.lr:.3g}, {ref.n} seeds, mean {ref.mean:.4f} [{ref.low:.4f}, {ref.high:.4f}]"
        if ref
        else "its confirm part has no finished run yet"
    )
    rows = [
        f"| {lr:.3g} | {len(found)} | {_mean(found):.4f} | {' '.join(f'{v:.4f}' for v in found)} | "
        f"{'above' if lr in search.flagged() else ''} |"
        for lr, found in search.by_lr.items()
    ]
    return [f"{head}; against {against}:", "", *table_head(["lr", "runs", "mean", "runs' values", "flag"]), *rows]


def _verdict(flagged: Sequence[str], done: Sequence[Search]) -> str:
    names = ", ".join(s.part for s in done)
    if not flagged:
        return f"No learning rate above the ceiling beat its tuned configuration ({names}): the ceiling did not bind."
    return (
        f"Above the ceiling, {', '.join(flagged)} beat their tuned configuration at some learning rate: that "
        "comparison needs a wider search, run again at an equal budget, before its confirm contrasts can stand."
    )
