"""Section "gradients": how the gradient's size changes over the depth, for each part, activation
and depth, at the optimizer steps STEPS.

Read from each run's ``curves["grad_norm/net.layerK.fc"]``: the L2 norm of the gradient of the
training loss (on that step's batch, before the optimizer step) with respect to hidden layer K's
weight matrix, K = 1 at the input; the output layer (``net.out``) is left out. Per run and step, the
least-squares slope b of log10(norm) against K over the hidden layers 2..depth: b > 0 is a gradient
that shrinks toward the input (vanishing), b < 0 one that grows toward it (exploding); b (depth - 2)
is the fitted change in decades from the last hidden layer to the second. Layer 1 is left out of the
fit (not the figure): a weight gradient's norm scales with its layer's input, and layer 1's input is
the standardized image (784 values of unit variance), not the 256 activations every other hidden
layer reads, so its norm differs by an activation-dependent factor (1.8-2.6x for ReLU, tanh, sigmoid)
that would tilt the slope, most at depth 4. A run (a diverged one too,
at the steps it logged) is left out at a step its curves lack, or where a layer's norm is missing,
zero or not finite. The table gives the median slope over the seeds; the figure the median norm by
layer at the part's largest depth."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.depth_grid import (
    GridPart,
    color,
    curve,
    depth_of,
    depths,
    grid,
    layer_index,
    marker,
    parts_lines,
    read_part,
    so_far,
    steps_per_epoch,
    waiting,
)
from sgmod_study.study.report.outcomes import results
from sgmod_study.study.report.rows import table_head
from sgmod_study.study.spec import Study

STEPS = (0, 50, 500)  # the optimizer steps the slopes are taken at
FIRST_FITTED = 2  # the first hidden layer in the slope's fit (layer 1 reads the image: see above)
PREFIX, SUFFIX = "grad_norm/", ".fc"  # a hidden layer's Linear: grad_norm/net.layer3.fc


@dataclass
class Cell:
    """One activation at one depth: each run's slope at each step."""

    runs: int  # with a result (finished or diverged)
    slopes: dict[int, list[float]]  # {step: the slope of each run that has one there}

    def median(self, step: int) -> float | None:
        found = self.slopes.get(step)
        return statistics.median(found) if found else None


@dataclass
class Profile:
    """The median over seeds of the gradient norm at each hidden layer, at one step."""

    activation: str
    step: int
    layers: list[int]
    norms: list[float]


@dataclass
class Part(GridPart):
    cells: dict[str, dict[int, Cell]] = field(default_factory=dict)  # {activation: {depth: cell}}
    deepest: int | None = None
    profiles: list[Profile] = field(default_factory=list)  # at the deepest depth

    @property
    def steps(self) -> list[int]:
        """The steps of STEPS any of its runs has a slope at."""
        return [s for s in STEPS if any(c.slopes.get(s) for d in self.cells.values() for c in d.values())]


@dataclass
class Gradients:
    parts: list[Part]
    steps_per_epoch: int | None


def compute(study: Study, record: Record) -> Gradients:
    found, every = [], []
    for name in study.sections["gradients"]:
        about, rows = read_part(study, record, name)
        every += results(rows)
        part = Part(**vars(about))
        table = grid(rows)
        part.cells = {a: {d: cell(runs) for d, runs in by_depth.items()} for a, by_depth in table.items()}
        if table:
            part.deepest = depths(table)[-1]
            part.profiles = profiles(table, part.deepest)
        found.append(part)
    return Gradients(found, steps_per_epoch(every))


def layer_norms(row: Mapping, step: int) -> dict[int, float]:
    """{hidden layer K: its weight gradient's norm at ``step``}, the layers logged at that step."""
    found = {}
    for tag in row.get("curves") or {}:
        index = layer_index(tag) if tag.startswith(PREFIX) and tag.endswith(SUFFIX) else None
        at = dict(curve(row, tag)) if index is not None else {}
        if step in at:
            found[index] = at[step]
    return found


def complete_norms(row: Mapping, step: int) -> dict[int, float] | None:
    """``layer_norms`` where every hidden layer 1..depth has a positive, finite norm, and the fit has two
    layers or more; else None."""
    norms = layer_norms(row, step)
    usable = set(norms) == set(range(1, depth_of(row) + 1)) and len(norms) > FIRST_FITTED
    return norms if usable and all(0 < v < math.inf for v in norms.values()) else None


def slope(norms: Mapping[int, float]) -> float:
    """The least-squares slope of log10(norm) against the layer number, over layers FIRST_FITTED on."""
    x = [k for k in norms if k >= FIRST_FITTED]
    y = [math.log10(norms[k]) for k in x]
    mean_x, mean_y = sum(x) / len(x), sum(y) / len(y)
    spread = sum((k - mean_x) ** 2 for k in x)
    return sum((k - mean_x) * (v - mean_y) for k, v in zip(x, y, strict=True)) / spread


def cell(runs: Sequence[Mapping]) -> Cell:
    slopes: dict[int, list[float]] = {}
    for step in STEPS:
        found = [norms for r in runs if (norms := complete_norms(r, step)) is not None]
        if found:
            slopes[step] = [slope(n) for n in found]
    return Cell(len(runs), slopes)


def profiles(table: Mapping[str, Mapping[int, Sequence[Mapping]]], depth: int) -> list[Profile]:
    """The median norm by layer at ``depth``, for each activation, at the first and the last step of
    STEPS any run at that depth logged."""
    norms = {
        (activation, step): found
        for activation, by_depth in table.items()
        for step in STEPS
        if (found := [n for r in by_depth.get(depth, ()) if (n := complete_norms(r, step))])
    }
    logged = sorted({step for _, step in norms})
    layers = list(range(1, depth + 1))
    return [
        Profile(activation, step, layers, [statistics.median(n[k] for n in norms[activation, step]) for k in layers])
        for activation in table
        for step in dict.fromkeys(logged[:1] + logged[-1:])
        if (activation, step) in norms
    ]


def render(data: Gradients, page: figures.Page) -> list[str]:
    lines = [page.title("gradients", "Gradient norms by depth"), ""]
    ran = [p for p in data.parts if p.cells]
    if not ran:
        return [*lines, waiting([p.name for p in data.parts])]
    epoch = f" (an epoch is {data.steps_per_epoch} steps)" if data.steps_per_epoch else ""
    lines += [
        "The gradient's norm with respect to each hidden layer's weight matrix (layer 1 at the input; the "
        "output layer left out), on the batch of optimizer step 0 (at initialisation), 50 and 500"
        f"{epoch}. For each run and step, b is the least-squares slope of log10(norm) against the layer "
        f"number, over layers {FIRST_FITTED} to the last: **b > 0 means the gradient shrinks toward the "
        "input (vanishing), b < 0 that it grows toward the input (exploding)**. A diverged run counts at "
        "the steps it logged; a run is left out at a step where a layer's norm is missing, zero or not "
        "finite. Each cell is the median b over the seeds (their number in brackets where fewer than the "
        f"runs); the last column is that median times (depth - {FIRST_FITTED}) at the largest depth: the "
        f"fitted change in decades from the last hidden layer to layer {FIRST_FITTED}. Layer 1 is in the "
        "figure but not the fit: a weight gradient's norm scales with the layer's input, and layer 1 reads "
        "the image (784 standardized pixels), not 256 activations as the others do, which alone moves its "
        "norm by a factor that depends on the activation.",
    ]
    return lines + parts_lines(data.parts, _part_lines) + _figure(data, page)


def _part_lines(part: Part) -> list[str]:
    if not part.cells:
        return ["Not run yet."]
    shown = depths(part.cells)
    lines = so_far(part) + table_head(
        ["activation", "step", *(f"depth {d}" for d in shown), f"decades over depth {shown[-1]}"]
    )
    for activation, by_depth in part.cells.items():
        for step in part.steps:
            found = [_slope_text(by_depth.get(d), step) for d in shown]
            deepest = by_depth.get(shown[-1])
            median = deepest.median(step) if deepest else None
            decades = "-" if median is None else f"{median * (shown[-1] - FIRST_FITTED):+#.3g}"
            lines.append(f"| {activation} | {step} | " + " | ".join(found) + f" | {decades} |")
    missing = [s for s in STEPS if s not in part.steps]
    if missing:
        lines += ["", f"No run has reached step {' or '.join(map(str, missing))} (or logged its gradients there)."]
    return lines


def _slope_text(c: Cell | None, step: int) -> str:
    median = c.median(step) if c else None
    if median is None:
        return "-"
    n = len(c.slopes[step])
    return f"{median:+#.3g}" if n == c.runs else f"{median:+#.3g} ({n})"


def _figure(data: Gradients, page: figures.Page) -> list[str]:
    panels = {}
    for part in data.parts:
        steps = sorted({p.step for p in part.profiles})
        styles = dict(zip(steps, ("-", "--"), strict=False))
        drawn = ", ".join(f"{'solid' if styles[s] == '-' else 'dashed'}: step {s}" for s in steps)
        title = f"{part.name}, depth {part.deepest} ({drawn})" if part.profiles else part.name
        panels[title] = [_line(p, styles[p.step]) for p in part.profiles]
    figures.panel_grid(panels, "hidden layer (1 = input side)", "gradient norm", page.path("gradients"), log_y=True)
    return [
        "",
        "The gradient norm by hidden layer at each part's largest depth, median over the seeds, at the first and "
        "the last of those steps its runs logged (solid and dashed):",
        "",
        page.link("gradient norm by layer", "gradients"),
    ]


def _line(profile: Profile, style: str) -> figures.Line:
    tint, shape = color(profile.activation), marker(profile.activation)
    return figures.Line(profile.layers, profile.norms, profile.activation, color=tint, style=style, marker=shape)
