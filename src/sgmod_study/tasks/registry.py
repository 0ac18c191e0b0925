"""The tasks a run can train, one entry each: what builds it, the models it trains, the metrics
it logs, its networks and its own settings (``task.*``).

Adding a task is its module (a LightningModule and a builder ``build(c, spec)``) plus one entry in
``TASKS``. Everything else reads this table: the config schema (``task`` group, the task's models,
``optimized_metric`` and ``checkpoint.monitor``), training (building the task, the speed options
on its networks) and evaluation (rebuilding a task from its checkpoint).

No torch here: the command lines import the schema, which imports this. A builder is a
``"package.module:function"`` path imported when the task is built, and settings that need a
torch module (the GAN's loss names) are a function called when a config of that task is checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgmod_study.config.rules import (
    Rule,
    boolean,
    choice,
    fraction,
    integer,
    non_negative,
    nullable,
    optional,
    positive,
)
from sgmod_study.errors import check_choice

if TYPE_CHECKING:
    import lightning as L

    from sgmod_study.data import DatasetSpec

    Builder = Callable[[Mapping, DatasetSpec], L.LightningModule]

Settings = Mapping[str, Rule]


@dataclass(frozen=True)
class Task:
    """One task. ``metrics`` keep their order: the errors list them so."""

    name: str
    # (resolved config, data set) -> its LightningModule; "package.module:function" is imported on use
    builder: str | Builder
    models: tuple[str, ...]  # the model.name values it trains
    # every metric it logs, what optimized_metric and checkpoint.monitor may name; or a function returning them
    metrics: tuple[str, ...] | Callable[[], tuple[str, ...]]
    networks: tuple[str, ...]  # its LightningModule's attributes holding the networks speed.* applies to
    # task.<key> and its rule, or a function returning them (called when a config of the task is checked)
    settings: Settings | Callable[[], Settings] = field(default_factory=dict)
    # how "task=<name> needs ..." names the models it trains; by default "model=a, b or c"
    models_text: str = ""

    def __post_init__(self) -> None:
        if not self.models_text:
            *others, last = self.models
            listed = f"{', '.join(others)} or {last}" if others else last
            object.__setattr__(self, "models_text", f"model={listed}")

    def build(self, c: Mapping, spec: DatasetSpec) -> L.LightningModule:
        """The task's LightningModule from the resolved config ``c`` and its data set."""
        return _resolved(self.builder)(c, spec)

    def rules(self) -> Settings:
        """The rules of its ``task.*`` settings."""
        return self.settings() if callable(self.settings) else self.settings

    def logged(self) -> tuple[str, ...]:
        """The metrics it logs."""
        return self.metrics() if callable(self.metrics) else self.metrics


def _resolved(builder: str | Builder) -> Builder:
    if callable(builder):
        return builder
    module, _, name = builder.partition(":")
    return getattr(importlib.import_module(module), name)


def _gan_settings() -> dict[str, Rule]:
    # torch: imported when a GAN's config is checked
    from sgmod_study.tasks.gan_losses import LOSSES
    from sgmod_study.tasks.gan_metrics import SAMPLE_MODES

    return {
        "loss": choice(*LOSSES),
        "lr_g": nullable(positive()),
        "lr_d": nullable(positive()),
        "d_steps": integer(1),
        "gp_weight": non_negative(),
        "sample_mode": choice(*SAMPLE_MODES),
        "eval_seed": integer(0),
        "kid_subset_size": integer(2),
        "grid_size": integer(1),
        "collapse_steps": integer(0),
        "collapse_loss": non_negative(),
    }


def _gan_metrics() -> tuple[str, ...]:
    from sgmod_study.tasks.gan import GAN  # torch: imported when a GAN's config is checked

    return ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/d_real", *GAN.FINAL_METRICS)


CLASSIFIER_TASK = Task(
    name="classifier",
    builder="sgmod_study.tasks.classifier:build_classifier",
    models=("cnn", "mlp", "resnet"),
    metrics=(
        "train/loss",
        "train/acc",
        "train/loss_step",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
        "val_batch_stats/loss",
        "val_batch_stats/acc",
    ),
    networks=("model",),
    settings={"label_smoothing": fraction(), "val_batch_stats": optional(boolean())},
)

GAN_TASK = Task(
    name="gan",
    builder="sgmod_study.tasks.gan:build_gan",
    models=("dcgan",),
    metrics=_gan_metrics,
    networks=("generator", "discriminator"),
    settings=_gan_settings,
    models_text="model=dcgan or model=dcgan_baseline",  # conf/model/dcgan_baseline.yaml is a DCGAN too
)

TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFIER_TASK, GAN_TASK)}


def registered(name: Any) -> Task:
    """The task ``name`` (a ``task.name`` value); ConfigError naming the registered ones otherwise."""
    check_choice("task", name, TASKS)
    return TASKS[name]
