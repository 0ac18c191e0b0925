"""The report's figures: matplotlib only (the Agg backend, no display), no statistics beyond a
mean and an interval handed in."""

from __future__ import annotations

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
    with warnings.catch_warnings():  # "experimental" since Optuna 2.2
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
