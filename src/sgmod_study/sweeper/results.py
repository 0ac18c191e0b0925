"""A sweep's result files, rewritten as trials finish: trials.csv, best.json, best_config.yaml,
importances.json, and Optuna's plots as PNG files and TensorBoard figures."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sgmod_study.study import stats
from sgmod_study.study.choose import best_trials
from sgmod_study.sweeper.storage import FINISHED

# A forest costs 0.1 s (8 trials) to 0.4 s (64 trials) of CPU, and the scheduler's slots wait
# while it runs: 3 forests, not the report's 10 (single forests differ by ~0.05 in a share).
SWEEP_FOREST_SEEDS = 3


def named_values(study: optuna.Study, values: Sequence[float]) -> str:
    """``val/acc_best=0.9191`` (each objective by its name), the way a user reads a result."""
    names = study.metric_names or [f"objective {i}" for i in range(len(values))]
    return "  ".join(f"{name}={value:.4f}" for name, value in zip(names, values, strict=True))


def shown_params(params: dict) -> str:
    """``activation.gamma_init=1.8 optimizer.lr=0.003``: floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_summary(study: optuna.Study) -> str:
    """The sweep's last line: its best trial (each of the Pareto front's, for several objectives)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "[sweep] no trial has finished: no best trial"
    best = best_trials(study)
    lines = [
        f"[sweep] best of the {len(complete)} finished trials: trial {t.number}, {named_values(study, t.values)}\n"
        f"        {shown_params(t.params)}\n"
        f"        folder: {t.user_attrs.get('folder', '?')}\n"
        f"        again:  {t.user_attrs.get('command', '?')}"
        for t in best
    ]
    return "\n".join(lines)


def write_results(study: optuna.Study, sweep_dir: Path, figures: bool = True) -> None:
    """trials.csv (every trial: params, value, state, duration, slot, folder, failure reason),
    best.json (the best trial, or the Pareto front for several objectives), best_config.yaml
    (the best trial's full config), and with ``figures`` importances.json and the plots."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = ("slot", "device", "fail_reason", "folder")
    with open(sweep_dir / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["number", "state", "values", "duration_s", "datetime_start", "datetime_complete", *params, *attrs]
        )
        for t in trials:
            duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.values is None else ";".join(map(str, t.values)),
                    duration,
                    t.datetime_start,
                    t.datetime_complete or "",
                    *(t.params.get(p, "") for p in params),
                    *(t.user_attrs.get(a, "") for a in attrs),
                ]
            )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    best = best_trials(study)
    summary = [
        {
            "number": t.number,
            "values": t.values,
            "params": t.params,
            "folder": t.user_attrs.get("folder"),
            "command": t.user_attrs.get("command"),
        }
        for t in best
    ]
    (sweep_dir / "best.json").write_text(json.dumps(summary if len(summary) > 1 else summary[0], indent=2))
    config = Path(best[0].user_attrs.get("folder", "")) / ".hydra" / "config.yaml"
    if config.is_file():
        shutil.copyfile(config, sweep_dir / "best_config.yaml")
    if figures:
        write_importances(study, sweep_dir)
        write_plots(study, sweep_dir)


def write_importances(study: optuna.Study, sweep_dir: Path) -> None:
    """importances.json: each parameter's share of the objective's variance, {name: share} most
    important first (the study report's fANOVA, mean over forest seeds, without its bootstrap)."""
    if len(study.directions) > 1:
        return
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    found = stats.fanova(trials, seeds=SWEEP_FOREST_SEEDS, rounds=0, minimum=2)
    if found:  # empty: fewer than 2 trials, or every value alike
        importances = {name: mean for name, (mean, _, _) in found.items()}
        (sweep_dir / "importances.json").write_text(json.dumps(importances, indent=2))


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[str]:
    """Optuna's plots as PNG files in <sweep>/plots/ and as figures in <sweep>/tensorboard/.

    A plot that needs more finished trials than there are yet is skipped until there are.
    """

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots
    from torch.utils.tensorboard import SummaryWriter

    plots = (
        {"pareto_front": optuna_plots.plot_pareto_front}
        if len(study.directions) > 1
        else {
            "optimization_history": optuna_plots.plot_optimization_history,
            "param_importances": optuna_plots.plot_param_importances,
            "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
        }
    )
    gamma_beta = ["activation.gamma_init", "activation.beta_init"]
    if len(study.directions) == 1 and all(p in best_trials(study)[0].params for p in gamma_beta):
        plots["gamma_beta_contour"] = lambda s: optuna_plots.plot_contour(s, params=gamma_beta)
    folder = sweep_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = []
    step = len(study.get_trials(deepcopy=False, states=FINISHED))
    with SummaryWriter(str(sweep_dir / "tensorboard")) as writer, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, plot in plots.items():
            try:
                figure = _figure(plot(study))
            except (ValueError, RuntimeError, ZeroDivisionError):  # too few trials for this plot yet
                continue
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            writer.add_figure(f"sweep/{name}", figure, global_step=step)  # closes the figure
            written.append(name)
    plt.close("all")
    return written


def _figure(axes):
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure
