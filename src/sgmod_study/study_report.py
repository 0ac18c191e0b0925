"""The study's report, from its committed records alone (study/<part>/runs.jsonl): no training.

    python scripts/study.py report          # writes docs/report/study.md and its figures

- controls: every variant's test accuracy over seeds, and the primary contrasts named in
  conf/experiment/study_controls.yaml before the runs, as paired differences by seed with 95%
  intervals, Holm-corrected p-values and a TOST equivalence test (margin ``EQUIVALENCE_MARGIN``);
- how far gamma/beta could move (the sum of their learning rate over the steps) against how far
  they did, per layer, with the centred coordinate beta + gamma/2 and gamma times the next
  layer's incoming weight norm (what the next layer actually sees);
- the sweeps: finished trials per activation, whether they train as long as the runs that
  confirm them (else their ranking is a cheaper fidelity's), the best configuration, and the
  expected best validation accuracy as a function of the number of trials (Dodge et al., EMNLP 2019),
  at equal trial counts with bootstrap intervals, and Sgmod minus each baseline there;
- which values of the Sgmod sweep's parameters work: its top quarter against the searched range.

Training lengths are read from the rows, not assumed.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import optuna
from scipy import stats

from sgmod_study.report import _plt, _save, holm, mean_ci
from sgmod_study.study import (
    PARTS,
    RECORD_DIR,
    RUNS_FILE,
    is_log,
    load,
    read_rows,
    record_dir,
    rounded,
    top_trials,
    typical,
)

METRIC = "test/acc"
# Differences of test accuracy smaller than this (half a percentage point) count as "equivalent".
EQUIVALENCE_MARGIN = 0.005
CONTROL_CONTRASTS = (  # (variant, reference, question), named before the runs
    ("sgmod", "sgmod_fixed", "learnable vs fixed gamma/beta at (1, 0)"),
    ("sgmod_tanh_init", "sgmod_tanh_control", "learnable vs fixed gamma/beta at (2, -1)"),
    ("sgmod_tanh_control", "sigmoid", "fixed (2, -1) = tanh(x/2) vs sigmoid"),
    ("best Sgmod", "tanh", "the best Sgmod variant vs tanh"),
)
LEARNABLE = ("sgmod", "sgmod_tanh_init")
SGMOD_VARIANTS = (
    "sgmod",
    "sgmod_tanh_init",
    "sgmod_fixed",
    "sgmod_tanh_control",
    "sgmod_fixed_centred",
    "sgmod_fixed_slope2",
)
SWEEPS = ("sweep_sgmod", "sweep_sigmoid", "sweep_tanh", "sweep_relu")
CONFIRMS = (
    "confirm_sgmod",
    "confirm_sgmod_default",
    "confirm_sigmoid",
    "confirm_tanh",
    "confirm_tanh_cpu",
    "confirm_relu",
)


def complete(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rows if r["state"] == "COMPLETE" and r.get("metrics")]


def by_variant(rows: Sequence[Mapping], metric: str = METRIC) -> dict[str, dict[int, float]]:
    """{variant: {seed: metric}} of the finished controls runs."""
    table: dict[str, dict[int, float]] = {}
    for row in complete(rows):
        table.setdefault(row["params"]["activation"], {})[row["params"]["seed"]] = row["metrics"][metric]
    return table


def paired(values: Mapping[int, float], reference: Mapping[int, float]) -> dict:
    """Paired difference by seed: mean, 95% CI, t-test p and TOST equivalence p."""
    seeds = sorted(set(values) & set(reference))
    diffs = [values[s] - reference[s] for s in seeds]
    result = {"n": len(seeds), "mean": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "p_tost": math.nan}
    if len(seeds) < 2:
        return result
    result["mean"], sd, result["low"], result["high"] = mean_ci(diffs)
    if sd > 0:
        se = sd / math.sqrt(len(diffs))
        t = result["mean"] / se
        result["p"] = float(2 * stats.t.sf(abs(t), len(diffs) - 1))
        lower = stats.t.sf((result["mean"] + EQUIVALENCE_MARGIN) / se, len(diffs) - 1)
        upper = stats.t.cdf((result["mean"] - EQUIVALENCE_MARGIN) / se, len(diffs) - 1)
        result["p_tost"] = float(max(lower, upper))
    else:  # every seed differs by the same amount: the t-tests are undefined, the sign test is exact
        result["p"] = 1.0 if result["mean"] == 0 else min(1.0, 2 * 0.5 ** len(diffs))
        result["p_tost"] = 0.0 if abs(result["mean"]) < EQUIVALENCE_MARGIN else 1.0
    return result


def contrasts(table: Mapping[str, Mapping[int, float]]) -> list[dict]:
    """The named primary contrasts, Holm-corrected together."""
    means = {v: sum(s.values()) / len(s) for v, s in table.items() if s}
    sgmods = [v for v in SGMOD_VARIANTS if v in means]
    best = max(sgmods, key=means.get) if sgmods else None
    rows = []
    for variant, reference, question in CONTROL_CONTRASTS:
        name = best if variant == "best Sgmod" else variant
        if name in table and reference in table:
            rows.append(
                {"variant": name, "reference": reference, "question": question, **paired(table[name], table[reference])}
            )
    correct_holm(rows)
    return rows


# The fixed members of the Sgmod family in the controls (sigmoid is the point (1, 0) fixed).
FIXED_MEMBERS = ("sgmod_fixed", "sgmod_tanh_control", "sgmod_fixed_centred", "sgmod_fixed_slope2", "sigmoid")


def best_learnable_vs_best_fixed(table: Mapping[str, Mapping[int, float]]) -> dict | None:
    """The best learnable Sgmod against the best fixed member of the family, paired by seed.
    Both are picked after the runs (the highest mean of each group), so the contrast is secondary
    and its p-value optimistic; it answers "do learnable gamma/beta beat the best fixed choice?"."""
    means = {v: _mean(list(s.values())) for v, s in table.items() if s}
    learnable = [v for v in LEARNABLE if v in means]
    fixed = [v for v in FIXED_MEMBERS if v in means]
    if not learnable or not fixed:
        return None
    variant, reference = max(learnable, key=means.get), max(fixed, key=means.get)
    return {"variant": variant, "reference": reference, **paired(table[variant], table[reference])}


# Fewer paired seeds than this and a verdict is marked preliminary (the study brief asks for >= 8).
SEEDS_FOR_A_VERDICT = 8


def correct_holm(rows: Sequence[dict]) -> None:
    """Set ``p_holm`` on the rows that have a p-value: Holm-corrected over those rows together."""
    tested = [r for r in rows if not math.isnan(r["p"])]
    for row, adjusted in zip(tested, holm([r["p"] for r in tested]), strict=True):
        row["p_holm"] = adjusted


def verdict(row: Mapping, alpha: float = 0.05) -> str:
    if row["n"] < SEEDS_FOR_A_VERDICT:
        return f"preliminary (n < {SEEDS_FOR_A_VERDICT}): " + _verdict(row, alpha)
    return _verdict(row, alpha)


def _verdict(row: Mapping, alpha: float) -> str:
    if row.get("p_holm", 1.0) < alpha:
        return "different" + (" (variant better)" if row["mean"] > 0 else " (reference better)")
    if row["p_tost"] < alpha:
        return f"equivalent within +-{_margin_points()}"
    return "inconclusive"


def learnable_groups(rows: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """The finished controls runs with learnable gamma/beta and their record, by variant."""
    groups: dict[str, list[Mapping]] = {}
    for row in complete(rows):
        if row["params"]["activation"] in LEARNABLE and row.get("sgmod"):
            groups.setdefault(row["params"]["activation"], []).append(row)
    return groups


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
            gamma, beta = values["gamma"], values["beta"]
            centred = [b + g / 2 for g, b in zip(gamma, beta, strict=True)]
            seen = values["next_weight_norm"] or [1.0] * len(gamma)
            stats_ = out.setdefault(
                layer, {"bound": [], "moved": [], "gamma": [], "beta": [], "centred": [], "gamma_w": []}
            )
            stats_["bound"].append(record["activation_lr_sum"])
            stats_["moved"].append(_moved(values, act))
            stats_["gamma"].append(_mean(gamma))
            stats_["beta"].append(_mean(beta))
            stats_["centred"].append(_mean(centred))
            stats_["gamma_w"].append(_mean([g * w for g, w in zip(gamma, seen, strict=True)]))
    return {
        layer: {name: _mean(v) for name, v in values.items()} | {"n": len(values["bound"])}
        for layer, values in out.items()
    }


def _moved(layer: Mapping, act: Mapping) -> float:
    """The largest distance of any channel's gamma or beta of one layer from its init."""
    return max(
        max(abs(g - act["gamma_init"]) for g in layer["gamma"]), max(abs(b - act["beta_init"]) for b in layer["beta"])
    )


# From the default (1, 0) to the zero-centred tanh point (2, -1): the distance a budget must allow.
TANH_DISTANCE = 1.0


def sweep_travel(rows: Sequence[Mapping]) -> dict | None:
    """Over the finished trials of a Sgmod sweep (each with its own gamma/beta learning rate):
    how far gamma/beta could move (sum of their learning rate) and how far they did (any layer)."""
    could, moved = [], []
    for row in complete(rows):
        record, act = row.get("sgmod"), (row.get("config") or {}).get("activation")
        if record and act and record["layers"]:
            could.append(record["activation_lr_sum"])
            moved.append(max(_moved(layer, act) for layer in record["layers"].values()))
    if not could:
        return None
    return {
        "n": len(could),
        "could": sorted(could),
        "moved": sorted(moved),
        "enough": sum(c >= TANH_DISTANCE for c in could),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def best_of_weights(total: int, n: int):
    """The weight of each of ``total`` sorted values in the expected maximum of ``n`` draws with
    replacement (Dodge et al. 2019): (i/N)^n - ((i-1)/N)^n for the i-th smallest."""
    import numpy as np

    ranks = np.arange(1, total + 1) / total
    return ranks**n - (ranks - 1 / total) ** n


def expected_best(values: Sequence[float], budgets: Sequence[int]) -> list[float]:
    """Expected maximum of n draws (with replacement) from the observed values, for each n."""
    import numpy as np

    ordered = np.sort(np.asarray(values, dtype=float))
    return [float(ordered @ best_of_weights(len(ordered), n)) for n in budgets]


def equal_budget_differences(summaries: Mapping[str, dict], draws: Mapping, n: int) -> list[str]:
    """Tuned Sgmod minus each tuned baseline at the same number of trials ``n``: the difference of
    their expected best validation accuracies, with a 95% interval from resampling each sweep's
    trials independently (the sweeps share no seeds or configurations, so nothing is paired)."""
    if "sweep_sgmod" not in draws:
        return []
    sgmod = expected_best(summaries["sweep_sgmod"]["val"], [n])[0]
    lines = []
    for name in draws:
        if name != "sweep_sgmod":
            difference = sgmod - expected_best(summaries[name]["val"], [n])[0]
            low, high = interval(draws["sweep_sgmod"] - draws[name])
            lines.append(f"{name.removeprefix('sweep_')} {_pct(difference)} [{_pct(low)}, {_pct(high)}]")
    if not lines:
        return []
    return [
        "",
        f"Sgmod minus each baseline, expected best of {n} trials, in percentage points [95% bootstrap "
        f"interval over each sweep's trials]: {'; '.join(lines)}.",
    ]


def expected_best_draws(values: Sequence[float], n: int, rounds: int = 2000, seed: int = 0):
    """``expected_best(values, [n])`` on ``rounds`` bootstrap resamples of the trials: the estimate's
    sampling spread, for intervals."""
    import numpy as np

    total = len(values)
    rng = np.random.default_rng(seed)
    samples = np.sort(rng.choice(np.asarray(values, dtype=float), size=(rounds, total)), axis=1)
    return samples @ best_of_weights(total, n)


def interval(draws) -> tuple[float, float]:
    import numpy as np

    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def sweep_summary(rows: Sequence[Mapping]) -> dict:
    finished = complete(rows)
    if not finished:
        return {"n": 0}
    best = max(finished, key=lambda r: r["values"][0])
    return {
        "n": len(finished),
        "best_val": best["values"][0],
        "best_test": best["metrics"].get(METRIC),
        "best_params": best["params"],
        "val": [r["values"][0] for r in finished],
        "machines": sorted({_machine(r) for r in finished}),
    }


def epochs(rows: Sequence[Mapping]) -> str:
    """The finished runs' training length, read from their rows: "10", "3, 10" or "?"."""
    lengths = sorted({r.get("config", {}).get("trainer.max_epochs") for r in complete(rows)} - {None})
    return ", ".join(map(str, lengths)) or "?"


def fidelity_sentence(records: Mapping[str, Sequence[Mapping]]) -> str:
    """Whether the sweeps train as long as the runs that confirm them: if not, their ranking of
    configurations stands in for full training and would need checking against it."""
    sweeps = epochs([r for name in SWEEPS for r in records.get(name, [])])
    others = epochs([r for name in ("controls", *CONFIRMS) for r in records.get(name, [])])
    if sweeps == "?":
        return ""
    if sweeps == others or others == "?":
        return (
            f"Every sweep trial trains for the full budget ({sweeps} epochs, as the controls and the confirmation "
            "runs): no shorter run stands in for full training, so there is no cheap fidelity whose ranking of "
            "configurations would need checking."
        )
    return (
        f"The sweep trials train for {sweeps} epochs, the controls and confirmation runs for {others}: the sweeps' "
        "ranking of configurations is a cheaper fidelity's, not checked here against full training."
    )


def _margin_points() -> str:
    return f"{100 * EQUIVALENCE_MARGIN:g} points"


def paired_tests_note() -> str:
    """What the p-value columns test, below every table of paired differences."""
    return (
        f"p: paired t-test of no difference, Holm-corrected over the table; TOST p: two one-sided tests that "
        f"the difference lies within +-{_margin_points()} (the study's equivalence margin); "
        "verdicts at 0.05."
    )


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:+.2f}"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def controls_section(rows: Sequence[Mapping], figures: Path) -> str:
    table = by_variant(rows)
    lines = [
        "## 1. Controls at the full budget",
        "",
        f"Test accuracy over seeds ({epochs(rows)} epochs each); {len(complete(rows))} of 72 runs finished.",
        "",
        "| variant | n | mean | std | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for variant in sorted(table, key=lambda v: -_mean(list(table[v].values()))):
        values = list(table[variant].values())
        mean, sd, low, high = mean_ci(values)
        interval = "-" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]"
        lines.append(f"| {variant} | {len(values)} | {mean:.4f} | {sd:.4f} | {interval} |")
    lines += [
        "",
        "Primary contrasts (named before the runs), paired by seed, differences in percentage points:",
        "",
        "| question | variant - reference | paired n | difference [95% CI] | p (Holm) | TOST p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in contrasts(table):
        p_holm, p_tost = _p(row.get("p_holm", math.nan)), _p(row["p_tost"])
        difference = f"{_pct(row['mean'])} [{_pct(row['low'])}, {_pct(row['high'])}]"
        lines.append(
            f"| {row['question']} | {row['variant']} - {row['reference']} | {row['n']} | {difference} | "
            f"{p_holm} | {p_tost} | {verdict(row)} |"
        )
    lines += ["", paired_tests_note()]
    secondary = best_learnable_vs_best_fixed(table)
    if secondary:
        row = secondary
        lines += [
            "",
            "Secondary (both picked after the runs, the best mean of each group, so the p-value is optimistic): "
            f"the best learnable Sgmod against the best fixed member of the family, {row['variant']} - "
            f"{row['reference']}: {_pct(row['mean'])} points [{_pct(row['low'])}, {_pct(row['high'])}] over "
            f"{row['n']} paired seeds, p {_p(row['p'])}, TOST p {_p(row['p_tost'])}: {verdict(row)}.",
        ]
    if table:
        _bar_chart(table, figures / "controls_test_acc.png")
        lines += ["", "![controls](study_figures/controls_test_acc.png)"]
    return "\n".join(lines)


def _bar_chart(table: Mapping[str, Mapping[int, float]], path: Path) -> None:
    plt = _plt()
    variants = sorted(table, key=lambda v: _mean(list(table[v].values())))
    figure, axes = plt.subplots(figsize=(8, 3.8))
    for x, variant in enumerate(variants):
        values = list(table[variant].values())
        mean, _, low, _ = mean_ci(values)
        axes.errorbar(x, mean, yerr=0 if math.isnan(low) else mean - low, fmt="o", capsize=4, color="tab:blue")
        axes.scatter([x] * len(values), values, s=10, color="tab:gray", alpha=0.6)
    axes.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    axes.set_ylabel(METRIC)
    axes.set_title("controls: mean, 95% CI and every seed")
    _save(figure, path)


TRAVEL_TABLE = [
    "| configuration | layer | n | could | moved | gamma | beta | beta + gamma/2 | gamma x w |",
    "|---|---|---|---|---|---|---|---|---|",
]


def travel_lines(groups: Mapping[str, Sequence[Mapping]]) -> list[str]:
    """The travel table of ``groups`` ({configuration: its runs})."""
    return TRAVEL_TABLE + [
        f"| {name} | {layer} | {m['n']} | {m['bound']:.2f} | {m['moved']:.2f} | {m['gamma']:.3f} | "
        f"{m['beta']:.3f} | {m['centred']:.3f} | {m['gamma_w']:.2f} |"
        for (name, layer), m in sorted(travel(groups).items())
    ]


def travel_section(rows: Sequence[Mapping], figures: Path) -> str:
    groups = learnable_groups(rows)
    if not groups:
        return ""
    lines = [
        "## 2. How far gamma/beta could move, and did",
        "",
        "`could` is the sum of gamma/beta's learning rate over the run's steps (with Adam, about the "
        "farthest a parameter can move); `moved` the largest distance of any channel's gamma or beta "
        "from its init; the centred coordinate is beta + gamma/2 (0 for tanh(x/2)); gamma x w is gamma "
        "times the norm of the next layer's weights reading that channel (what the next layer sees; "
        "the next layer can absorb gamma). Means over seeds.",
        "",
        *travel_lines(groups),
    ]
    if channel_figure(groups, figures / "gamma_beta_channels.png"):
        lines += [
            "",
            "Every channel's final gamma and beta over all seeds (the line: beta = -gamma/2, a centred tanh):",
            "",
            "![channels](study_figures/gamma_beta_channels.png)",
        ]
    return "\n".join(lines)


# A best value within this share of its searched range from a bound (on the log scale for a log
# parameter) is "at the edge": the optimum may lie outside the range.
EDGE_SHARE = 0.05


def at_edge(trial) -> list[str]:
    """The searched numeric parameters of ``trial`` whose value lies at the edge of their range."""
    found = []
    for key, value in sorted(trial.params.items()):
        dist = trial.distributions[key]
        if not hasattr(dist, "low") or dist.high <= dist.low:
            continue  # a categorical or a fixed value
        scale = math.log if is_log(trial, key) else float
        share = (scale(value) - scale(dist.low)) / (scale(dist.high) - scale(dist.low))
        if min(share, 1 - share) < EDGE_SHARE:
            found.append(f"{key}={value:.3g} (searched {dist.low:.3g} to {dist.high:.3g})")
    return found


def edge_lines(root: Path) -> list[str]:
    """Which sweeps' best trials sit at the edge of a searched range: a wider range might do better."""
    found = []
    for name in SWEEPS:
        if not (record_dir(name, root) / "study.journal").is_file():
            continue
        finished = load(name, root).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        edges = at_edge(max(finished, key=lambda t: t.values[0])) if finished else []
        found += [f"{name}'s {edge}" for edge in edges]
    if not found:
        return []
    return [
        "",
        f"At the edge of the searched range (within {EDGE_SHARE:.0%} of it) in a sweep's best trial: "
        + "; ".join(found)
        + ". The best configuration there may lie outside the range, so that activation may be under-tuned.",
    ]


def sweeps_section(records: Mapping[str, Sequence[Mapping]], figures: Path, root: Path = Path(".")) -> str:
    summaries = {name: sweep_summary(records.get(name, [])) for name in SWEEPS}
    equal = min((s["n"] for s in summaries.values() if s["n"]), default=0)
    lines = [
        "## 3. The sweeps (the same sampler and ranges; compared at equal trial counts)",
        "",
        "| sweep | finished trials | best val/acc_best | its test/acc "
        f"| expected best of {equal} [95% CI] | machines |",
        "|---|---|---|---|---|---|",
    ]
    draws = {  # a seed of its own per sweep: independent resamples
        name: expected_best_draws(s["val"], equal, seed=i) for i, (name, s) in enumerate(summaries.items()) if s["n"]
    }
    for name, s in summaries.items():
        if s["n"]:
            at_equal, (low, high) = expected_best(s["val"], [equal])[0], interval(draws[name])
            lines.append(
                f"| {name} | {s['n']} | {s['best_val']:.4f} | {s['best_test']:.4f} | {at_equal:.4f} "
                f"[{low:.4f}, {high:.4f}] | {', '.join(s['machines'])} |"
            )
        else:
            lines.append(f"| {name} | 0 | - | - | - | - |")
    if equal:
        lines += [
            "",
            f"Equal budget: the best of more trials is higher by chance alone, so the sweeps are compared by the "
            f"expected best validation accuracy of {equal} trials (the fewest any sweep has finished), estimated "
            "from all of each sweep's trials (Dodge et al. 2019). The Sgmod sweep runs "
            f"{PARTS['sweep_sgmod'].trials} trials over its six parameters, each baseline "
            f"{PARTS['sweep_relu'].trials} over its two (a denser cover of a smaller space).",
            *equal_budget_differences(summaries, draws, equal),
        ]
    lines += edge_lines(root)
    fidelity = fidelity_sentence(records)
    if fidelity:
        lines += ["", fidelity]
    moves = sweep_travel(records.get("sweep_sgmod", []))
    if moves:
        could, moved = moves["could"], moves["moved"]
        typical_could, typical_moved = statistics.median(could), statistics.median(moved)
        lines += [
            "",
            f"gamma/beta in sweep_sgmod ({moves['n']} trials, each with its own gamma/beta learning rate): they could "
            f"travel {typical_could:.2f} (median; {could[0]:.2f} to {could[-1]:.2f}) and moved {typical_moved:.2f} "
            f"(median; {moved[0]:.2f} to {moved[-1]:.2f}); {moves['enough']} of {moves['n']} trials allowed the "
            f"distance {TANH_DISTANCE:g} from (1, 0) to the centred tanh point (2, -1).",
        ]
    best = summaries.get("sweep_sgmod", {})
    if best.get("n"):
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["best_params"].items()
        )
        so_far = "" if best["n"] >= PARTS["sweep_sgmod"].trials else " so far"
        lines += ["", f"Best Sgmod configuration{so_far}: {params}."]
    budgets = list(range(1, max((s["n"] for s in summaries.values()), default=0) + 1))
    if budgets:
        plt = _plt()
        figure, axes = plt.subplots(figsize=(6, 4))
        for name, s in summaries.items():
            if s["n"]:
                axes.plot(budgets[: s["n"]], expected_best(s["val"], budgets[: s["n"]]), marker="o", label=name)
        axes.set_xlabel("number of trials")
        axes.set_ylabel("expected best val/acc_best")
        axes.legend(fontsize=8)
        _save(figure, figures / "expected_best.png")
        lines += [
            "",
            "Expected best validation accuracy against the number of trials (Dodge et al. 2019): "
            "a curve that is still rising says the search has not converged.",
            "",
            "![expected best](study_figures/expected_best.png)",
        ]
    return "\n".join(lines)


def write_study_report(root: Path = Path("."), out: Path = Path("docs") / "report" / "study.md") -> str:
    """docs/report/study.md and docs/report/study_figures/ from the committed records."""
    records = {name: read_rows(root / RECORD_DIR / name / RUNS_FILE) for name in PARTS}
    figures = out.parent / "study_figures"
    machines = sorted({_machine(r) for rows in records.values() for r in complete(rows)})
    header = [
        "# The Sgmod study: " + ("results" if study_complete(records) else "status and results so far"),
        "",
        "Generated by `python scripts/study.py report` from the committed records in `study/` (no training). "
        "Every run: the default CNN with BatchNorm before the activation, AdamW, cosine schedule, "
        f"{epochs([r for rows in records.values() for r in rows])} epochs of full Fashion-MNIST "
        "(55k train / 5k validation / 10k test), batch 256.",
        "",
        "Machines: " + "; ".join(machines) + ". Accuracies from different machines differ only by "
        "floating-point non-determinism (GPU convolutions use TF32); rows say which machine ran them. "
        "A CPU's vector extension (AVX2, AVX512) is named from 2026-12-03 on; rows recorded before do not say it.",
    ]
    sections = [
        controls_section(records["controls"], figures),
        travel_section(records["controls"], figures),
        sweeps_section(records, figures, root),
        importance_section(root, figures),
        confirm_section({n: records[n] for n in CONFIRMS}, figures, records["controls"]),
    ]
    text = "\n\n".join(["\n".join(header), *[s for s in sections if s]]) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def study_complete(records: Mapping[str, Sequence[Mapping]]) -> bool:
    """Whether every part of the study has all its finished trials."""
    return all(len(complete(records.get(name, []))) >= p.trials for name, p in PARTS.items())


def _machine(row: Mapping) -> str:
    machine = row.get("machine") or {}
    if machine.get("gpu"):
        return machine["gpu"]
    capability = f", {machine['cpu_capability']}" if machine.get("cpu_capability") else ""
    return f"{machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores{capability})"


def importances(trials: Sequence, rounds: int = 20, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """fANOVA importance of each parameter with a bootstrap 95% interval over the trials:
    {parameter: (importance on all trials, low, high)}. Empty below 8 finished trials."""
    import numpy as np

    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) < 8:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per bootstrap study

    def fanova(sample: Sequence) -> dict[str, float]:
        study = optuna.create_study(direction="maximize")
        study.add_trials(sample)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)

    whole = fanova(finished)
    rng = np.random.default_rng(seed)
    draws = [fanova([finished[i] for i in rng.integers(0, len(finished), len(finished))]) for _ in range(rounds)]
    return {
        name: (value, *np.percentile([d.get(name, 0.0) for d in draws], [2.5, 97.5]).tolist())
        for name, value in whole.items()
    }


def centred(trials: Sequence) -> list:
    """The trials with beta_init replaced by the centred coordinate beta + gamma/2 (0 for tanh(x/2)):
    Sgmod = (gamma/2) tanh(x/2) + (beta + gamma/2), so slope and offset are read apart."""
    from optuna.distributions import FloatDistribution

    out = []
    for t in trials:
        params, dists = dict(t.params), dict(t.distributions)
        if "activation.beta_init" not in params or "activation.gamma_init" not in params:
            continue
        params["activation.beta_init+gamma_init/2"] = (
            params.pop("activation.beta_init") + params["activation.gamma_init"] / 2
        )
        dists.pop("activation.beta_init")
        dists["activation.beta_init+gamma_init/2"] = FloatDistribution(-5.0 + 0.05, 5.0 + 5.0)
        out.append(optuna.trial.create_trial(params=params, distributions=dists, value=t.value, state=t.state))
    return out


def importance_section(root: Path, figures: Path) -> str:
    """fANOVA importances of the Sgmod sweep, in the searched and in the centred coordinates,
    with bootstrap intervals, and the marginal of each parameter (Optuna's slice plot)."""
    journal = record_dir("sweep_sgmod", root) / "study.journal"
    if not journal.is_file():
        return ""
    trials = load("sweep_sgmod", root).get_trials(deepcopy=False)
    searched, turned = importances(trials), importances(centred(trials))
    if not searched:
        return "## 4. What matters in the Sgmod sweep\n\nFewer than 8 finished trials: no importances yet."
    lines = [
        "## 4. What matters in the Sgmod sweep",
        "",
        "fANOVA importance (share of the variance of val/acc_best) with a 95% bootstrap interval over the "
        "trials, in the searched coordinates and with beta_init replaced by the centred beta + gamma/2.",
        "",
        "| parameter | importance [95% CI] | centred coordinates [95% CI] |",
        "|---|---|---|",
    ]
    for name in sorted(
        set(searched) | set(turned), key=lambda n: -max(searched.get(n, (0,))[0], turned.get(n, (0,))[0])
    ):
        cells = [f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" if v else "-" for v in (searched.get(name), turned.get(name))]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    study = optuna.create_study(direction="maximize")
    study.add_trials([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE])
    with warnings.catch_warnings():  # "experimental" since Optuna 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = optuna.visualization.matplotlib.plot_slice(study)
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    # not _save: its tight_layout would spread the panels under the colorbar plot_slice placed beside them
    figures.mkdir(parents=True, exist_ok=True)
    figure.savefig(figures / "sgmod_marginals.png", dpi=100, bbox_inches="tight")
    _plt().close(figure)
    lines += ["", *good_values(study.trials), "", "![marginals](study_figures/sgmod_marginals.png)"]
    return "\n".join(lines)


def good_values(trials: Sequence) -> list[str]:
    """Which values work: each searched parameter over the top quarter of the finished ``trials``
    (median, geometric on a log scale, and range) against the searched range, with the best
    trial's value and the rounded median that ``confirm_sgmod_default`` retrains."""
    top = top_trials(trials)
    lines = [
        f"Which values work: the top quarter of the trials ({len(top)} of {len(trials)}, val/acc_best "
        f"{top[-1].values[0]:.4f} to {top[0].values[0]:.4f}) against the searched range. A top-quarter range "
        "as wide as the searched one says the parameter hardly matters; the recommended default (the "
        "medians, rounded) is what `confirm_sgmod_default` retrains on fresh seeds.",
        "",
        "| parameter | searched | best trial | top quarter: median [min, max] | recommended default |",
        "|---|---|---|---|---|",
    ]
    for key in sorted(top[0].params):
        dist, values = top[0].distributions[key], [t.params[key] for t in top]
        middle = typical(top, key)
        lines.append(
            f"| {key} | {dist.low:.3g} to {dist.high:.3g}{' (log)' if is_log(top[0], key) else ''} "
            f"| {top[0].params[key]:.3g} | {middle:.3g} [{min(values):.3g}, {max(values):.3g}] "
            f"| {rounded(middle, is_log(top[0], key)):g} |"
        )
    return lines


def is_gpu(row: Mapping) -> bool:
    return bool((row.get("machine") or {}).get("gpu"))


def machine_kind(rows: Sequence[Mapping]) -> str:
    """GPU, CPU, or both, for a configuration's runs."""
    return "/".join(sorted({"GPU" if is_gpu(r) else "CPU" for r in rows})) or "-"


def machine_effect(rows: Sequence[Mapping]) -> dict | None:
    """GPU minus CPU test accuracy, from the controls, whose seeds of each variant were split
    between a GPU and CPUs: each variant with at least two runs on each side gives the difference
    of its two means, weighted by 1 / (1/n_gpu + 1/n_cpu) (its inverse variance up to the common
    factor); the interval takes the pooled within-cell variance, t with runs - cells degrees of
    freedom. Unpaired (other seeds on each side), so it bounds a systematic machine effect, not a
    per-run one."""
    cells: dict[str, dict[bool, list[float]]] = {}
    for row in complete(rows):
        cells.setdefault(row["params"]["activation"], {}).setdefault(is_gpu(row), []).append(row["metrics"][METRIC])
    both = [c for c in cells.values() if len(c.get(True, [])) >= 2 and len(c.get(False, [])) >= 2]
    residuals = [x - _mean(side) for c in both for side in c.values() for x in side]
    freedom = len(residuals) - 2 * len(both)
    if not both or freedom < 1:
        return None
    weights = [1 / (1 / len(c[True]) + 1 / len(c[False])) for c in both]
    estimate = sum(w * (_mean(c[True]) - _mean(c[False])) for w, c in zip(weights, both, strict=True)) / sum(weights)
    half = stats.t.ppf(0.975, freedom) * math.sqrt(sum(r * r for r in residuals) / freedom / sum(weights))
    return {
        "mean": estimate,
        "low": estimate - half,
        "high": estimate + half,
        "variants": len(both),
        "runs": len(residuals),
    }


def machine_lines(
    runs: Mapping[str, Sequence[Mapping]], twins: Sequence[tuple[str, str]], controls: Sequence[Mapping]
) -> list[str]:
    """When the confirm configurations (their finished ``runs``) ran on GPUs and CPUs, how large the
    machine's own effect is: from the ``controls`` (unpaired), and from each of the ``twins``, a
    configuration retrained on both (paired by seed)."""
    if len({is_gpu(r) for rows in runs.values() for r in rows}) < 2:
        return []
    lines = [
        "",
        "These configurations did not all run on one kind of machine (the table's last column; GPU convolutions "
        "use TF32, the CPUs float32), so a paired difference between a GPU and a CPU configuration also holds "
        "the machine's own effect, GPU minus CPU:",
        "",
    ]
    effect = machine_effect(controls)
    if effect:
        lines.append(
            f"- from the controls, whose seeds ran partly on a GPU and partly on CPUs ({effect['variants']} variants "
            f"with at least two runs on each side, {effect['runs']} runs, unpaired): {_pct(effect['mean'])} points "
            f"[{_pct(effect['low'])}, {_pct(effect['high'])}];"
        )
    for gpu, cpu in twins:
        row = paired(by_seed(runs[gpu]), by_seed(runs[cpu]))
        lines.append(
            f"- {gpu} on a GPU minus {cpu}, the same configuration and seeds on a CPU (paired, {row['n']} seeds): "
            f"{_pct(row['mean'])} points [{_pct(row['low'])}, {_pct(row['high'])}];"
        )
    lines += ["", "A difference between machines well outside these intervals is not the machine's."]
    return lines


def replicates(runs: Mapping[str, Sequence[Mapping]]) -> list[tuple[str, str]]:
    """(GPU part, CPU part) pairs of confirm configurations that are the same but for the machine."""

    def configuration(rows: Sequence[Mapping]) -> dict:
        return {k: v for k, v in (rows[0].get("config") or {}).items() if k != "seed"}

    on_gpu = [n for n, rows in runs.items() if all(is_gpu(r) for r in rows)]
    on_cpu = [n for n, rows in runs.items() if not any(is_gpu(r) for r in rows)]
    return [
        (g, c)
        for g in on_gpu
        for c in on_cpu
        if configuration(runs[g]) and configuration(runs[g]) == configuration(runs[c])
    ]


def confirm_section(records: Mapping[str, Sequence[Mapping]], figures: Path, controls: Sequence[Mapping] = ()) -> str:
    """Tuned Sgmod and the recommended Sgmod default against each tuned baseline (and each other),
    on the fresh seeds of the confirm parts, Holm-corrected together; how large a machine effect
    the controls allow, where the parts ran on different machines; then where their gamma/beta
    ended."""
    tables = {name.removeprefix("confirm_"): by_seed(rows) for name, rows in records.items()}
    if not tables.get("sgmod"):
        return "## 5. Tuned against tuned, on fresh seeds\n\nNot run yet (`scripts/study.py run confirm_<activation>`)."
    lines = [
        "## 5. Tuned against tuned, on fresh seeds",
        "",
        "The best configuration of each sweep, and the recommended Sgmod default (`sgmod_default`: the rounded "
        "medians of sweep_sgmod's top quarter), retrained on seeds 100-109; test accuracy.",
        "",
        "| configuration | n | mean | 95% CI | settings | machines |",
        "|---|---|---|---|---|---|",
    ]
    for name, table in tables.items():
        if table:
            mean, _, low, high = mean_ci(list(table.values()))
            interval = "-" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]"
            rows = complete(records[f"confirm_{name}"])
            machines = "; ".join(sorted({_machine(r) for r in rows}))
            lines.append(f"| {name} | {len(table)} | {mean:.4f} | {interval} | {_settings(rows)} | {machines} |")
    runs = {name: complete(records[f"confirm_{name}"]) for name, table in tables.items() if table}
    twins = replicates(runs)
    if twins:
        lines += [
            "",
            "; ".join(f"`{cpu}` is `{gpu}` again (its settings and seeds) on a CPU" for gpu, cpu in twins) + ".",
        ]
    lines += [
        "",
        "Paired by seed, differences in percentage points:",
        "",
        "| variant - reference | machines | paired n | difference [95% CI] | p (Holm) | TOST p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    kind = {name: machine_kind(rows) for name, rows in runs.items()}
    pairs = [(v, r) for v in ("sgmod", "sgmod_default") for r in tables if r not in ("sgmod", "sgmod_default")]
    rows = [
        {"variant": v, "reference": r, **paired(tables[v], tables[r])}
        for v, r in [*pairs, ("sgmod_default", "sgmod")]
        if tables.get(v) and tables.get(r)
    ]
    correct_holm(rows)
    for row in rows:
        difference = f"{_pct(row['mean'])} [{_pct(row['low'])}, {_pct(row['high'])}]"
        lines.append(
            f"| {row['variant']} - {row['reference']} | {kind[row['variant']]} - {kind[row['reference']]} | "
            f"{row['n']} | {difference} | "
            f"{_p(row.get('p_holm', math.nan))} | {_p(row['p_tost'])} | {verdict(row)} |"
        )
    lines += ["", paired_tests_note(), *machine_lines(runs, twins, controls)]
    return "\n".join(lines + tuned_travel_lines(records, figures))


def tuned_travel_lines(records: Mapping[str, Sequence[Mapping]], figures: Path) -> list[str]:
    """Where the retrained Sgmod configurations' gamma/beta ended, per layer and per channel."""
    groups = {
        name.removeprefix("confirm_"): [r for r in complete(records.get(name, [])) if r.get("sgmod")]
        for name in ("confirm_sgmod", "confirm_sgmod_default")
    }
    groups = {name: rows for name, rows in groups.items() if rows}
    if not groups:
        return []
    lines = [
        "",
        "Where their gamma/beta ended (the columns as in section 2; means over the seeds, the inits are the "
        "settings above):",
        "",
        *travel_lines(groups),
    ]
    if channel_figure(groups, figures / "gamma_beta_tuned.png"):
        lines += ["", "![tuned channels](study_figures/gamma_beta_tuned.png)"]
    return lines


def _settings(rows: Sequence[Mapping]) -> str:
    """The searched settings a confirm part retrained, read from its first run's config."""
    config = next((r.get("config") for r in complete(rows) if r.get("config")), None) or {}
    act, opt = config.get("activation") or {}, config.get("optimizer") or {}
    keys = [("gamma_init", act), ("beta_init", act), ("lr", act), ("weight_decay", act)]
    parts = [f"activation.{k}={d[k]:.3g}" for k, d in keys if isinstance(d.get(k), int | float)]
    parts += [f"optimizer.{k}={opt[k]:.3g}" for k in ("lr", "weight_decay") if isinstance(opt.get(k), int | float)]
    return ", ".join(parts) or "-"


def by_seed(rows: Sequence[Mapping], metric: str = METRIC) -> dict[int, float]:
    return {row["params"]["seed"]: row["metrics"][metric] for row in complete(rows)}


def channel_figure(groups: Mapping[str, Sequence[Mapping]], path: Path) -> bool:
    """Every channel's final (gamma, beta) of each configuration in ``groups``, one panel per
    layer, over all seeds, with the self-centring line beta = -gamma/2 (a centred tanh)."""
    points: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, rows in groups.items():
        for row in rows:
            for layer, values in row["sgmod"]["layers"].items():
                pairs = zip(values["gamma"], values["beta"], strict=True)
                points.setdefault(layer, {}).setdefault(name, []).extend(pairs)
    if not points:
        return False
    plt = _plt()
    figure, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 3.8), squeeze=False)
    for ax, (layer, by_variant_) in zip(axes[0], sorted(points.items()), strict=True):
        for variant, pairs in sorted(by_variant_.items()):
            ax.scatter(*zip(*pairs, strict=True), s=4, alpha=0.4, label=variant)
        low, high = ax.get_xlim()
        ax.plot([low, high], [-low / 2, -high / 2], color="black", lw=0.8, label="beta = -gamma/2")
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("gamma")
        ax.set_ylabel("beta")
    axes[0][0].legend(fontsize=7, markerscale=3)
    _save(figure, path)
    return True
