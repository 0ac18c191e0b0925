"""What a training run does when it runs as a sweep's trial, and how the sweeper reads it back.

The two sides of one contract in one place, so that the training code needs nothing of the
sweeper: the environment the sweeper sets (how a trial re-attaches to its study), the result
file the trial writes, and the pruning callback (exit code 4 when the pruner stops a trial).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import optuna

RESULT_FILE = "result.json"
# Environment of a trial process: how its pruning callback re-attaches to the study.
ENV_STORAGE, ENV_STUDY, ENV_TRIAL_ID, ENV_PRUNER = (
    "SGMOD_OPTUNA_STORAGE",
    "SGMOD_OPTUNA_STUDY",
    "SGMOD_OPTUNA_TRIAL_ID",
    "SGMOD_OPTUNA_PRUNER",
)


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


class OptunaPruning(L.Callback):
    """Lightning callback: report the optimized metric after each validation; stop if pruned.

    Not optuna-integration's PyTorchLightningPruningCallback: that one needs the Trial object
    in the training process and, under DDP, an RDB storage; this one re-attaches to the study
    from the environment the sweeper set (any storage) and decides on rank zero for all ranks.
    """

    def __init__(self, monitor: str) -> None:
        from hydra.utils import instantiate

        # only in a trial process: a plain training run never opens a study
        from sgmod_study.sweeper.storage import open_storage

        self.monitor = monitor
        pruner_cfg = json.loads(os.environ.get(ENV_PRUNER) or "{}")
        pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
        storage, _ = open_storage(os.environ[ENV_STORAGE], os.environ[ENV_STUDY], Path("."))
        study = optuna.load_study(study_name=os.environ[ENV_STUDY], storage=storage, pruner=pruner)
        self.trial = optuna.trial.Trial(study, int(os.environ[ENV_TRIAL_ID]))
        self.enabled = len(study.directions) == 1  # Optuna cannot prune multi-objective trials

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self.enabled or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        prune = False
        if trainer.is_global_zero:
            value = float(trainer.callback_metrics[self.monitor])
            self.trial.report(value, step=trainer.current_epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def pruning_callback(optimized_metric: str) -> OptunaPruning | None:
    """The pruning callback when this process runs a sweep's trial, else None."""
    return OptunaPruning(optimized_metric) if ENV_TRIAL_ID in os.environ else None
