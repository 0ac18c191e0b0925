"""Section "gamma_by_layer": where the learnable Sgmod's gamma and beta ended, layer by layer, for
each part, learnable activation and depth: whether they grew in the lower layers (nearest the input).

Read from each finished run's ``sgmod["layers"]`` (the final gamma and beta of every channel of
every Sgmod layer ``net.layerK.act``, K = 1 at the input), the runs whose layers learn gamma. Per run
and layer, the mean over the channels; per run, the mean over the lower half of the hidden layers
minus the mean over the upper half (the middle layer of an odd depth in neither). The table gives
medians over the seeds and the share of seeds whose lower half ends above its upper half; the
figure the final gamma by layer at the part's largest depth. Diverged runs are left out."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import nan

from sgmod_study.study.record import Record, complete
from sgmod_study.study.report import figures
from sgmod_study.study.report.depth_grid import (
    GridPart,
    color,
    depths,
    grid,
    layer_index,
    marker,
    parts_lines,
    read_part,
    so_far,
)
from sgmod_study.study.report.rows import config_value, table_head
from sgmod_study.study.sgmod_layers import summary
from sgmod_study.study.spec import Study

PARAMETERS = ("gamma", "beta")


@dataclass
class Run:
    """One run's final values, each layer's mean over its channels: {parameter: {layer: value}}."""

    values: dict[str, dict[int, float]]

    def lower_minus_upper(self, parameter: str) -> float:
        """The lower half's mean minus the upper half's."""
        by_layer = self.values[parameter]
        layers = sorted(by_layer)
        half = len(layers) // 2
        lower, upper = layers[:half], layers[len(layers) - half :]
        return statistics.mean(by_layer[k] for k in lower) - statistics.mean(by_layer[k] for k in upper)


@dataclass
class Cell:
    """One learnable activation at one depth, over its finished runs."""

    depth: int
    init: dict[str, float | None]  # {parameter: its initial value}
    runs: list[Run]

    def median_at(self, parameter: str, layer: int) -> float | None:
        found = [r.values[parameter][layer] for r in self.runs if layer in r.values[parameter]]
        return statistics.median(found) if found else None

    def median_difference(self, parameter: str) -> float:
        return statistics.median(r.lower_minus_upper(parameter) for r in self.runs)

    def lower_above(self, parameter: str) -> int:
        """How many runs end with the lower half's mean above the upper half's."""
        return sum(r.lower_minus_upper(parameter) > 0 for r in self.runs)


@dataclass
class Part(GridPart):
    cells: dict[str, dict[int, Cell]] = field(default_factory=dict)  # {learnable activation: {depth: cell}}


@dataclass
class GammaByLayer:
    parts: list[Part]


def compute(study: Study, record: Record) -> GammaByLayer:
    found = []
    for name in study.sections["gamma_by_layer"]:
        about, rows = read_part(study, record, name)
        learnable = [r for r in complete(rows) if final_values(r)]
        cells = {a: {d: cell(d, runs) for d, runs in by_depth.items()} for a, by_depth in grid(learnable).items()}
        found.append(Part(**vars(about), cells=cells))
    return GammaByLayer(found)


def final_values(row: Mapping) -> dict[str, dict[int, float]]:
    """{parameter: {layer: the mean of its channels' final values}} over a run's hidden Sgmod layers
    that learn gamma; empty for a run without any."""
    layers = ((row.get("sgmod") or {}).get("layers")) or {}
    learned = {layer_index(n): v for n, v in layers.items() if v.get("learn_gamma") and layer_index(n) is not None}
    if not learned:
        return {}
    return {p: {k: summary(v)[f"{p}_mean"] for k, v in sorted(learned.items())} for p in PARAMETERS}


def cell(depth: int, runs: Sequence[Mapping]) -> Cell:
    config = runs[0].get("config") or {}
    init = {p: config_value(config, f"activation.{p}_init") for p in PARAMETERS}
    return Cell(depth, init, [Run(final_values(r)) for r in runs])


def render(data: GammaByLayer, page: figures.Page) -> list[str]:
    lines = [page.title("gamma_by_layer", "Gamma and beta by layer"), ""]
    ran = [p for p in data.parts if p.cells]
    if not ran:
        return [
            *lines,
            f"Not run yet (no finished run of a learnable Sgmod in parts {', '.join(p.name for p in data.parts)}).",
        ]
    lines += [
        "The final gamma and beta of the activations that learn them, each layer's mean over its channels "
        "(layer 1 at the input), over the finished runs of each activation at each depth. Layer columns: the "
        "median over the seeds. Lower - upper: the mean over the lower half of the hidden layers minus the mean "
        "over the upper half (the middle layer of an odd depth in neither), median over the seeds; lower > upper: "
        "the seeds whose lower half ends above its upper half. This is the parameter, not the gain the network "
        "sees: the next Linear layer can absorb any scale of gamma (only gamma times the norm of the weights that "
        "read the channel matters), and a LayerNorm after it cancels a scale shared by the layer's channels.",
    ]
    return lines + parts_lines(data.parts, _part_lines) + _figure(data, page)


def _part_lines(part: Part) -> list[str]:
    if not part.cells:
        return ["No finished run of a learnable Sgmod yet." if part.progress != "not run yet" else "Not run yet."]
    lines = so_far(part, " (all activations)") + table_head(
        [
            "activation",
            "depth",
            "runs",
            "gamma init",
            "layer 1",
            "layer depth/2",
            "last layer",
            "gamma lower - upper",
            "gamma lower > upper",
            "beta init",
            "beta lower - upper",
            "beta lower > upper",
        ]
    )
    for activation, by_depth in part.cells.items():
        lines += [_line(activation, c) for c in by_depth.values()]
    return lines


def _line(activation: str, c: Cell) -> str:
    n = len(c.runs)
    found = [
        activation,
        str(c.depth),
        str(n),
        _value(c.init["gamma"]),
        *(_value(c.median_at("gamma", k)) for k in (1, max(1, c.depth // 2), c.depth)),
        f"{c.median_difference('gamma'):+.3f}",
        f"{c.lower_above('gamma')}/{n}",
        _value(c.init["beta"]),
        f"{c.median_difference('beta'):+.3f}",
        f"{c.lower_above('beta')}/{n}",
    ]
    return "| " + " | ".join(found) + " |"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _figure(data: GammaByLayer, page: figures.Page) -> list[str]:
    panels = {}
    for part in data.parts:
        deepest = depths(part.cells)[-1] if part.cells else None
        title = f"{part.name}, depth {deepest}" if deepest else part.name
        panels[title] = [
            line for a, by_depth in part.cells.items() if deepest in by_depth for line in _lines(a, by_depth[deepest])
        ]
    figures.panel_grid(
        panels, "hidden layer (1 = input side)", "final gamma (mean over channels)", page.path("gamma_by_layer")
    )
    return [
        "",
        "The final gamma by layer at each part's largest depth: the median over the seeds (thick), each seed "
        "(thin), and the initial gamma (dotted):",
        "",
        page.link("final gamma by layer", "gamma_by_layer"),
    ]


def _lines(activation: str, c: Cell) -> list[figures.Line]:
    layers = list(range(1, c.depth + 1))
    tint = color(activation)
    seeds = [[r.values["gamma"].get(k, nan) for k in layers] for r in c.runs]
    lines = [figures.Line(layers, y, color=tint, width=0.6, alpha=0.35, marker="") for y in seeds]
    medians = [nan if (m := c.median_at("gamma", k)) is None else m for k in layers]
    lines.append(figures.Line(layers, medians, activation, color=tint, width=2.0, marker=marker(activation)))
    if c.init["gamma"] is not None:
        lines.append(figures.Line([1, c.depth], [c.init["gamma"]] * 2, color=tint, style=":", marker=""))
    return lines
