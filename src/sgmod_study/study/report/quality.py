"""Section "quality": each confirmed configuration on its fresh seeds. Its runs and failures, the
final test metrics with the generator in train mode (the chosen sampling mode), the same FID/KID
with the generator in eval mode (BatchNorm running statistics) and the paired difference of the two
modes, where the collapse flag fell (the flagged runs beside the runs it kept), and, as a secondary
result, the best epoch's validation FID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sgmod_study.study import stats
from sgmod_study.study.record import Record
from sgmod_study.study.report import figures
from sgmod_study.study.report.outcomes import (
    COLLAPSE,
    DIVERGED,
    by_seed,
    eval_mode,
    failure,
    fmt,
    good,
    label,
    mean_cell,
    mean_of,
    name,
    number,
    results,
    signed,
    values,
)
from sgmod_study.study.report.rows import config_value, table_head
from sgmod_study.study.report.stability import FLAG_DIGITS, FLAG_METRICS, flagged, median, reason_counts
from sgmod_study.study.spec import Study
from sgmod_study.tasks.gan_collapse import FEW_CLASSES, NO_RECALL

# The means shown beside the metrics (with their interval): test metrics in train mode.
MEANS = ("test/kid_se", "test/precision", "test/recall", "test/classes", "test/class_entropy")
BEST_EPOCH = ("val/fid", "val/fid_best", "val/best_epoch")
# Sgmod's settings a table shows for a configuration with Sgmod layers, and their names there; its
# own lr and weight decay only where gamma/beta learn.
INIT_SETTINGS = {"activation.gamma_init": "gamma_init", "activation.beta_init": "beta_init"}
LEARNING_SETTINGS = {"activation.lr": "gamma/beta lr", "activation.weight_decay": "gamma/beta wd"}


@dataclass
class Configuration:
    part: str
    label: str
    planned: int
    runs: int  # with a result
    diverged: int
    collapsed: int
    settings: str
    metrics: dict[str, list[float]]  # over the runs that did not fail
    modes: dict[str, dict] = field(default_factory=dict)  # {metric: train minus eval mode, paired by seed}
    reasons: list[tuple[str, ...]] = field(default_factory=list)  # each collapsed run's criteria
    flagged: dict[str, list[float]] = field(default_factory=dict)  # {FLAG_METRICS: the collapsed runs' values}


@dataclass
class Quality:
    metrics: tuple[str, ...]
    configurations: list[Configuration]
    waiting: list[str] = field(default_factory=list)


def compute(study: Study, record: Record) -> Quality:
    data = Quality(study.metrics, [])
    for part in study.sections["quality"]:
        rows = results(record.rows(part))
        if not rows:
            data.waiting.append(part)
            continue
        outcomes = [failure(r) for r in rows]
        kept = good(rows)
        keys = dict.fromkeys((*study.metrics, *MEANS, *BEST_EPOCH, *FLAG_METRICS))
        configuration = Configuration(
            part,
            label(part),
            study.parts[part].trials,
            len(rows),
            outcomes.count(DIVERGED),
            outcomes.count(COLLAPSE),
            settings(rows),
            {k: values(kept, k) for k in keys},
        )
        configuration.reasons, configuration.flagged = flagged(rows)
        for m in study.metrics:
            paired = stats.paired(by_seed(kept, m), by_seed(kept, eval_mode(m)), ())
            configuration.modes[m] = paired | {"eval": values(kept, eval_mode(m))}
        data.configurations.append(configuration)
    return data


def settings(rows: Sequence[Mapping]) -> str:
    """The settings a confirm part retrained, read from its first run's config. The config always
    holds an ``activation`` group, so Sgmod's settings are shown only for runs with Sgmod layers
    (their recorded gamma/beta): a ReLU baseline has no gamma_init."""
    config = next((r.get("config") for r in rows if r.get("config")), None) or {}
    lr = config_value(config, "optimizer.lr")
    lr_g, lr_d = (
        config_value(config, "task.lr_g") or lr,
        config_value(config, "task.lr_d") or lr,
    )  # as the task reads them
    shown = [("lr", lr_g)] if lr_g == lr_d else [("lr_g", lr_g), ("lr_d", lr_d)]
    has_sgmod = any(r.get("sgmod") for r in rows)
    learns = has_sgmod and any(config_value(config, f"activation.learn_{p}") is not False for p in ("gamma", "beta"))
    if has_sgmod:
        named = INIT_SETTINGS | (LEARNING_SETTINGS if learns else {})
        shown += [(label, config_value(config, key)) for key, label in named.items()]
    text = ", ".join(f"{k} {number(v)}" for k, v in shown if _numeric(v)) or "-"
    return f"{text}, gamma/beta fixed" if has_sgmod and not learns else text


def _numeric(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render(data: Quality, page: figures.Page) -> list[str]:
    lines = [page.title("quality", "Sample quality on fresh seeds"), ""]
    if not data.configurations:
        return [*lines, f"Not run yet (no finished run in parts {', '.join(data.waiting)})."]
    lines += [
        "Each configuration's chosen settings retrained on fresh seeds; final test metrics of the generator in train "
        "mode (batch statistics, the sampling mode the study chose), 10k generated against the 10k test images. "
        "Means [95% CI] over the runs that did not fail; KID SE is the mean of the runs' own KID standard errors.",
        "",
        *_main_table(data),
    ]
    if data.waiting:
        lines += ["", f"Not run yet: {', '.join(data.waiting)}."]
    return lines + _flagged_lines(data) + _mode_lines(data) + _best_epoch_lines(data)


def _flagged_lines(data: Quality) -> list[str]:
    """The collapsed runs of each configuration that has some, beside the runs that did not fail."""
    found = [c for c in data.configurations if c.collapsed]
    if not found:
        return []
    columns = ["configuration", "runs", "collapsed", FEW_CLASSES, NO_RECALL]
    columns += [f"{name(m)}: collapsed / kept" for m in FLAG_METRICS]
    lines = [
        "",
        "Where the collapse flag fell (its criteria as in the stability section): the collapsed runs beside the "
        "runs kept, medians of their final test values. Where the two sides are close in every column, the flag "
        "splits runs of one kind near its thresholds, and the means above, over the runs kept, leave out runs much "
        "like them.",
        "",
        *table_head(columns),
    ]
    for c in found:
        counts = reason_counts(c.reasons)
        sides = [
            f"{median(c.flagged[m], digits)} / {median(c.metrics[m], digits)}"
            for m, digits in zip(FLAG_METRICS, FLAG_DIGITS, strict=True)
        ]
        lines.append(f"| {c.label} | {c.runs} | {c.collapsed} | " + " | ".join(counts + sides) + " |")
    return lines


def _main_table(data: Quality) -> list[str]:
    columns = ["configuration", "settings", "runs", "diverged", "collapsed"]
    columns += [f"{name(m)} [95% CI]" for m in data.metrics] + [name(m) for m in MEANS]
    lines = table_head(columns)
    for c in data.configurations:
        found = [mean_cell(m, c.metrics[m]) for m in data.metrics]
        found += [fmt(m, mean_of(c.metrics[m])) for m in MEANS]
        runs = f"{c.runs} of {c.planned}" if c.runs < c.planned else str(c.runs)
        lines.append(
            f"| {c.label} | {c.settings} | {runs} | {c.diverged} | {c.collapsed} | " + " | ".join(found) + " |"
        )
    return lines


def _mode_lines(data: Quality) -> list[str]:
    columns = ["configuration", "paired n"]
    for m in data.metrics:
        columns += [f"{name(m)} train mode", f"{name(m)} eval mode", "train - eval [95% CI]", "p"]
    lines = [
        "",
        "The same runs measured with the generator in eval mode (BatchNorm's running statistics) as well: means over "
        "the runs that did not fail, and train minus eval mode paired by run (paired t-test; a negative difference: "
        "train mode better).",
        "",
        *table_head(columns),
    ]
    for c in data.configurations:
        found = []
        for m in data.metrics:
            d = c.modes[m]
            interval = f"{signed(m, d['mean'])} [{signed(m, d['low'])}, {signed(m, d['high'])}]"
            p = "-" if d["p"] != d["p"] else f"{d['p']:.3g}"  # d["p"] != d["p"]: nan, fewer than 2 pairs
            found += [fmt(m, mean_of(c.metrics[m])), fmt(m, mean_of(d["eval"])), interval, p]
        n = c.modes[data.metrics[0]]["n"]
        lines.append(f"| {c.label} | {n} | " + " | ".join(found) + " |")
    return lines


def _best_epoch_lines(data: Quality) -> list[str]:
    final, best, epoch = BEST_EPOCH
    lines = [
        "",
        "Secondary (best epoch, selected on the validation set): the lowest validation FID over the epochs, and the "
        "epoch it came at, beside the final epoch's. Chosen and measured on the same images, it is optimistic; the "
        "study compares the final epoch's test metrics.",
        "",
        "| configuration | n | final val FID | best-epoch val FID (secondary) | best epoch (mean) |",
        "|---|---|---|---|---|",
    ]
    for c in data.configurations:
        lines.append(
            f"| {c.label} | {len(c.metrics[best])} | {mean_cell(final, c.metrics[final])} | "
            f"{mean_cell(best, c.metrics[best])} | {fmt(epoch, mean_of(c.metrics[epoch]))} |"
        )
    return lines
