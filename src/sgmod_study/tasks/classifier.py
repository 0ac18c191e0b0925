"""The image-classification task as a LightningModule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from sgmod_study.data import DatasetSpec
from sgmod_study.errors import ConfigError, TrainingDiverged
from sgmod_study.nn.models import build_model
from sgmod_study.nn.norms import batch_statistics
from sgmod_study.tasks.checkpoints import read_checkpoint, rebuild_task
from sgmod_study.tasks.optim import build_optimizer, build_scheduler
from sgmod_study.tasks.step_logging import values_written_this_step


class Classifier(L.LightningModule):
    """Cross-entropy classifier.

    Logs per epoch ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_best``,
    ``test/loss``, ``test/acc``; and ``train/loss_step`` every ``trainer.log_every_n_steps``. With
    ``val_batch_stats`` also ``val_batch_stats/loss`` and ``val_batch_stats/acc``: the validation
    with BatchNorm's batch statistics instead of its running ones (``norms.batch_statistics``), to
    tell a network that did not learn from one whose running statistics are off.
    """

    FINAL_METRICS = ("val/acc_best", "test/acc", "test/loss")
    TEST_CHECKPOINT = "best"  # the best epoch's checkpoint (by val/acc) is tested

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: Mapping,
        scheduler: Mapping,
        activation: Mapping,
        label_smoothing: float = 0.0,
        val_batch_stats: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={label_smoothing} is not allowed: it must be in [0, 1)")
        self.model = model
        self.optimizer_cfg, self.scheduler_cfg, self.activation_cfg = optimizer, scheduler, activation
        self.label_smoothing = label_smoothing
        # Per-step metric updates without host syncs: torchmetrics' argument validation and NaN
        # filtering each read a tensor back (a GPU sync per step); a NaN loss then shows in the
        # logged mean instead of being dropped from it.
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes, validate_args=False) for _ in range(3)
        )
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in range(3))
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # resuming from a checkpoint keeps the best so far
        self.val_batch_stats = val_batch_stats
        self.batch_stats_acc = MulticlassAccuracy(num_classes, validate_args=False)
        self.batch_stats_loss = MeanMetric(nan_strategy="disable")

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: str | Path, map_location: Any = "cpu", strict: bool = True
    ) -> Classifier:
        """The classifier of a run's checkpoint (e.g. ``<run>/checkpoints/best-epoch009.ckpt``), rebuilt
        from the run's config saved in it, with its trained weights (on the CPU unless ``map_location``
        says otherwise). Lightning's own version would call ``Classifier(**hparams)``, but the saved
        hyperparameters are the whole run's flat config, not this constructor's arguments."""
        checkpoint = read_checkpoint(str(checkpoint_path), map_location)
        return rebuild_task(checkpoint, str(checkpoint_path), {"classifier": build_classifier}, strict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        # update(), not the metric's __call__: that also computes a per-batch value nobody logs,
        # which made a CPU training step 15% slower than a plain loop
        loss_metric.update(loss, weight=len(labels))
        acc_metric.update(logits, labels)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, self.train_loss, self.train_acc, "train")
        if values_written_this_step(self.trainer):
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)  # the per-step curve
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, self.val_loss, self.val_acc, "val")
        if self.val_batch_stats:
            with batch_statistics(self.model):
                self._step(batch, self.batch_stats_loss, self.batch_stats_acc, "val_batch_stats")

    def on_train_epoch_end(self) -> None:
        self._check_finite(self.train_loss, "train/loss")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # validation ends before the training epoch does: name the training loss if that went first
        self._check_finite(self.train_loss, "train/loss")
        self._check_finite(self.val_loss, "val/loss")
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def _check_finite(self, loss_metric: MeanMetric, name: str) -> None:
        """Stop on a non-finite epoch mean: one host sync per epoch, none per step (a NaN step
        makes the mean NaN). The same value on every rank under DDP, so all stop together."""
        if not loss_metric.update_called:
            return
        loss = loss_metric.compute()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"non-finite loss at epoch {self.current_epoch}: {name}={loss.item():.4g} (the epoch's mean); "
                f"lower optimizer.lr (now {self.optimizer_cfg['lr']:g}) or clip gradients (trainer.gradient_clip_val)"
            )

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, self.test_loss, self.test_acc, "test")

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optimizer_cfg, self.activation_cfg)
        scheduler = build_scheduler(optimizer, self.scheduler_cfg, self.trainer.max_epochs)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def build_classifier(c: Mapping, spec: DatasetSpec) -> Classifier:
    """The classification task from the resolved config ``c``."""
    net = build_model(c["model"], c["activation"], c["norm"], spec.channels, spec.image_size, spec.num_classes)
    task = c["task"]
    return Classifier(
        net,
        spec.num_classes,
        c["optimizer"],
        c["scheduler"],
        c["activation"],
        task["label_smoothing"],
        task.get("val_batch_stats", False),
    )
