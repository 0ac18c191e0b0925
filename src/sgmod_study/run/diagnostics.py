"""What a run writes to its loggers besides losses and accuracies.

- ``ActivationMonitor``: gamma/beta of every Sgmod layer (scalars ``sgmod/``, and histograms
  ``sgmod_hist/`` on TensorBoard), so their trajectories can be read per layer.
- ``GradNormMonitor``: the gradient norm of every layer's weight (the vanishing-gradient
  diagnostic), measured before the optimizer step.
- ``LearningRateLog``: the learning rate of every optimizer parameter group, named after the
  network it trains where a task has several (the GAN's generator and discriminator).
- ``log_final_hparams``: the run's real hyperparameters with its final metrics, for
  TensorBoard's HParams dashboard (``<run>/tensorboard/hparams/``).
- ``FinalActivationRecord``: where every Sgmod layer's gamma/beta ended, per channel, with
  what can absorb them (the next layer's incoming weight norms, a norm in between), written
  to ``<run>/sgmod_final.json`` for the study's per-run table.

The two monitors log every ``every_n_steps`` training batches, or at the batches ``steps`` only,
through ``trainer.loggers``, which write on rank zero only, so they work unchanged under DDP.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
from torch import nn
from torch.utils.tensorboard.summary import scalar
from torch.utils.tensorboard.writer import FileWriter

from sgmod_study.nn.activations import Sgmod
from sgmod_study.tasks.checkpoints import write_atomic
from sgmod_study.trial_contract import ENV_STUDY, ENV_TRIAL_NUMBER, SGMOD_FINAL_FILE


def _layer_name(parameter_name: str) -> str:
    # a spectrally normalised layer's weight is its parametrization's original: name the layer itself
    name = parameter_name.removeprefix("model.").replace(".parametrizations.weight.original", ".weight")
    return name.rsplit(".", 1)[0]


def _due(trainer: L.Trainer, every_n_steps: int | None, steps: Sequence[int] | None = None) -> bool:
    """At the training batches ``steps`` if given, else every N: global_step counts optimizer steps,
    two per batch for a GAN."""
    batch = trainer.global_step // max(1, len(trainer.optimizers))
    if steps:
        return batch in steps
    return bool(every_n_steps) and batch % every_n_steps == 0


def _log_scalars(trainer: L.Trainer, values: Mapping[str, float]) -> None:
    for logger in trainer.loggers:
        logger.log_metrics(dict(values), step=trainer.global_step)


class ActivationMonitor(L.Callback):
    """gamma/beta of every Sgmod layer at the start, every ``every_n_steps`` training batches (or at
    the batches ``steps``) and at the end of training: a run shorter than N steps still shows where
    they went."""

    def __init__(self, every_n_steps: int | None = 50, steps: Sequence[int] | None = None) -> None:
        self.every_n_steps, self.steps = every_n_steps, steps
        self._logged_step = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)  # the initial values start every trajectory

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if _due(trainer, self.every_n_steps, self.steps):
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._logged_step:
            self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logged_step = trainer.global_step
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
                # a tag of its own: TensorBoard shows one kind of data per tag, so a histogram
                # under the scalar's tag hid either the curve or the histogram
                self._histogram(trainer, f"sgmod_hist/{layer}/{param_name}", values)
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
    def __init__(self, every_n_steps: int | None = 50, steps: Sequence[int] | None = None) -> None:
        self.every_n_steps, self.steps = every_n_steps, steps

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not _due(trainer, self.every_n_steps, self.steps):
            return
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}  # G or D in a GAN
        # float64: in float32 the squares of a vanishing layer's gradient (elements near 1e-22, as in a deep
        # sigmoid MLP's first layers) underflow, and its norm reads 0 or too low
        norms = {
            f"grad_norm/{_layer_name(name)}": torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64).item()
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


class LearningRateLog(L.Callback):
    """``lr-<optimizer>/<group>`` of every optimizer parameter group at the start of every epoch.

    <optimizer> is the network it trains where the task names its optimizers
    (``OPTIMIZER_NAMES``: lr-generator/..., lr-discriminator/...), else the optimizer's class
    (lr-AdamW/decay). Lightning's LearningRateMonitor names two Adams lr-Adam and lr-Adam-1.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizers = trainer.optimizers
        names = getattr(pl_module, "OPTIMIZER_NAMES", None) or [type(o).__name__ for o in optimizers]
        rates = {
            f"lr-{name}/{group.get('name', f'pg{index + 1}')}": float(group["lr"])
            for name, optimizer in zip(names, optimizers, strict=True)
            for index, group in enumerate(optimizer.param_groups)
        }
        _log_scalars(trainer, rates)


HPARAMS_RUN = "hparams"  # <run>/tensorboard/hparams/: the run's HParams entry and final metrics


# The date and time that start Hydra's default run folder name (conf/train.yaml: hydra.run.dir)
_RUN_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)_(.+)")


def session_name(output_dir: Path) -> str:
    """The run's name in the HParams table's Trial ID column: a sweep's trial as ``#<number> <study>``,
    a plain run as its folder's name with the date and time last (``classifier_sgmod 2026-11-25_08-29-25``).

    That column shows about 15 characters, so what tells the runs apart comes first. Runs of one
    name share one row, so the name must be unique: the study's trial number, the run folder's time.
    """
    study, number = os.environ.get(ENV_STUDY), os.environ.get(ENV_TRIAL_NUMBER)
    if study and number:
        return f"#{number} {study}"
    match = _RUN_TIMESTAMP.fullmatch(output_dir.name)
    return f"{match[2]} {match[1]}" if match else output_dir.name


def log_final_hparams(trainer: L.Trainer, hparams: Mapping, metrics: Mapping[str, float], name: str) -> None:
    """The run's hyperparameters with its final metrics: on TensorBoard an HParams session of its
    own (``write_hparams_session``), on the CSV logger one more row of ``final/<metric>``."""
    for logger in trainer.loggers:
        logger.log_hyperparams(dict(hparams))  # hparams.yaml; no HParams summary without metrics
        if isinstance(logger, TensorBoardLogger):
            if trainer.is_global_zero:
                folder = Path(logger.log_dir) / HPARAMS_RUN
                write_hparams_session(folder, hparams, metrics, name, trainer.global_step)
        else:
            final = {f"final/{metric.replace('/', '_')}": float(value) for metric, value in metrics.items()}
            logger.log_metrics(final, step=trainer.global_step)
        logger.finalize("success")  # the test already closed the writer; flush this last entry too


def write_hparams_session(folder: Path, hparams: Mapping, metrics: Mapping[str, float], name: str, step: int) -> None:
    """One HParams session as a TensorBoard run of its own: session start (hyperparameters, and
    ``name`` as the trial's name), the final metrics under their own tags, session end.

    No experiment summary, on purpose: with one per run TensorBoard takes whichever it finds first
    and shows only that run's columns. Without any it builds the table from every session (all
    hyperparameters, those that differ first) and takes the metric columns from the scalar tags of
    the session runs; in this folder those are the final metrics only, not every curve of the run.
    """
    writer = FileWriter(str(folder))
    writer.add_summary(summary_v2.hparams_pb(dict(hparams), trial_id=name), step)
    for tag, value in metrics.items():
        writer.add_summary(scalar(tag, float(value)), step)
    writer.add_summary(_session_end(), step)
    writer.close()


def _session_end() -> Summary:
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=end))
    return Summary(
        value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=content, tensor=metadata.NULL_TENSOR)]
    )


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
