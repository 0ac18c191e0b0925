"""From a directory of runs to the statistics a comparison needs (no re-training).

A run is a folder with Hydra's ``.hydra/config.yaml`` and, when it finished, the
``result.json`` that ``training.train`` writes. Runs are grouped by the configuration keys
that define a question (e.g. ``activation.name``); the seeds inside a group are replicates.
Each group gets mean, standard deviation and a 95% t confidence interval of a metric, and a
paired t-test by seed against the named baseline group, Holm-corrected over the groups.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from scipy import stats

from sgmod_study.diagnostics import flatten_config
from sgmod_study.errors import ConfigError


@dataclass
class Run:
    folder: Path
    config: dict  # flat: {"activation.name": "sgmod", "seed": 1, ...}
    metrics: dict | None  # None: the run did not finish (no result.json)

    def label(self, keys: Sequence[str]) -> str:
        return ", ".join(str(self.config.get(k)) for k in keys)

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        return read_scalars(self.folder / "tensorboard")


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the TensorBoard event files in ``log_dir``: {tag: [(step, value)]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return {tag: sorted(points) for tag, points in series.items()}


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run folder under ``paths`` (a folder holding ``.hydra/config.yaml``)."""
    runs = []
    for path in paths:
        for config_file in sorted(Path(path).glob("**/.hydra/config.yaml")):
            folder = config_file.parent.parent
            config = {**flatten_config(yaml.safe_load(config_file.read_text()) or {}), **_resolved_hparams(folder)}
            result = folder / "result.json"
            metrics = json.loads(result.read_text())["metrics"] if result.is_file() else None
            runs.append(Run(folder, config, metrics))
    return runs


def _resolved_hparams(folder: Path) -> dict:
    """The flat, interpolation-resolved config the run logged (``<logger>/hparams.yaml``).
    Hydra's config.yaml keeps interpolations: the GAN's ``model.generator.activation`` is
    ``${activation}`` there, and only the run knows it meant sgmod."""
    for hparams in sorted(folder.glob("*/hparams.yaml")):
        return yaml.safe_load(hparams.read_text()) or {}
    return {}


@dataclass
class GroupStats:
    label: str
    values: dict  # seed -> metric value
    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_value: float | None = None  # paired t-test against the baseline, Holm-corrected
    p_raw: float | None = None
    paired_n: int = 0
    # the paired mean difference from the baseline over the shared seeds, and its 95% t interval
    diff_mean: float | None = None
    diff_low: float = math.nan
    diff_high: float = math.nan
    missing: list[str] = field(default_factory=list)  # folders of runs that did not finish

    @property
    def n(self) -> int:
        return len(self.values)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the t-distribution confidence interval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running_max = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running_max = max(running_max, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(1.0, running_max)
    return adjusted


def compare(runs: Sequence[Run], group_by: Sequence[str], metric: str, baseline: str) -> list[GroupStats]:
    """Per-group statistics of ``metric``; paired tests by seed against the group labelled ``baseline``."""
    groups: dict[str, GroupStats] = {}
    folders: dict[tuple[str, object], Path] = {}
    for run in runs:
        label, seed = run.label(group_by), run.config.get("seed")
        group = groups.setdefault(label, GroupStats(label, {}, math.nan, math.nan, math.nan, math.nan))
        if (label, seed) in folders:
            raise ConfigError(
                f"two runs of configuration '{label}' with seed {seed}: {folders[label, seed]} and {run.folder}; "
                "a paired test needs one run per configuration and seed (pass one of them, or --where to choose)"
            )
        folders[label, seed] = run.folder
        if run.metrics is None or metric not in run.metrics:
            group.missing.append(str(run.folder))
        else:
            group.values[seed] = float(run.metrics[metric])
    for group in groups.values():
        if group.values:
            group.mean, group.std, group.ci_low, group.ci_high = mean_ci(list(group.values.values()))
    reference = groups.get(baseline)
    tested = [g for g in groups.values() if reference is not None and g is not reference]
    for group in tested:
        seeds = sorted(set(group.values) & set(reference.values))
        group.paired_n = len(seeds)
        if len(seeds) >= 2:
            differences = [group.values[s] - reference.values[s] for s in seeds]
            group.diff_mean, _, group.diff_low, group.diff_high = mean_ci(differences)
            if max(differences) - min(differences) > 1e-12:
                ours, theirs = [group.values[s] for s in seeds], [reference.values[s] for s in seeds]
                group.p_raw = float(stats.ttest_rel(ours, theirs).pvalue)
            else:  # identical differences: the t-test is undefined; an exact two-sided sign test is not
                group.p_raw = 1.0 if differences[0] == 0 else min(1.0, 2 * 0.5 ** len(seeds))
    with_p = [g for g in tested if g.p_raw is not None]
    for group, adjusted in zip(with_p, holm([g.p_raw for g in with_p]), strict=True):
        group.p_value = adjusted
    return sorted(groups.values(), key=lambda g: g.label)


def conclusion(
    groups: Sequence[GroupStats], baseline: str, metric: str, higher_is_better: bool, alpha: float = 0.05
) -> str:
    """Plain-language summary that claims only what the corrected tests support."""
    reference = next((g for g in groups if g.label == baseline), None)
    if reference is None or not reference.values:
        return f"No finished runs of the baseline ({baseline}): nothing can be compared."
    better, worse, unclear = [], [], []
    for group in groups:
        if group is reference or group.p_value is None:
            continue
        delta = group.diff_mean
        improved = delta > 0 if higher_is_better else delta < 0
        if group.p_value < alpha:
            (better if improved else worse).append(f"{group.label} ({_difference(group)}, p={group.p_value:.3g})")
        else:
            unclear.append(group.label)
    lines = []
    if better:
        lines.append(f"Significantly better than {baseline} on {metric}: " + "; ".join(better) + ".")
    if worse:
        lines.append(f"Significantly worse than {baseline} on {metric}: " + "; ".join(worse) + ".")
    if unclear:
        lines.append(
            f"No significant difference from {baseline} (Holm-corrected paired t-test, alpha={alpha}): "
            + ", ".join(unclear)
            + "."
        )
    if not lines:
        lines.append(f"Too few paired seeds to test anything against {baseline}.")
    return " ".join(lines)


def _difference(group: GroupStats) -> str:
    """The paired mean difference and its 95% CI, e.g. ``+0.0110 [+0.0085, +0.0135]``."""
    if group.diff_mean is None:
        return "-"
    if math.isnan(group.diff_low):
        return f"{group.diff_mean:+.4f}"
    return f"{group.diff_mean:+.4f} [{group.diff_low:+.4f}, {group.diff_high:+.4f}]"


def markdown_table(groups: Sequence[GroupStats], baseline: str, metric: str) -> str:
    rows = [
        f"| configuration | n | mean {metric} | std | 95% CI | paired n | paired difference vs {baseline} [95% CI] "
        f"| p (Holm) | missing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        p = "baseline" if g.label == baseline else ("-" if g.p_value is None else f"{g.p_value:.3g}")
        ci = "-" if math.isnan(g.ci_low) else f"[{g.ci_low:.4f}, {g.ci_high:.4f}]"
        std = "-" if math.isnan(g.std) else f"{g.std:.4f}"
        mean = "-" if math.isnan(g.mean) else f"{g.mean:.4f}"
        rows.append(
            f"| {g.label} | {g.n} | {mean} | {std} | {ci} | {g.paired_n or '-'} | {_difference(g)} | {p} "
            f"| {len(g.missing)} |"
        )
    return "\n".join(rows)


def missing_runs(groups: Sequence[GroupStats]) -> list[str]:
    return [folder for g in groups for folder in g.missing]


def metric_direction(metric: str) -> bool:
    """Whether higher is better: accuracies yes; losses, FID and KID no."""
    name = metric.rsplit("/", 1)[-1]
    return not any(word in name for word in ("loss", "fid", "kid"))


def bar_chart(groups: Sequence[GroupStats], metric: str, path: Path) -> None:
    """Mean and 95% CI per configuration, with every seed's value as a dot."""
    plt = _plt()
    shown = [g for g in groups if g.values]
    figure, axes = plt.subplots(figsize=(max(4, 0.8 * len(shown) + 2), 3.5))
    for x, g in enumerate(shown):
        half = 0 if math.isnan(g.ci_high) else g.ci_high - g.mean
        axes.errorbar(x, g.mean, yerr=half, fmt="o", capsize=4, color="tab:blue")
        axes.scatter([x] * g.n, list(g.values.values()), s=10, color="tab:gray", alpha=0.6)
    axes.set_xticks(range(len(shown)), [g.label for g in shown], rotation=30, ha="right")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric}: mean and 95% CI over seeds")
    _save(figure, path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(runs: Sequence[Run], group_by: Sequence[str], tag: str, path: Path) -> bool:
    """Mean over seeds of a per-epoch series (e.g. val/acc) per configuration, with a min-max band."""
    curves: dict[str, list[list[float]]] = {}
    for run in runs:
        values = [v for _, v in run.scalars().get(tag, [])]
        if values:
            curves.setdefault(run.label(group_by), []).append(values)
    if not curves:
        return False
    plt = _plt()
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, series in sorted(curves.items()):
        length = min(len(s) for s in series)
        epochs = list(range(1, length + 1))
        columns = [[s[i] for s in series] for i in range(length)]
        mean = [sum(c) / len(c) for c in columns]
        axes.plot(epochs, mean, label=f"{label} (n={len(series)})")
        axes.fill_between(epochs, [min(c) for c in columns], [max(c) for c in columns], alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel(tag)
    axes.legend(fontsize=7)
    axes.set_title(f"{tag}: mean over seeds, band = min..max")
    _save(figure, path)
    return True


def learns_gamma_or_beta(run: Run) -> bool:
    """Runs with both gamma and beta fixed say nothing about where learning takes them."""
    return run.config.get("activation.learn_gamma") is not False or run.config.get("activation.learn_beta") is not False


def sgmod_trajectories(
    runs: Sequence[Run], group_by: Sequence[str], path: Path
) -> dict[tuple[str, str], tuple[float, float]]:
    """gamma and beta of every Sgmod layer over training, and where they end up, per
    configuration (mean over its seeds): {(configuration, layer): (gamma, beta)}. Runs whose
    gamma and beta are both fixed are left out."""
    final: dict[tuple[str, str], list[tuple[float, float]]] = {}
    plt = _plt()
    figure, (gamma_axes, beta_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for run in filter(learns_gamma_or_beta, runs):
        scalars = run.scalars()
        for tag, points in scalars.items():
            if not (tag.startswith("sgmod/") and tag.endswith("/gamma")):
                continue
            layer = tag[len("sgmod/") : -len("/gamma")]
            beta = scalars.get(f"sgmod/{layer}/beta", [])
            key = (run.label(group_by), layer)
            gamma_axes.plot(*zip(*points, strict=True), alpha=0.5, label=None if key in final else " / ".join(key))
            if beta:
                beta_axes.plot(*zip(*beta, strict=True), alpha=0.5)
                final.setdefault(key, []).append((points[-1][1], beta[-1][1]))
    if final:
        gamma_axes.set_title("gamma (channel mean) per layer")
        beta_axes.set_title("beta (channel mean) per layer")
        gamma_axes.set_xlabel("step")
        beta_axes.set_xlabel("step")
        gamma_axes.legend(fontsize=7)
        _save(figure, path)
    else:
        plt.close(figure)
    return {key: tuple(sum(v) / len(v) for v in zip(*ends, strict=True)) for key, ends in final.items()}


def gradient_norms_by_depth(runs: Sequence[Run], group_by: Sequence[str], path: Path) -> bool:
    """Mean gradient norm of each hidden layer (grad_norm/net.layerK.fc) against K, per configuration."""
    by_group: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        for tag, points in run.scalars().items():
            if tag.startswith("grad_norm/net.layer") and tag.endswith(".fc"):
                depth = int(tag[len("grad_norm/net.layer") : -len(".fc")])
                values = [v for _, v in points]
                by_group.setdefault(run.label(group_by), {}).setdefault(depth, []).append(sum(values) / len(values))
    if not by_group:
        return False
    plt = _plt()
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, layers in sorted(by_group.items()):
        depths = sorted(layers)
        axes.plot(depths, [sum(layers[d]) / len(layers[d]) for d in depths], marker="o", label=label)
    axes.set_yscale("log")
    axes.set_xlabel("hidden layer (1 = next to the input)")
    axes.set_ylabel("mean gradient norm of the layer's weight")
    axes.legend(fontsize=7)
    _save(figure, path)
    return True


def optuna_sections(paths: Sequence[str | Path], out: Path) -> list[str]:
    """One section per Optuna sweep folder under ``paths`` (it has best.json): the best trial,
    parameter importances and the gamma x beta landscape the sweeper drew."""
    sections = []
    for best_file in sorted(f for p in paths for f in Path(p).glob("**/best.json")):
        sweep = best_file.parent
        if is_grid(sweep):
            continue  # a grid over seeds is no search: a "best" seed or the seed's importance means nothing
        best = json.loads(best_file.read_text())
        lines = [f"## Optuna study: {sweep.name}"]
        if isinstance(best, list):
            lines.append(f"{len(best)} trials on the Pareto front; see {best_file}.")
        else:
            params = "\n".join(
                f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in best["params"].items()
            )
            lines.append(
                f"Best trial {best['number']}, value {best['values']}:\n\n| parameter | value |\n|---|---|\n" + params
            )
        importances = sweep / "importances.json"
        if importances.is_file():
            rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in json.loads(importances.read_text()).items())
            lines.append("Parameter importances (fANOVA):\n\n| parameter | importance |\n|---|---|\n" + rows)
        contour = sweep / "plots" / "gamma_beta_contour.png"
        if contour.is_file():
            target = out / "figures" / f"{sweep.name}_gamma_beta_contour.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(contour, target)
            lines.append(f"![gamma x beta]({target.relative_to(out)})")
        sections.append("\n\n".join(lines))
    return sections


def is_grid(sweep: Path) -> bool:
    """Whether the sweep folder's trials were run by the grid sampler (an experiment, not a search)."""
    for hydra_file in sweep.glob("*/.hydra/hydra.yaml"):
        return "GridSampler" in hydra_file.read_text()
    return False


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _plt().close(figure)


def write_report(
    paths: Sequence[str | Path],
    group_by: Sequence[str],
    metric: str,
    baseline: str,
    out: Path,
    where: Mapping[str, str] | None = None,
) -> str:
    """report.md (table, conclusion, missing runs) and figures/ under ``out``; returns the Markdown.

    ``where`` keeps only the runs whose config has these values (e.g. {"activation.name": "tanh"}).
    """
    runs = [r for r in find_runs(paths) if all(str(r.config.get(k)) == v for k, v in (where or {}).items())]
    groups = compare(runs, group_by, metric, baseline)
    higher = metric_direction(metric)
    figure = out / "figures" / f"{metric.replace('/', '_')}_by_{'_'.join(group_by)}.png"
    bar_chart(groups, metric, figure)
    missing = missing_runs(groups)
    finished = [r for r in runs if r.metrics is not None]
    extra = []
    if learning_curves(finished, group_by, "val/acc", out / "figures" / "learning_curves.png"):
        extra.append("## Learning curves\n\n![learning curves](figures/learning_curves.png)")
    ends = sgmod_trajectories(finished, group_by, out / "figures" / "sgmod_trajectories.png")
    if ends:
        rows = "\n".join(
            f"| {label} | {layer} | {g:.3f} | {b:.3f} |" for (label, layer), (g, b) in sorted(ends.items())
        )
        extra.append(
            "## Sgmod gamma/beta\n\n![trajectories](figures/sgmod_trajectories.png)\n\n"
            "Where they end up (mean over the seeds of each configuration; runs with gamma and beta fixed "
            "left out):\n\n| configuration | layer | gamma | beta |\n|---|---|---|---|\n" + rows
        )
    if gradient_norms_by_depth(finished, group_by, out / "figures" / "gradient_norms_by_depth.png"):
        extra.append("## Gradient norm by depth\n\n![gradient norms](figures/gradient_norms_by_depth.png)")
    extra += optuna_sections(paths, out)
    text = "\n\n".join(
        [
            f"# {metric} by {', '.join(group_by)}",
            f"Runs from: {', '.join(str(p) for p in paths)}"
            + (f" where {', '.join(f'{k}={v}' for k, v in where.items())}" if where else "")
            + f". Baseline: {baseline}. "
            f"{'Higher' if higher else 'Lower'} is better.",
            markdown_table(groups, baseline, metric),
            f"![{metric}](figures/{figure.name})",
            "## Conclusion\n\n" + conclusion(groups, baseline, metric, higher),
            *extra,
            "## Missing or crashed runs\n\n" + ("\n".join(f"- {m}" for m in missing) if missing else "None."),
        ]
    )
    (out / "report.md").write_text(text + "\n")
    return text
