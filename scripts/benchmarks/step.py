"""The framework's cost: a Lightning training step vs a plain PyTorch loop, same everything else.

Both sides build the classifier of the default config (``conf/train.yaml`` plus overrides)
with the same seed, the same data loader and the same optimizer (parameter groups included;
each step also runs Sgmod's bounds projection); the plain loop is forward, cross-entropy,
zero_grad, backward, step. The Lightning side is the ``Classifier`` the study trains (its
metrics and logging included) in a Trainer with no logger, checkpoint or progress bar: those
cost per epoch, not per step. Timed steps follow ``warmup`` untimed ones; the sides alternate
over ``rounds`` and the fastest round per side is kept, as timeit does: a shared machine's
noise only adds time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks import default_device, machine, synchronize
from sgmod_study.data import ImageDataModule
from sgmod_study.errors import ConfigError
from sgmod_study.tasks.classifier import build_classifier
from sgmod_study.tasks.optim import build_optimizer

SIZES = {
    "ci": {"overrides": ["data=digits", "data.batch_size=64"], "steps": 8, "warmup": 3, "rounds": 2},
    "full": {"overrides": [], "steps": 100, "warmup": 20, "rounds": 7},
}


def run(
    size: str = "full",
    device: str | None = None,
    overrides: Sequence[str] = (),
    config_dir: Path = Path("conf"),
) -> dict:
    device = device or default_device()
    spec = SIZES[size]
    c = load_config(config_dir, [*spec["overrides"], *overrides])
    datamodule = ImageDataModule(**c["data"])
    datamodule.setup("fit")
    steps, warmup = spec["steps"], spec["warmup"]
    samples: dict[str, list[float]] = {"lightning": [], "plain": []}
    for _ in range(spec["rounds"]):
        samples["lightning"].append(lightning_seconds_per_step(c, datamodule, device, steps, warmup))
        samples["plain"].append(plain_seconds_per_step(c, datamodule, device, steps, warmup))
    ms = {side: min(values) * 1e3 for side, values in samples.items()}
    return {
        "benchmark": "step",
        "size": size,
        "device": device,
        "machine": machine(),
        "config": {
            "data": c["data"]["name"],
            "batch_size": c["data"]["batch_size"],
            "model": c["model"]["name"],
            "activation": c["activation"]["name"],
            "precision": c["trainer"]["precision"],
        },
        "steps": steps,
        "warmup": warmup,
        "results": [
            {
                "loop": side,
                "ms_per_step": value,
                "median_ms": statistics.median(samples[side]) * 1e3,
                "samples_ms": [v * 1e3 for v in samples[side]],
            }
            for side, value in ms.items()
        ],
        "ratios": {"lightning_vs_plain": ms["lightning"] / ms["plain"]},
    }


def load_config(config_dir: Path, overrides: Sequence[str]) -> dict:
    if not (config_dir / "train.yaml").is_file():
        raise ConfigError(f"config_dir={config_dir} has no train.yaml: run the benchmark from the repository root")
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "output_dir=unused"])
    return OmegaConf.to_container(cfg, resolve=True)


def _batches(datamodule: ImageDataModule, total: int) -> Iterator:
    """``total`` batches of the data module's training loader (as many epochs as that takes)."""
    while True:
        for batch in datamodule.train_dataloader():
            yield batch
            total -= 1
            if total == 0:
                return


class _Batches:
    """An iterable Lightning takes as one loader (a list would be read as a list of loaders)."""

    def __init__(self, datamodule: ImageDataModule, total: int) -> None:
        self.datamodule, self.total = datamodule, total

    def __iter__(self) -> Iterator:
        return _batches(self.datamodule, self.total)

    def __len__(self) -> int:
        return self.total


class _StepTimer(L.Callback):
    def __init__(self, device: str, warmup: int) -> None:
        self.device, self.warmup = device, warmup
        self.started = self.seconds = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            synchronize(self.device)
            self.started = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.started


def lightning_seconds_per_step(c: dict, datamodule: ImageDataModule, device: str, steps: int, warmup: int) -> float:
    L.seed_everything(c["seed"], verbose=False)
    module = build_classifier(c, datamodule.spec)
    timer = _StepTimer(device, warmup)
    trainer = L.Trainer(
        accelerator=torch.device(device).type,
        devices=1,
        precision=c["trainer"]["precision"],
        max_epochs=1,  # one pass over the warmup + steps batches
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=_Batches(datamodule, warmup + steps))
    return timer.seconds / steps


def plain_seconds_per_step(c: dict, datamodule: ImageDataModule, device: str, steps: int, warmup: int) -> float:
    L.seed_everything(c["seed"], verbose=False)
    model = build_classifier(c, datamodule.spec).model.to(device)
    optimizer = build_optimizer(model, c["optimizer"], c["activation"])
    model.train()
    started = 0.0
    for step, (images, labels) in enumerate(_batches(datamodule, warmup + steps)):
        if step == warmup:
            synchronize(device)
            started = time.perf_counter()
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def format_table(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"training step, {cfg['model']} + {cfg['activation']} on {cfg['data']} (batch {cfg['batch_size']}, "
        f"{cfg['precision']}), {result['steps']} steps after {result['warmup']} on {result['device']}",
        f"{'loop':<12}{'ms/step':>10}",
    ]
    lines += [f"{r['loop']:<12}{r['ms_per_step']:>10.2f}" for r in result["results"]]
    lines.append(f"lightning_vs_plain: {result['ratios']['lightning_vs_plain']:.3f}")
    return "\n".join(lines)
