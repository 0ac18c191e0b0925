"""What a training run does when it runs as a sweep's trial, and how the sweeper reads it back.

The two sides of one contract in one place, so that the training code needs nothing of the
sweeper and the sweeper nothing of the training libraries: the environment the sweeper sets
(how a trial re-attaches to its study, pruning.py), the result file the trial writes, and the
exit codes (errors.py: 2 bad config, 3 diverged, 4 pruned).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULT_FILE = "result.json"
SGMOD_FINAL_FILE = "sgmod_final.json"  # a run's final gamma/beta per layer (diagnostics.py writes it)
# Environment of a trial process: how its pruning callback re-attaches to the study.
ENV_STORAGE, ENV_STUDY, ENV_TRIAL_ID, ENV_PRUNER = (
    "SGMOD_OPTUNA_STORAGE",
    "SGMOD_OPTUNA_STUDY",
    "SGMOD_OPTUNA_TRIAL_ID",
    "SGMOD_OPTUNA_PRUNER",
)
ENV_TRIAL_NUMBER = "SGMOD_OPTUNA_TRIAL_NUMBER"  # the trial's name in TensorBoard's HParams table


def read_values(folder: Path) -> list[float] | None:
    """The optimized value(s) a trial wrote to ``<folder>/result.json``; None if there are none."""
    try:
        value = json.loads((folder / RESULT_FILE).read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def read_metrics(folder: Path) -> dict[str, float]:
    """The final metrics a trial wrote (test metrics too), the numbers only."""
    try:
        metrics = json.loads((folder / RESULT_FILE).read_text()).get("metrics") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {name: float(v) for name, v in metrics.items() if isinstance(v, int | float)}
