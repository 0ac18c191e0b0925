"""The report's figures: matplotlib only (the Agg backend, no display), no statistics beyond a
mean and an interval handed in."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DPI = 100


@dataclass(frozen=True)
class Page:
    """Where a report's figures go (a folder beside it, linked relative to it) and its sections'
    numbers (for their titles and cross-references)."""

    figures: Path
    numbers: Mapping[str, int] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def link(self, alt: str, name: str) -> str:
        return f"![{alt}]({self.figures.name}/{name}.png)"

    def title(self, section: str, text: str) -> str:
        number = self.numbers.get(section)
        return f"## {number}. {text}" if number else f"## {text}"


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path, tight: bool = True) -> None:
    """Write ``figure`` to ``path`` (creating its folder) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        figure.tight_layout()
        figure.savefig(path, dpi=DPI)
    else:  # plot_slice places a colorbar beside its panels: tight_layout would spread them under it
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
    pyplot().close(figure)


def bar_chart(bars: Sequence[tuple[str, float, float, Sequence[float]]], ylabel: str, path: Path) -> None:
    """One column per (name, mean, half-width of its interval, every value), left to right."""
    figure, axes = pyplot().subplots(figsize=(8, 3.8))
    for x, (_, mean, half, values) in enumerate(bars):
        axes.errorbar(x, mean, yerr=half, fmt="o", capsize=4, color="tab:blue")
        axes.scatter([x] * len(values), values, s=10, color="tab:gray", alpha=0.6)
    axes.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=30, ha="right")
    axes.set_ylabel(ylabel)
    axes.set_title("controls: mean, 95% CI and every seed")
    save(figure, path)


def channel_scatter(points: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path: Path) -> None:
    """Every channel's final (gamma, beta): one panel per layer of ``points`` ({layer: {name:
    [(gamma, beta), ...]}}), with the self-centring line beta = -gamma/2 (a centred tanh)."""
    figure, axes = pyplot().subplots(1, len(points), figsize=(4 * len(points), 3.8), squeeze=False)
    for ax, (layer, groups) in zip(axes[0], sorted(points.items()), strict=True):
        for name, pairs in sorted(groups.items()):
            ax.scatter(*zip(*pairs, strict=True), s=4, alpha=0.4, label=name)
        low, high = ax.get_xlim()
        ax.plot([low, high], [-low / 2, -high / 2], color="black", lw=0.8, label="beta = -gamma/2")
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("gamma")
        ax.set_ylabel("beta")
    axes[0][0].legend(fontsize=7, markerscale=3)
    save(figure, path)


def expected_best_curves(curves: Mapping[str, Sequence[float]], ylabel: str, path: Path) -> None:
    """Each sweep's expected best score against the number of trials (1, 2, ...)."""
    figure, axes = pyplot().subplots(figsize=(6, 4))
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", label=name)
    axes.set_xlabel("number of trials")
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8)
    save(figure, path)


def marginals(trials: Sequence, path: Path) -> None:
    """Optuna's slice plot of the finished ``trials``: the objective against each parameter."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(trials)
    # Optuna's matplotlib plots switch the global style to ggplot (plt.style.use) and leave it so:
    # every later figure of the process, another study's report too, would be drawn in it
    with warnings.catch_warnings(), pyplot().rc_context():  # "experimental" since Optuna 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = optuna.visualization.matplotlib.plot_slice(study)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        save(figure, path, tight=False)


def line_panels(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    xlabel: str,
    path: Path,
    title: str = "",
) -> None:
    """One panel per entry of ``panels`` ({y label: {line label: (x, y)}}), side by side."""
    figure, axes = pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (ylabel, lines) in zip(axes[0], panels.items(), strict=True):
        for label, (x, y) in lines.items():
            ax.plot(x, y, marker=".", label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    save(figure, path)


def against_lr(series: Mapping[str, Sequence[tuple[float, float, float, float]]], ylabel: str, path: Path) -> None:
    """One line per configuration through its (learning rate, mean, low, high) points, each with
    its interval (none where low is nan), on a log x axis."""
    figure, axes = pyplot().subplots(figsize=(7.5, 4.2))
    for i, (label, points) in enumerate(series.items()):
        x, mean, low, high = zip(*points, strict=True)
        shift = 10 ** (0.012 * (i - (len(series) - 1) / 2))  # side by side at each learning rate, not on top
        x = [v * shift for v in x]
        below = [m - lo if lo == lo else 0.0 for m, lo in zip(mean, low, strict=True)]  # lo == lo: not nan
        above = [hi - m if hi == hi else 0.0 for m, hi in zip(mean, high, strict=True)]
        axes.errorbar(x, mean, yerr=[below, above], marker="o", capsize=3, label=label)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=7, ncol=2)
    save(figure, path)


@dataclass(frozen=True)
class Line:
    """One line of a panel: its points, an error bar's half-width at each (or none), and how it is
    drawn. A line without a label stays out of the legend (a seed's thin line, a reference level)."""

    x: Sequence[float]
    y: Sequence[float]
    label: str = ""
    half: Sequence[float] | None = None
    color: str | None = None
    style: str = "-"
    width: float = 1.5
    alpha: float = 1.0
    marker: str = "."


def panel_grid(
    panels: Mapping[str, Sequence[Line]],
    xlabel: str,
    ylabel: str,
    path: Path,
    title: str = "",
    log_y: bool = False,
    log2_x: bool = False,
    xticks: Sequence[float] = (),
) -> None:
    """One panel per entry of ``panels`` ({panel title: its lines}), two per row, one legend for the
    figure (a label's first line); a panel without lines says "no runs yet"."""
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    figure, axes = pyplot().subplots(rows, columns, figsize=(5.5 * columns, 3.6 * rows), squeeze=False)
    legend: dict[str, object] = {}
    for ax, (name, lines) in zip(axes.flat, panels.items(), strict=False):
        for line in lines:
            drawn = ax.errorbar(
                line.x, line.y, yerr=line.half, color=line.color, linestyle=line.style, linewidth=line.width,
                alpha=line.alpha, marker=line.marker, markersize=5, markerfacecolor="none",
                capsize=3 if line.half is not None else 0,
            )  # fmt: skip
            if line.label:
                legend.setdefault(line.label, drawn)
        if not lines:
            ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes, color="gray")
        if log_y and lines:
            ax.set_yscale("log")
        if log2_x and lines:
            ax.set_xscale("log", base=2)
        if xticks and lines:
            ax.set_xticks(xticks, [f"{t:g}" for t in xticks])
        if not lines:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(textwrap.fill(name, 64), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0, 0.82 if legend else 1, 1))
    if legend:
        figure.legend(list(legend.values()), list(legend), loc="center right", fontsize=8)
    save(figure, path, tight=False)


def intervals_by_group(
    groups: Mapping[str, Mapping[str, tuple[float, float, float]]], ylabel: str, path: Path, title: str = ""
) -> None:
    """A mean and its interval per group (x, left to right) and series (a marker each, side by side
    within the group): ``groups`` is {group: {series: (mean, low, high)}}, no bar where low is nan."""
    series = list(dict.fromkeys(s for found in groups.values() for s in found))
    figure, axes = pyplot().subplots(figsize=(max(6.0, 1.6 * len(groups)), 4.0))
    for i, name in enumerate(series):
        shift = 0.6 * (i - (len(series) - 1) / 2) / max(len(series), 1)
        points = [(x + shift, *found[name]) for x, found in enumerate(groups.values()) if name in found]
        if not points:
            continue
        x, mean, low, high = zip(*points, strict=True)
        below = [m - lo if lo == lo else 0.0 for m, lo in zip(mean, low, strict=True)]  # lo == lo: not nan
        above = [hi - m if hi == hi else 0.0 for m, hi in zip(mean, high, strict=True)]
        axes.errorbar(x, mean, yerr=[below, above], fmt="o", capsize=3, label=name)
    axes.set_xticks(range(len(groups)), list(groups), rotation=20, ha="right")
    axes.set_xlim(-0.5, len(groups) - 0.5)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    save(figure, path)
