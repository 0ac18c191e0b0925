"""What a run writes to its loggers besides losses and accuracies.

- ``ActivationMonitor``: gamma/beta of every Sgmod layer (scalars, and histograms on
  TensorBoard), so their trajectories can be read per layer.
- ``GradNormMonitor``: the gradient norm of every layer's weight (the vanishing-gradient
  diagnostic), measured before the optimizer step.
- ``log_final_hparams``: the run's real hyperparameters with its final metrics, for
  TensorBoard's HParams dashboard.
- ``FinalActivationRecord``: where every Sgmod layer's gamma/beta ended, per channel, with
  what can absorb them (the next layer's incoming weight norms, a norm in between), written
  to ``<run>/sgmod_final.json`` for the study's per-run table.

Both monitors log every ``every_n_steps`` training batches through ``trainer.loggers``, which
write on rank zero only, so they work unchanged under DDP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from sgmod_study.activations import Sgmod
from sgmod_study.checkpoints import write_atomic


def _layer_name(parameter_name: str) -> str:
    name = parameter_name.removeprefix("model.")
    return name.rsplit(".", 1)[0]


def _due(trainer: L.Trainer, every_n_steps: int) -> bool:
    """Every N training batches: global_step counts optimizer steps, two per batch for a GAN."""
    return (trainer.global_step // max(1, len(trainer.optimizers))) % every_n_steps == 0


def _log_scalars(trainer: L.Trainer, values: Mapping[str, float]) -> None:
    for logger in trainer.loggers:
        logger.log_metrics(dict(values), step=trainer.global_step)


class ActivationMonitor(L.Callback):
    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)  # the initial values start every trajectory

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if _due(trainer, self.every_n_steps):
            self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scalars = {}
        for layer, module in pl_module.named_modules():
            if not isinstance(module, Sgmod):
                continue
            layer = layer.removeprefix("model.")
            for param_name in ("gamma", "beta"):
                values = getattr(module, param_name).detach().float()
                tag = f"sgmod/{layer}/{param_name}"
                scalars[tag] = values.mean().item()
                if values.numel() > 1:
                    scalars[f"{tag}_std"] = values.std().item()
                self._histogram(trainer, tag, values)
        if scalars:
            _log_scalars(trainer, scalars)

    @staticmethod
    def _histogram(trainer: L.Trainer, tag: str, values: torch.Tensor) -> None:
        values = values[torch.isfinite(values)]  # a diverging run: the epoch-end check stops it, not TensorBoard
        if values.numel() == 0:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_histogram(tag, values.cpu(), global_step=trainer.global_step)


class GradNormMonitor(L.Callback):
    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not _due(trainer, self.every_n_steps):
            return
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}  # G or D in a GAN
        norms = {
            f"grad_norm/{_layer_name(name)}": p.grad.detach().norm().item()
            for name, p in pl_module.named_parameters()
            if id(p) in stepped and p.grad is not None and p.dim() >= 2
        }
        if norms:
            _log_scalars(trainer, norms)


def flatten_config(cfg: Mapping, prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested config -> {"optimizer.lr": 0.001, ...}; lists and None become strings (HParams needs scalars)."""
    flat = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def log_final_hparams(trainer: L.Trainer, hparams: Mapping, metrics: Mapping[str, float]) -> None:
    """One HParams entry with the final metrics under ``final/<metric>`` (no placeholder hp_metric).

    The ``final/`` names keep these single points off the ``val/`` and ``test/`` curves.
    """
    final = {f"final/{name.replace('/', '_')}": float(value) for name, value in metrics.items()}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(hparams), metrics=final)
        else:  # e.g. CSVLogger: hparams.yaml, and the final metrics as one more row
            logger.log_hyperparams(dict(hparams))
            logger.log_metrics(final, step=trainer.global_step)
        logger.finalize("success")  # the test already closed the writer; flush this last entry too


SGMOD_FINAL_FILE = "sgmod_final.json"
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def activation_record(model: nn.Module) -> dict[str, dict]:
    """Per Sgmod layer: gamma and beta per channel, whether each was learned, and what follows.

    gamma*sigmoid(x)+beta is affine in sigmoid(x): the next conv/linear layer can absorb gamma
    (only gamma_c times the norm of its weights reading channel c matters) and beta (into its
    bias), and a norm in between cancels both. ``next_weight_norm`` is that per-channel norm,
    ``norm_between`` says whether a norm sits between the activation and that layer.
    """
    modules = list(model.named_modules())
    record = {}
    for index, (name, module) in enumerate(modules):
        if not isinstance(module, Sgmod):
            continue
        next_name, next_norms, norm_between = None, None, False
        for later_name, later in modules[index + 1 :]:
            if isinstance(later, _NORMS):
                norm_between = True
            if isinstance(later, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                next_name, next_norms = later_name.removeprefix("model."), _incoming_norms(later, module.gamma.numel())
                break
        record[name.removeprefix("model.")] = {
            "gamma": module.gamma.detach().float().cpu().tolist(),
            "beta": module.beta.detach().float().cpu().tolist(),
            "learn_gamma": isinstance(module.gamma, nn.Parameter),
            "learn_beta": isinstance(module.beta, nn.Parameter),
            "next_layer": next_name,
            "next_weight_norm": next_norms,
            "norm_between": norm_between,
        }
    return record


def _incoming_norms(layer: nn.Module, channels: int) -> list[float] | None:
    """Norm of the weights that read each input channel (a flattened conv map counts as one)."""
    weight = layer.weight.detach().float()
    if isinstance(layer, nn.ConvTranspose2d):  # weight (C_in, out, kh, kw)
        weight = weight.transpose(0, 1)
    out, fan_in = weight.shape[:2]
    if channels == 1 or fan_in % channels:
        return None
    # conv (out, C, kh, kw); linear (out, C), or after a Flatten (out, C*h*w): channel c owns a block
    per_channel = weight.reshape(out, channels, -1).transpose(0, 1).reshape(channels, -1)
    return per_channel.norm(dim=1).cpu().tolist()


class FinalActivationRecord(L.Callback):
    """Writes ``<run>/sgmod_final.json`` on rank 0 when fitting ends: ``activation_record`` of
    the trained networks, the optimizer steps taken and ``activation_lr_sum``, the sum of
    gamma/beta's learning rate over those steps. With Adam a parameter moves by about its
    learning rate per step at most, so that sum bounds how far gamma/beta could travel."""

    def __init__(self) -> None:
        self.steps, self.lr_sum = 0, 0.0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        for group in optimizer.param_groups:
            if group.get("name") == "activation":
                self.steps += 1
                self.lr_sum += float(group["lr"])

    def state_dict(self) -> dict:  # a resumed run keeps counting from the checkpoint
        return {"steps": self.steps, "lr_sum": self.lr_sum}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.lr_sum = state["steps"], state["lr_sum"]

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        layers = activation_record(pl_module)
        if layers and trainer.is_global_zero:
            record = {"steps": self.steps, "activation_lr_sum": self.lr_sum, "layers": layers}
            text = json.dumps(record).encode()
            write_atomic(Path(trainer.default_root_dir) / SGMOD_FINAL_FILE, lambda f: f.write(text))
