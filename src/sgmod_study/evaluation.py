"""Test a trained checkpoint on the test split, as ``src/eval.py ckpt_path=...`` does.

The task, its networks and the data set (name, split, scaling, batch size) come from the
checkpoint, rebuilt from the run's own config (``checkpoints.rebuild_task``); the eval config
(``conf/eval.yaml``) gives only what belongs to the machine: where the data are, the trainer.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from sgmod_study.checkpoints import read_checkpoint, rebuild_task, saved_config
from sgmod_study.config_schema import MISSING
from sgmod_study.console import quiet_libraries
from sgmod_study.data import ImageDataModule
from sgmod_study.errors import ConfigError
from sgmod_study.training import TASKS, print_summary


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path``, print the summary lines a training run ends with, return its final metrics."""
    quiet_libraries()
    e = OmegaConf.to_container(cfg, resolve=True)
    ckpt_path = e["ckpt_path"]
    if ckpt_path in (None, MISSING):
        raise ConfigError(
            f"ckpt_path={ckpt_path} is not set: give the checkpoint to test, "
            "e.g. ckpt_path=outputs/runs/<run>/checkpoints/best-epoch009.ckpt"
        )
    checkpoint = read_checkpoint(ckpt_path)
    module = rebuild_task(checkpoint, ckpt_path, TASKS)
    c = saved_config(checkpoint)
    c["data"].update(e["data"])
    L.seed_everything(c["seed"], workers=True, verbose=False)  # the GAN's generated test images
    datamodule = ImageDataModule(**c["data"], seed=c["seed"])
    trainer = L.Trainer(**e["trainer"], logger=False, enable_checkpointing=False, default_root_dir=e["output_dir"])
    started = time.monotonic()
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    final = {name: metrics[name] for name in module.FINAL_METRICS if name in metrics}
    if trainer.is_global_zero:
        # checkpoints are written at the end of an epoch, which their "epoch" counts from 0
        print_summary(c, final, checkpoint["epoch"] + 1, time.monotonic() - started, Path(e["output_dir"]))
    return final
