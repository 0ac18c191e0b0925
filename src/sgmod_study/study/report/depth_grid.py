"""The depth study's grid as its sections read it from a part's rows: the runs of each activation at
each depth, activations in the grid's order, a hidden layer's number from its name, a run's curves,
and how a part is headed (its name and question), how far its runs have come, or that it waits."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sgmod_study.study.record import Record
from sgmod_study.study.report.outcomes import progress, results, seed_of
from sgmod_study.study.spec import Study

# The grid's activations in the order conf/experiment/depth.yaml lists them; any other after these, by name.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "sgmod_own_lr", "sgmod_2tanh", "sgmod_2tanh_fixed")
DEPTH = "model.depth"
TRAIN_ACC = "train/acc"  # one point per epoch: (the step at its end, the accuracy over its batches)
# One marker per activation: lines that coincide (the same function at initialisation) stay told apart.
MARKERS = "osv^Dx*P"
LAYER = re.compile(r"(?:^|\.)layer(\d+)(?:\.|$)")  # net.layer12.fc, net.layer12.act -> 12


def activation_of(row: Mapping) -> str:
    return str((row.get("params") or {}).get("activation"))


def depth_of(row: Mapping) -> int:
    depth = (row.get("params") or {}).get(DEPTH)
    return int(depth if depth is not None else row["config"]["model"]["depth"])


def ordered(names) -> list[str]:
    """Activation names in the grid's order."""
    known = [n for n in ACTIVATIONS if n in names]
    return known + sorted(set(names) - set(ACTIVATIONS))


def _place(activation: str) -> int:
    return ordered({activation} | set(ACTIVATIONS)).index(activation)


def color(activation: str) -> str:
    """One activation's colour in every figure (matplotlib's cycle: C0, C1, ...)."""
    return f"C{_place(activation) % 10}"


def marker(activation: str) -> str:
    return MARKERS[_place(activation) % len(MARKERS)]


def grid(rows: Sequence[Mapping]) -> dict[str, dict[int, list[Mapping]]]:
    """{activation: {depth: its runs with a result (finished or diverged), by seed}}, in the grid's
    order and by depth."""
    found: dict[str, dict[int, list[Mapping]]] = {}
    for row in results(rows):
        found.setdefault(activation_of(row), {}).setdefault(depth_of(row), []).append(row)
    return {
        a: {d: sorted(found[a][d], key=lambda r: seed_of(r) or 0) for d in sorted(found[a])} for a in ordered(found)
    }


def depths(table: Mapping[str, Mapping[int, Sequence]]) -> list[int]:
    return sorted({d for by_depth in table.values() for d in by_depth})


def layer_index(name: str) -> int | None:
    """The hidden layer a module's name numbers (1 nearest the input); None for the output layer."""
    found = LAYER.search(name)
    return int(found.group(1)) if found else None


def curve(row: Mapping, tag: str) -> list[tuple[int, float]]:
    """A run's logged series ``tag`` as (step, value) pairs; empty where it has none."""
    return [(int(step), float(value)) for step, value in (row.get("curves") or {}).get(tag) or ()]


def budget(row: Mapping) -> int:
    """The epochs a run was to train (its config's trainer.max_epochs; else the epochs it logged)."""
    planned = (row.get("config") or {}).get("trainer.max_epochs")
    return int(planned) if planned is not None else len(curve(row, TRAIN_ACC))


def steps_per_epoch(rows: Sequence[Mapping]) -> int | None:
    """Optimizer steps per epoch, read from the steps between the first two epochs' training accuracy."""
    for row in rows:
        points = curve(row, TRAIN_ACC)
        if len(points) >= 2:
            return points[1][0] - points[0][0]
    return None


@dataclass
class GridPart:
    """One part of a depth section: its heading and how far its runs have come."""

    name: str
    heading: str
    progress: str  # "24 of 192 runs", "not run yet"
    complete: bool


def read_part(study: Study, record: Record, name: str) -> tuple[GridPart, list[Mapping]]:
    """A part's heading and progress, and its rows."""
    rows = record.rows(name)
    planned = study.parts[name].trials
    return GridPart(name, heading(study, name), progress(rows, planned), len(results(rows)) >= planned), rows


def parts_lines(parts: Sequence[GridPart], part_lines: Callable) -> list[str]:
    """Each part's heading and its lines (``part_lines(part)``), a blank line before each."""
    return [line for part in parts for line in ("", part.heading, "", *part_lines(part))]


def so_far(part: GridPart, what: str = "") -> list[str]:
    """ "So far 24 of 192 runs." and a blank line where the part is not complete; nothing where it is."""
    return [] if part.complete else [f"So far {part.progress}{what}.", ""]


def heading(study: Study, part: str) -> str:
    question = study.parts[part].question
    return f"### {part}: {question}" if question else f"### {part}"


def waiting(parts: Sequence[str]) -> str:
    return f"Not run yet (no finished run in parts {', '.join(parts)})."
