"""Synthetic classifier-study records for the report tests: rows with known values, written as a
record's runs.jsonl, and a sweep whose score depends on |beta|/gamma alone."""

from __future__ import annotations

import functools

import optuna
from optuna.distributions import FloatDistribution

from helpers.records import row as _row
from helpers.records import write_parts
from sgmod_study.study.report import figures, importance
from sgmod_study.study.spec import Study, load_study

EPYC = {"cpu": "AMD EPYC", "cpu_count": 2, "cpu_capability": "AVX512"}
MARGINS = (0.005, 0.002)  # the classifier study's margin and the one also reported
SGMOD_PARAMS = {
    "activation.gamma_init": 1.0,
    "activation.beta_init": 0.0,
    "activation.lr": 1e-3,
    "activation.weight_decay": 1e-4,
    "optimizer.lr": 1e-3,
    "optimizer.weight_decay": 1e-4,
}
BASELINE_PARAMS = {"optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-4}


def on_machine(machine, rows):
    return [{**row, "machine": machine} for row in rows]


def sweep_row(number, value, params, test=None):
    """A sweep trial's row: its objective (val/acc_best) and searched ``params``."""
    return {
        "number": number,
        "state": "COMPLETE",
        "values": [value],
        "params": dict(params),
        "metrics": {"test/acc": value if test is None else test, "val/acc_best": value},
        "config": {"trainer.max_epochs": 10},
        "machine": {"gpu": "Test GPU"},
    }


def classifier_study() -> Study:
    return load_study("classifier")


def report_page(tmp_path, numbers=None) -> figures.Page:
    return figures.Page(tmp_path / "study_figures", numbers or {})


def controls_record(tmp_path, table):
    rows = [_row(variant, s, a) for variant, values in table.items() for s, a in enumerate(values)]
    return write_parts(tmp_path / "record", {"controls": rows})


def sweep_trials(n):
    """A sweep whose score falls with |beta|/gamma (and ignores the rest), trial 0 enqueued at
    the defaults (gamma 1, beta 0, lr 1e-3, wd 1e-4); the better trials have lr near 3e-3."""
    space = {
        "activation.gamma_init": FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "optimizer.weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
    }
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(
        {
            "activation.gamma_init": 1.0,
            "activation.beta_init": 0.0,
            "optimizer.lr": 1e-3,
            "optimizer.weight_decay": 1e-4,
        }
    )

    def objective(trial):
        p = {k: trial.suggest_float(k, d.low, d.high, log=d.log) for k, d in space.items()}
        ratio = abs(p["activation.beta_init"]) / p["activation.gamma_init"]
        return 0.93 - 0.01 * min(ratio, 8.0) - (0.0 if trial.number else 0.08)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    trials = study.trials
    for t in sorted(trials, key=lambda t: -t.values[0])[:12]:  # the top quarter and more: lr 3e-3
        t.params["optimizer.lr"] = 3e-3
    return trials


@functools.cache
def sweep_importance(n=40):
    """The importance section's numbers of ``sweep_trials(n)`` (few forests: fast)."""
    return importance.of_trials("sweep_sgmod", sweep_trials(n), seeds=2, rounds=4)
