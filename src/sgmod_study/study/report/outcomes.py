"""What a GAN study's runs came to, read from their rows (runs.jsonl): a result (finished, or
diverged: the sweeper never runs a diverged trial again), a failure (diverged, or finished with a
final test evaluation that flagged a collapse), a grid's cells (its settings but the seed), and
how the report writes the GAN's metrics and settings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sgmod_study.study import stats
from sgmod_study.study.choose import cell_rank
from sgmod_study.study.record import has_result, is_diverged

SEED = "seed"  # the grid parameter a cell's runs differ in
COLLAPSED = "test/collapsed"  # the final test evaluation's flag: 1 where the samples collapsed
# The final validation's flag: what choose.best_cell ranks cells by (a pick is made on validation;
# the two flags can differ on a borderline run)
VAL_COLLAPSED = "val/collapsed"
DIVERGED, COLLAPSE = "diverged", "collapsed"

# Decimals by metric name (the part after "test/", "val/" or "test_eval_mode/").
DECIMALS = {"fid": 2, "fid_best": 2, "kid": 4, "kid_best": 4, "kid_se": 4, "precision": 3, "recall": 3}
DECIMALS |= {"acc": 4, "acc_best": 4, "loss": 4}  # a classifier's accuracy as a fraction, to 0.01 points
NAMES = {"fid": "FID", "kid": "KID", "kid_se": "KID SE", "precision": "precision", "recall": "recall"}
NAMES |= {"classes": "classes covered", "class_entropy": "class entropy (bits)", "fid_best": "best-epoch FID"}
NAMES |= {"acc": "accuracy", "acc_best": "best accuracy"}
# The metrics with a real-vs-real floor measured in docs/gan_metric_sanity.md.
FLOORED = ("fid", "kid")


def results(rows: Sequence[Mapping]) -> list[Mapping]:
    """The runs with a result: finished or diverged (not the crashed, interrupted, lost or running ones)."""
    return [r for r in rows if has_result(r)]


def failure(row: Mapping) -> str | None:
    """ "diverged", "collapsed" (finished, its final test evaluation flagged a collapse) or None."""
    if is_diverged(row):
        return DIVERGED
    if row["state"] == "COMPLETE" and (row.get("metrics") or {}).get(COLLAPSED) == 1:
        return COLLAPSE
    return None


def failed(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in results(rows) if failure(r) is not None]


def good(rows: Sequence[Mapping]) -> list[Mapping]:
    """The finished runs that did not fail and carry their metrics."""
    return [r for r in rows if r["state"] == "COMPLETE" and r.get("metrics") and failure(r) is None]


def seed_of(row: Mapping) -> int | None:
    return (row.get("params") or {}).get(SEED, (row.get("config") or {}).get(SEED))


def values(rows: Sequence[Mapping], key: str) -> list[float]:
    """``metrics[key]`` of the ``rows`` that have it."""
    return [float(r["metrics"][key]) for r in rows if (r.get("metrics") or {}).get(key) is not None]


def by_seed(rows: Sequence[Mapping], key: str) -> dict[int, float]:
    """{seed: metrics[key]} of the ``rows`` that have it."""
    return {seed_of(r): float(r["metrics"][key]) for r in rows if (r.get("metrics") or {}).get(key) is not None}


def cell(row: Mapping) -> tuple:
    """A grid run's cell: its parameters but the seed, as sorted (key, value) pairs."""
    return tuple(sorted((k, v) for k, v in (row.get("params") or {}).items() if k != SEED))


def cells(rows: Sequence[Mapping]) -> dict[tuple, list[Mapping]]:
    """The runs with a result by cell, cells in their parameters' order."""
    grouped: dict[tuple, list[Mapping]] = {}
    for row in results(rows):
        grouped.setdefault(cell(row), []).append(row)
    return dict(sorted(grouped.items()))


def matching(rows: Sequence[Mapping], where: Sequence[tuple[str, object]]) -> list[Mapping]:
    """The grid runs whose parameters hold every (key, value) of ``where`` (a confirm part's)."""
    return [r for r in rows if all((r.get("params") or {}).get(k) == v for k, v in where)]


def failed_in_validation(row: Mapping) -> bool:
    """Diverged, or finished with a final validation that flagged a collapse: choose.failed on a row."""
    return is_diverged(row) or (row["state"] == "COMPLETE" and (row.get("metrics") or {}).get(VAL_COLLAPSED) == 1)


def cell_score(runs: Sequence[Mapping], maximize: bool) -> tuple[int, bool, float]:
    """How choose.best_cell ranks a cell's runs with a result (``choose.cell_rank``), lowest best:
    failed in validation, objective the rows' first value."""
    done = results(runs)
    values = [r["values"][0] if r.get("values") else None for r in done]
    return cell_rank([failed_in_validation(r) for r in done], values, maximize)


def best_cell(rows: Sequence[Mapping], maximize: bool) -> tuple | None:
    """The cell a best_cell confirm part retrains (as choose.best_cell decides it on trials): the
    best ``cell_score``; an exact tie goes to the cell whose first run has the lowest trial number
    (the order choose.best_cell meets the cells in)."""

    def score(item: tuple) -> tuple:
        return (*cell_score(item[1], maximize), min(r.get("number", math.inf) for r in item[1]))

    found = cells(sorted(rows, key=lambda r: r.get("number", math.inf)))  # each cell's runs in trial order
    return min(found.items(), key=score)[0] if found else None


def number(value: float) -> str:
    """A setting as a person writes it: 2e-4, 1.5e-4, 0.5, 3."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < abs(value) < 1e-2:
        return lr_text(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def lr_text(value: float) -> str:
    """A learning rate as a person writes it: 1e-2, 3e-3, 1.5e-4."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def edge(picked: float | None, tried: Sequence[float]) -> str:
    """ "largest" or "smallest" where ``picked`` is at that end of the values ``tried`` (two or
    more; a better one may lie beyond the range), else ""."""
    if picked is None or len(tried) < 2:
        return ""
    return "largest" if picked == max(tried) else "smallest" if picked == min(tried) else ""


def cell_text(key: tuple) -> str:
    """A cell as the report names it: "lr 2e-4", "lr 1.5e-2" (a parameter's last dotted part and its value)."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {_setting(k, v)}" for k, v in key) or "-"


def _setting(key: str, value) -> str:
    is_lr = key.rsplit(".", 1)[-1].startswith("lr") and isinstance(value, float) and value > 0
    return lr_text(value) if is_lr else number(value)


def cell_x(key: tuple) -> float | None:
    """A cell's place on a figure's x axis: its one numeric parameter (the learning rate)."""
    if len(key) == 1 and isinstance(key[0][1], int | float):
        return float(key[0][1])
    return None


def short(metric: str) -> str:
    """A metric's name without its split: "test/fid" -> "fid"."""
    return metric.rsplit("/", 1)[-1]


def name(metric: str) -> str:
    """How a table names a metric: "test/fid" -> "FID"."""
    return NAMES.get(short(metric), short(metric))


def fmt(metric: str, value: float | None) -> str:
    """A value of ``metric`` to its decimals; "-" for none."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{DECIMALS.get(short(metric), 2)}f}"


def signed(metric: str, value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.{DECIMALS.get(short(metric), 2)}f}"


def mean_cell(metric: str, found: Sequence[float]) -> str:
    """The mean of ``found`` with its 95% interval: "23.41 [21.02, 25.80]"; "-" for none."""
    if not found:
        return "-"
    average, _, low, high = stats.mean_ci(found)
    if math.isnan(low):
        return fmt(metric, average)
    return f"{fmt(metric, average)} [{fmt(metric, low)}, {fmt(metric, high)}]"


def mean_of(found: Sequence[float]) -> float:
    return sum(found) / len(found) if found else math.nan


def progress(rows: Sequence[Mapping], planned: int) -> str:
    """ "12 of 15 runs", or "not run yet"."""
    done = len(results(rows))
    return f"{done} of {planned} runs" if done else "not run yet"


def eval_mode(metric: str) -> str:
    """The same metric measured with the generator in eval mode: test/fid -> test_eval_mode/fid."""
    return "test_eval_mode/" + short(metric)


def validation(metric: str) -> str:
    """The validation counterpart of a test metric: test/fid -> val/fid."""
    return "val/" + short(metric)


def label(part: str) -> str:
    """How the GAN report names a part's configuration: confirm_g_sgmod and grid_g_sgmod -> g_sgmod,
    confirm_sweep_sgmod -> sweep_sgmod (kept apart from g_sgmod, the grid's)."""
    return part.removeprefix("confirm_").removeprefix("grid_")
