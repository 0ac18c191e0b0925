"""Tables the sections read from a part's rows (runs.jsonl): values by seed or by variant, the
training length, the machines, the settings a run trained with."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sgmod_study.study.record import complete, is_gpu, machine_name

# How the report writes an activation's name in prose (its parts keep the lower-case name).
PROSE = {"sgmod": "Sgmod"}


def prose(label: str) -> str:
    return PROSE.get(label, label)


def by_variant(rows: Sequence[Mapping], metric: str) -> dict[str, dict[int, float]]:
    """{variant: {seed: metric}} of the finished runs of a grid over named activations."""
    table: dict[str, dict[int, float]] = {}
    for row in complete(rows):
        table.setdefault(row["params"]["activation"], {})[row["params"]["seed"]] = row["metrics"][metric]
    return table


def by_seed(rows: Sequence[Mapping], metric: str) -> dict[int, float]:
    """{seed: metric} of the finished runs of one configuration."""
    return {row["params"]["seed"]: row["metrics"][metric] for row in complete(rows) if metric in row["metrics"]}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def epochs(rows: Sequence[Mapping]) -> str:
    """The finished runs' training length, read from their rows: "10", "3, 10" or "?"."""
    lengths = sorted({(r.get("config") or {}).get("trainer.max_epochs") for r in complete(rows)} - {None})
    return ", ".join(map(str, lengths)) or "?"


def machines(rows: Sequence[Mapping]) -> list[str]:
    """The machines the finished ``rows`` ran on, by name."""
    return sorted({machine_name(r) for r in complete(rows)})


def machine_kind(rows: Sequence[Mapping]) -> str:
    """GPU, CPU, or both, for a configuration's runs."""
    return "/".join(sorted({"GPU" if is_gpu(r) else "CPU" for r in rows})) or "-"


def config_value(config: Mapping, key: str):
    """A dotted key of a row's config ("optimizer.lr"), flat or nested; None if absent."""
    if key in config:
        return config[key]
    head, _, rest = key.partition(".")
    inner = config.get(head)
    return config_value(inner, rest) if rest and isinstance(inner, Mapping) else None


SETTINGS = (
    "activation.gamma_init",
    "activation.beta_init",
    "activation.lr",
    "activation.weight_decay",
    "optimizer.lr",
    "optimizer.weight_decay",
)


def settings(rows: Sequence[Mapping]) -> str:
    """The searched settings a confirm part retrained, read from its first run's config."""
    config = next((r.get("config") for r in complete(rows) if r.get("config")), None) or {}
    values = [(key, config_value(config, key)) for key in SETTINGS]
    return ", ".join(f"{k}={v:.3g}" for k, v in values if isinstance(v, int | float) and not isinstance(v, bool)) or "-"


NORMS = {"none": "no norm", "batch": "BatchNorm", "layer": "LayerNorm"}


def norm_setting(rows: Sequence[Mapping]) -> str | None:
    """The normalisation the ``rows`` trained with, from their configs: "BatchNorm after", "no norm";
    several joined by " / "; None where no row says."""
    found = []
    for row in rows:
        norm = (row.get("config") or {}).get("norm")
        if isinstance(norm, Mapping) and norm.get("name"):
            name = NORMS.get(norm["name"], norm["name"])
            found.append(name if norm["name"] == "none" else f"{name} {norm.get('placement', '?')}")
    return " / ".join(dict.fromkeys(found)) or None


def declared_norm(overrides: Sequence[str]) -> str | None:
    """The normalisation a part's overrides set (``norm=batch``, ``norm.placement=after``), named as
    ``norm_setting`` names it: for a part not run yet. The placement is conf/norm's default, before,
    unless the overrides say; None where they set no norm."""
    found = dict(o.split("=", 1) for o in overrides if o.split("=", 1)[0] in ("norm", "norm.placement"))
    if "norm" not in found:
        return None
    name = NORMS.get(found["norm"], found["norm"])
    return name if found["norm"] == "none" else f"{name} {found.get('norm.placement', 'before')}"


def table_head(columns: Sequence[str]) -> list[str]:
    """A Markdown table's two header lines."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def interval_cell(low: float, high: float) -> str:
    """A 95% interval as a table cell: "[low, high]", or "-" where there is none (fewer than 2 runs)."""
    return "-" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]"


def params_text(params: Mapping) -> str:
    """A trial's parameters as key=value, floats to 3 significant digits."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def count_word(n: int) -> str:
    """Small counts in words, as prose writes them ("six parameters")."""
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return words[n] if 0 <= n < len(words) else str(n)


# How the report names a metric in prose.
METRIC_WORDS = {"test/acc": "test accuracy", "val/acc_best": "best validation accuracy"}


def metric_words(metric: str) -> str:
    return METRIC_WORDS.get(metric, metric)


# What the sweeps rank by (their objective, the rows' "values"), and the score below which a
# trial counts as one that failed to train.
OBJECTIVE = "val/acc_best"
FAILING = 0.90
