"""Pruning inside a sweep's trial: the Lightning side of the trial contract (trial_contract.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import optuna

from sgmod_study.trial_contract import ENV_PRUNER, ENV_STORAGE, ENV_STUDY, ENV_TRIAL_ID


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
