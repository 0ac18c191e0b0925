"""Section "confirm": the sweeps' chosen configurations retrained on fresh seeds. Their means,
each sweep's best validation score beside its configuration's fresh-seed mean (the winner's
curse), the study's contrasts paired by seed (Holm-corrected together), how large the machine's
own effect is where they ran on GPUs and CPUs, and where their gamma/beta ended."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.choose import best_row
from sgmod_study.study.record import Record, complete, is_gpu, machine_name
from sgmod_study.study.report import figures, paired, travel
from sgmod_study.study.report.controls import resolve
from sgmod_study.study.report.rows import (
    OBJECTIVE,
    by_seed,
    config_value,
    interval_cell,
    machine_kind,
    mean,
    metric_words,
    prose,
    settings,
)
from sgmod_study.study.spec import Study


@dataclass
class Configuration:
    part: str
    label: str
    n: int
    mean: float
    low: float
    high: float
    settings: str
    machines: str
    kind: str  # GPU, CPU or GPU/CPU


@dataclass
class Curse:
    """A sweep's best trial against the mean of the same configuration on fresh seeds."""

    sweep: str
    best: float
    label: str
    n: int
    mean: float
    low: float
    high: float
    metric: str


@dataclass
class Confirm:
    metric: str
    margins: tuple[float, ...]
    intro: str = ""
    configurations: list[Configuration] = field(default_factory=list)
    twins: list[tuple[str, str]] = field(default_factory=list)  # (GPU label, CPU label), same configuration
    curse: list[Curse] = field(default_factory=list)
    moved: list[tuple[str, str, list[tuple[str, float, float]]]] = field(default_factory=list)
    contrasts: list[dict] = field(default_factory=list)  # Holm-corrected together
    family: int = 0  # the primary contrasts declared: Holm's correction counts them all
    mixed: bool = False  # ran on GPUs and CPUs
    controls_effect: dict | None = None  # GPU minus CPU from the controls (unpaired)
    twin_effects: list[dict] = field(default_factory=list)  # GPU minus CPU, the twins paired by seed
    layers: dict = field(default_factory=dict)  # where their gamma/beta ended
    groups: dict = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # the parts with no finished run


def compute(study: Study, record: Record) -> Confirm:
    parts = study.sections["confirm"]
    runs = {name: complete(record.rows(name)) for name in parts}
    labels = {name: study.parts[name].label for name in parts}
    data = Confirm(study.metric, paired.margins_of(study), intro=intro(study, parts))
    data.waiting = [name for name in parts if not runs[name]]
    data.configurations = [
        _configuration(name, labels[name], rows, study.metric) for name, rows in runs.items() if rows
    ]
    ran = {name: rows for name, rows in runs.items() if rows}
    data.twins = [(labels[g], labels[c]) for g, c in replicates(ran)]
    data.curse = [c for name in parts if (c := curse(study, record, name, runs[name]))]
    data.moved = [m for name in parts if (m := moved(study, record, name, runs[name]))]
    data.family = paired.family(study, "confirm")
    data.contrasts = contrasts(study, runs, labels, data.margins, data.family)
    data.mixed = len({is_gpu(r) for rows in ran.values() for r in rows}) > 1
    data.controls_effect = controls_effect(study, record)
    data.twin_effects = [twin_effect(g, c, ran, labels, study.metric) for g, c in replicates(ran)]
    data.groups = {labels[n]: kept for n, rows in ran.items() if (kept := [r for r in rows if _recorded(r)])}
    data.layers = travel.travel(data.groups)
    return data


def _recorded(row: Mapping) -> bool:
    return travel.learnable(row) and bool((row.get("sgmod") or {}).get("layers"))


def intro(study: Study, parts: Sequence[str]) -> str:
    """Which configurations the confirm parts retrain, on which seeds."""
    recommended = [study.parts[n] for n in parts if study.parts[n].pick == "recommended"]
    each = "".join(
        f", and the recommended {prose(study.parts[p.of].label)} default (`{p.label}`: the rounded medians of "
        f"{p.of}'s top quarter{_changed(p)})"
        for p in recommended
    )
    seeds = sorted({s for n in parts for s in study.parts[n].seeds})
    span = (
        f"{seeds[0]}-{seeds[-1]}"
        if seeds and seeds == list(range(seeds[0], seeds[-1] + 1))
        else ", ".join(map(str, seeds))
    )
    return f"The best configuration of each sweep{each}, retrained on seeds {span}; {metric_words(study.metric)}."


def _changed(part) -> str:
    changes = part.changes()
    return f", but {', '.join(f'`{c}`' for c in changes)}" if changes else ""


def _configuration(name: str, label: str, rows: Sequence[Mapping], metric: str) -> Configuration:
    values = list(by_seed(rows, metric).values())
    average, _, low, high = stats.mean_ci(values)
    names = "; ".join(sorted({machine_name(r) for r in rows}))
    return Configuration(name, label, len(values), average, low, high, settings(rows), names, machine_kind(rows))


def replicates(runs: Mapping[str, Sequence[Mapping]]) -> list[tuple[str, str]]:
    """(GPU part, CPU part) pairs of configurations that are the same but for the machine."""

    def configuration(rows: Sequence[Mapping]) -> dict:
        return {k: v for k, v in (rows[0].get("config") or {}).items() if k != "seed"}

    on_gpu = [n for n, rows in runs.items() if all(is_gpu(r) for r in rows)]
    on_cpu = [n for n, rows in runs.items() if not any(is_gpu(r) for r in rows)]
    return [
        (g, c)
        for g in on_gpu
        for c in on_cpu
        if configuration(runs[g]) and configuration(runs[g]) == configuration(runs[c])
    ]


def curse(study: Study, record: Record, name: str, rows: Sequence[Mapping]) -> Curse | None:
    """The best trial of the sweep a "best" confirm part retrains, against its fresh-seed mean of
    the sweep's objective (else of the objective the confirm rows give as their value)."""
    part = study.parts[name]
    best = best_row(record.rows(part.of), study.maximize) if part.pick == "best" and part.of else None
    if best is None or not rows:
        return None
    values = [r["metrics"][OBJECTIVE] for r in rows if OBJECTIVE in r["metrics"]]
    metric = OBJECTIVE if len(values) == len(rows) else "the runs' objective (their first value)"
    values = values if metric == OBJECTIVE else [r["values"][0] for r in rows]
    average, _, low, high = stats.mean_ci(values)
    return Curse(part.of, best["values"][0], part.label, len(values), average, low, high, metric)


def moved(study: Study, record: Record, name: str, rows: Sequence[Mapping]) -> tuple | None:
    """A recommended default's network parameters (not the activation's) that differ from where
    its sweep started (trial 0): (label, sweep, [(parameter, start, retrained)])."""
    part = study.parts[name]
    first = next((r for r in record.rows(part.of) if r.get("number") == 0), None) if part.of else None
    config = rows[0].get("config") if rows else None
    if part.pick != "recommended" or first is None or not config:
        return None
    found = [
        (key, value, config_value(config, key))
        for key, value in first["params"].items()
        if not key.startswith("activation.") and isinstance(config_value(config, key), int | float)
    ]
    found = [f for f in found if not math.isclose(f[1], f[2], rel_tol=1e-9)]
    return (part.label, part.of, found) if found else None


def contrasts(
    study: Study,
    runs: Mapping[str, Sequence[Mapping]],
    labels: Mapping[str, str],
    margins: Sequence[float],
    family: int,
) -> list[dict]:
    """The study's confirm contrasts, paired by seed; the primary ones Holm-corrected over ``family``."""
    tables = {name: by_seed(rows, study.metric) for name, rows in runs.items() if rows}
    means = {name: mean(list(t.values())) for name, t in tables.items() if t}
    rows = []
    for contrast in study.contrasts.get("confirm", ()):
        variant, reference = resolve(contrast.variant, means), resolve(contrast.reference, means)
        if variant and reference:
            kinds = (machine_kind(runs[variant]), machine_kind(runs[reference]))
            rows.append(
                {
                    "variant": labels[variant],
                    "reference": labels[reference],
                    "kinds": kinds,
                    "question": contrast.question,
                    "primary": contrast.primary,
                    **paired.compare(tables[variant], tables[reference], margins),
                }
            )
    paired.correct_holm([r for r in rows if r["primary"]], family)
    return rows


def controls_effect(study: Study, record: Record) -> dict | None:
    """GPU minus CPU from the controls, whose seeds of each variant were split between a GPU and
    CPUs: ``stats.pooled_difference`` over the variants (unpaired, other seeds on each side)."""
    cells: dict[str, dict[bool, list[float]]] = {}
    for name in study.sections.get("controls", ()):
        for row in complete(record.rows(name)):
            side = cells.setdefault(row["params"]["activation"], {True: [], False: []})
            side[is_gpu(row)].append(row["metrics"][study.metric])
    return stats.pooled_difference([(c[True], c[False]) for c in cells.values()])


def twin_effect(gpu: str, cpu: str, runs: Mapping, labels: Mapping[str, str], metric: str) -> dict:
    """GPU minus CPU from one configuration retrained on both, paired by seed."""
    row = stats.paired(by_seed(runs[gpu], metric), by_seed(runs[cpu], metric), ())
    return {"gpu": labels[gpu], "cpu": labels[cpu], **row}


def render(data: Confirm, page: figures.Page) -> list[str]:
    lines = [page.title("confirm", "Tuned against tuned, on fresh seeds"), ""]
    if not data.configurations:
        return [*lines, f"Not run yet (no finished run in part {', '.join(data.waiting)})."]
    lines += [
        data.intro,
        "",
        "| configuration | n | mean | 95% CI | settings | machines |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_configuration_line(c) for c in data.configurations]
    if data.twins:
        lines += ["", "; ".join(f"`{c}` is `{g}` again (its settings and seeds) on a CPU" for g, c in data.twins) + "."]
    lines += _moved_lines(data) + _curse_lines(data) + _contrast_lines(data) + _machine_lines(data)
    return lines + _travel_lines(data, page)


def _configuration_line(c: Configuration) -> str:
    interval = interval_cell(c.low, c.high)
    return f"| {c.label} | {c.n} | {c.mean:.4f} | {interval} | {c.settings} | {c.machines} |"


def _moved_lines(data: Confirm) -> list[str]:
    lines = []
    for label, sweep, found in data.moved:
        each = ", ".join(f"{key} {begin:g} -> {value:g}" for key, begin, value in found)
        lines += [
            "",
            f"`{label}` also moves the network's own parameters from where {sweep} started (its trial 0, the "
            f"defaults): {each}. Nothing in the record yet separates the effect of its gamma/beta init from that "
            "of these.",
        ]
    return lines


def _curse_lines(data: Confirm) -> list[str]:
    if not data.curse:
        return []
    metrics = sorted({c.metric for c in data.curse})
    lines = [
        "",
        "Winner's curse: a sweep's best trial is the best of many, so its validation score overstates what its "
        f"configuration scores on fresh seeds. Each sweep's best {' / '.join(metrics)} beside the mean of the same "
        "configuration retrained on the fresh seeds, and their difference in percentage points:",
        "",
        "| sweep | best trial | retrained as | n | fresh seeds: mean [95% CI] | difference |",
        "|---|---|---|---|---|---|",
    ]
    for c in data.curse:
        interval = interval_cell(c.low, c.high)
        lines.append(
            f"| {c.sweep} | {c.best:.4f} | {c.label} | {c.n} | {c.mean:.4f} {interval} "
            f"| {paired.pct(c.mean - c.best)} |"
        )
    return lines


def _contrast_lines(data: Confirm) -> list[str]:
    if not data.contrasts:
        return []
    return [
        "",
        "Paired by seed, differences in percentage points:",
        "",
        *paired.header(["variant - reference", "machines"], data.margins),
        *(paired.line([_contrast_name(r), " - ".join(r["kinds"])], r, data.margins) for r in data.contrasts),
        "",
        paired.tests_note(data.margins),
        *paired.family_note([r for r in data.contrasts if r["primary"]], data.family),
    ]


def _contrast_name(row: Mapping) -> str:
    named = f"{row['variant']} - {row['reference']}"
    named += f" ({row['question']})" if row["question"] else ""
    return named if row["primary"] else f"{named} (secondary)"


def effect_lines(data: Confirm) -> list[str]:
    """The machine's own effect, GPU minus CPU, as list items."""
    lines = []
    e = data.controls_effect
    if e:
        lines.append(
            f"- from the controls, whose seeds ran partly on a GPU and partly on CPUs ({e['cells']} variants "
            f"with at least two runs on each side, {e['runs']} runs, unpaired): {paired.pct(e['mean'])} points "
            f"[{paired.pct(e['low'])}, {paired.pct(e['high'])}];"
        )
    for t in data.twin_effects:
        lines.append(
            f"- {t['gpu']} on a GPU minus {t['cpu']}, the same configuration and seeds on a CPU (paired, {t['n']} "
            f"seeds): {paired.pct(t['mean'])} points [{paired.pct(t['low'])}, {paired.pct(t['high'])}];"
        )
    return lines


def _machine_lines(data: Confirm) -> list[str]:
    if not data.mixed:
        return []
    return [
        "",
        "These configurations did not all run on one kind of machine (the table's last column; GPU convolutions "
        "use TF32, the CPUs float32), so a paired difference between a GPU and a CPU configuration also holds "
        "the machine's own effect, GPU minus CPU:",
        "",
        *effect_lines(data),
        "",
        "A difference between machines well outside these intervals is not the machine's.",
    ]


def _travel_lines(data: Confirm, page: figures.Page) -> list[str]:
    if not data.layers:
        return []
    number = page.numbers.get("travel")
    columns = (
        f"the columns as in section {number}"
        if number
        else "`could`: the sum of gamma/beta's learning rate over the steps; `moved`: the farthest channel's "
        "distance from its init; gamma x w: gamma times the next layer's weight norm"
    )
    lines = [
        "",
        f"Where their gamma/beta ended ({columns}; means over the seeds, the inits are the settings above):",
        "",
        *travel.table_lines(data.layers),
    ]
    if travel.channel_figure(data.groups, page, "gamma_beta_tuned"):
        lines += ["", page.link("tuned channels", "gamma_beta_tuned")]
    return lines
