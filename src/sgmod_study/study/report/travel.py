"""Section "travel": how far learnable gamma/beta could move (the sum of their learning rate over
the steps) against how far they did, per layer, with the centred coordinate beta + gamma/2 and
gamma times the next layer's incoming weight norm; and the same over a Sgmod sweep's trials."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study.record import Record, complete
from sgmod_study.study.report import figures
from sgmod_study.study.report.rows import mean
from sgmod_study.study.sgmod_layers import has_channels, summary
from sgmod_study.study.spec import Study

# From the default (1, 0) to the zero-centred tanh point (2, -1): the distance a budget must allow.
TANH_DISTANCE = 1.0
COLUMNS = ("bound", "moved", "gamma", "beta", "centred", "gamma_w")
TABLE = [
    "| configuration | layer | n | could | moved | gamma | beta | beta + gamma/2 | gamma x w |",
    "|---|---|---|---|---|---|---|---|---|",
]


@dataclass
class Travel:
    part: str
    layers: dict[tuple[str, str], dict] = field(default_factory=dict)  # {(configuration, layer): means}
    groups: dict[str, list[Mapping]] = field(default_factory=dict)  # {configuration: its runs}


def learnable(row: Mapping) -> bool:
    """Whether a run's gamma or beta were trained (its activation config says so)."""
    act = (row.get("config") or {}).get("activation") or {}
    return bool(act.get("learn_gamma") or act.get("learn_beta"))


def learnable_groups(rows: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """The finished runs with learnable gamma/beta and their record, by variant."""
    groups: dict[str, list[Mapping]] = {}
    for row in complete(rows):
        if learnable(row) and (row.get("sgmod") or {}).get("layers"):
            groups.setdefault(row["params"]["activation"], []).append(row)
    return groups


def recorded(rows: Sequence[Mapping]) -> list[Mapping]:
    """The finished runs that carry a gamma/beta record."""
    return [r for r in complete(rows) if (r.get("sgmod") or {}).get("layers")]


def travel(groups: Mapping[str, Sequence[Mapping]]) -> dict[tuple[str, str], dict]:
    """Per (configuration, layer), means over its runs (one per seed): how far gamma/beta could
    move and did, and where they ended."""
    return {(name, layer): m for name, rows in groups.items() for layer, m in layer_travel(rows).items()}


def layer_travel(rows: Sequence[Mapping]) -> dict[str, dict]:
    """Per layer, means over the runs of one configuration."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        record, act = row["sgmod"], row["config"]["activation"]
        for layer, values in record["layers"].items():
            columns = out.setdefault(layer, {name: [] for name in COLUMNS})
            for name, value in _layer_values(values, act, record["activation_lr_sum"]).items():
                columns[name].append(value)
    return {
        layer: {name: mean(v) for name, v in values.items()} | {"n": len(values["bound"])}
        for layer, values in out.items()
    }


def _layer_values(values: Mapping, act: Mapping, bound: float) -> dict[str, float]:
    found = summary(values)
    return {
        "bound": bound,
        "moved": _farthest(found, act),
        "gamma": found["gamma_mean"],
        "beta": found["beta_mean"],
        "centred": found["centred_mean"],
        "gamma_w": found["gamma_w_mean"],
    }


def moved(layer: Mapping, act: Mapping) -> float:
    """The largest distance of any channel's gamma or beta of one layer from its init (the farthest
    channel is at one of the extremes)."""
    return _farthest(summary(layer), act)


def _farthest(found: Mapping, act: Mapping) -> float:
    """``moved`` from a layer's summary."""
    return max(abs(found[f"{p}_{end}"] - act[f"{p}_init"]) for p in ("gamma", "beta") for end in ("min", "max"))


def sweep_travel(rows: Sequence[Mapping]) -> dict | None:
    """Over the finished trials of a Sgmod sweep (each with its own gamma/beta learning rate):
    how far gamma/beta could move (sum of their learning rate) and how far they did (any layer)."""
    could, far = [], []
    for row in recorded(rows):
        act = (row.get("config") or {}).get("activation")
        if act:
            could.append(row["sgmod"]["activation_lr_sum"])
            far.append(max(moved(layer, act) for layer in row["sgmod"]["layers"].values()))
    if not could:
        return None
    return {
        "n": len(could),
        "could": sorted(could),
        "moved": sorted(far),
        "enough": sum(c >= TANH_DISTANCE for c in could),
    }


def compute(study: Study, record: Record) -> Travel:
    part = study.sections["travel"][0]
    groups = learnable_groups(record.rows(part))
    return Travel(part, travel(groups), groups)


def table_lines(layers: Mapping[tuple[str, str], Mapping]) -> list[str]:
    """The travel table ({(configuration, layer): means})."""
    return TABLE + [
        f"| {name} | {layer} | {m['n']} | {m['bound']:.2f} | {m['moved']:.2f} | {m['gamma']:.3f} | "
        f"{m['beta']:.3f} | {m['centred']:.3f} | {m['gamma_w']:.2f} |"
        for (name, layer), m in sorted(layers.items())
    ]


def channel_points(groups: Mapping[str, Sequence[Mapping]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{layer: {configuration: every channel's final (gamma, beta) over its runs}}."""
    points: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, rows in groups.items():
        for row in rows:
            for layer, values in row["sgmod"]["layers"].items():
                if has_channels(values):  # a wide layer's record keeps only its summary
                    points.setdefault(layer, {}).setdefault(name, []).extend(
                        zip(values["gamma"], values["beta"], strict=True)
                    )
    return points


def channel_figure(groups: Mapping[str, Sequence[Mapping]], page: figures.Page, name: str) -> bool:
    points = channel_points(groups)
    if points:
        figures.channel_scatter(points, page.path(name))
    return bool(points)


def render(data: Travel, page: figures.Page) -> list[str]:
    if not data.layers:
        return []
    lines = [
        page.title("travel", "How far gamma/beta could move, and did"),
        "",
        "`could` is the sum of gamma/beta's learning rate over the run's steps (with Adam, about the "
        "farthest a parameter can move); `moved` the largest distance of any channel's gamma or beta "
        "from its init; the centred coordinate is beta + gamma/2 (0 for tanh(x/2)); gamma x w is gamma "
        "times the norm of the next layer's weights reading that channel (what the next layer sees; "
        "the next layer can absorb gamma). Means over seeds.",
        "",
        *table_lines(data.layers),
    ]
    if channel_figure(data.groups, page, "gamma_beta_channels"):
        lines += [
            "",
            "Every channel's final gamma and beta over all seeds (the line: beta = -gamma/2, a centred tanh):",
            "",
            page.link("channels", "gamma_beta_channels"),
        ]
    return lines


def sweep_lines(part: str, moves: Mapping | None) -> list[str]:
    """How far gamma/beta could and did travel over a sweep's trials, in a sentence."""
    if not moves:
        return []
    could, far = moves["could"], moves["moved"]
    return [
        "",
        f"gamma/beta in {part} ({moves['n']} trials, each with its own gamma/beta learning rate): they could "
        f"travel {statistics.median(could):.2f} (median; {could[0]:.2f} to {could[-1]:.2f}) and moved "
        f"{statistics.median(far):.2f} (median; {far[0]:.2f} to {far[-1]:.2f}); {moves['enough']} of "
        f"{moves['n']} trials allowed the distance {TANH_DISTANCE:g} from (1, 0) to the centred tanh point (2, -1).",
    ]
