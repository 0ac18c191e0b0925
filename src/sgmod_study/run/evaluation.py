"""Test a trained checkpoint on the test split, as ``src/eval.py ckpt_path=...`` does.

The task, its networks and the data set (name, split, scaling, batch size) come from the
checkpoint, rebuilt from the run's own config (``checkpoints.rebuild_task``); the eval config
(``conf/eval.yaml``) gives only what belongs to the machine: where the data are, the trainer.
Another data set (``+data=mnist``) is tested only when its images and classes have the shapes
the network was trained on.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from sgmod_study.config.rules import MISSING
from sgmod_study.data import DatasetSpec, ImageDataModule, dataset_spec
from sgmod_study.errors import ConfigError
from sgmod_study.run.console import quiet_libraries
from sgmod_study.run.interrupts import Interrupted, StopOnSignal
from sgmod_study.run.training import print_summary
from sgmod_study.tasks.checkpoints import read_checkpoint, rebuild_task, saved_config


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
    c = saved_config(checkpoint)
    check_data_fits(e["data"].get("name", c["data"]["name"]), c["data"]["name"], ckpt_path)
    module = rebuild_task(checkpoint, ckpt_path)  # any registered task
    c["data"].update(e["data"])
    L.seed_everything(c["seed"], workers=True, verbose=False)  # the GAN's generated test images
    datamodule = ImageDataModule(**c["data"], seed=c["seed"])
    with StopOnSignal() as stop:
        trainer = L.Trainer(
            **e["trainer"],
            logger=False,
            enable_checkpointing=False,
            default_root_dir=e["output_dir"],
            callbacks=[stop],
        )
        started = time.monotonic()
        try:
            (metrics,) = stop.run(trainer.test, module, datamodule=datamodule, verbose=False)
        except Interrupted as err:
            raise Interrupted(err.signum, ": the test did not finish; nothing was written") from None
    final = {name: metrics[name] for name in module.FINAL_METRICS if name in metrics}
    if trainer.is_global_zero:
        # checkpoints are written at the end of an epoch, which their "epoch" counts from 0
        print_summary(c, final, checkpoint["epoch"] + 1, time.monotonic() - started, Path(e["output_dir"]))
    return final


def check_data_fits(name: str, trained_on: str, ckpt_path: str) -> None:
    """Refuse a data set whose images or classes differ from those the checkpoint's network was trained on."""
    if name == trained_on:
        return
    given, trained = dataset_spec(name), dataset_spec(trained_on)
    if _shapes(given) != _shapes(trained):
        raise ConfigError(
            f"data.name={name} does not fit ckpt_path={ckpt_path}: its network was trained on {trained_on} "
            f"({_described(trained)}), {name} has {_described(given)}; leave the data override out to test on "
            f"{trained_on}, or give a data set of the same shapes"
        )


def _shapes(spec: DatasetSpec) -> tuple[int, int, int]:
    return spec.channels, spec.image_size, spec.num_classes


def _described(spec: DatasetSpec) -> str:
    return f"{spec.channels}x{spec.image_size}x{spec.image_size} images, {spec.num_classes} classes"
