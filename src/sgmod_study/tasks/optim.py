"""Optimizer parameter groups, optimizers and learning-rate schedules from the config groups.

Parameter groups (nanoGPT/timm convention, plus one for the activation):
- ``decay``: weight matrices and conv kernels (ndim >= 2) get ``optimizer.weight_decay``;
- ``no_decay``: biases and norm affine parameters get none;
- ``activation``: Sgmod gamma/beta (and PReLU slopes) get their own learning rate,
  ``activation.lr`` (absolute; null: ``optimizer.lr * activation.lr_mult``), and their own
  ``activation.weight_decay`` (default 0: decaying gamma towards 0 would flatten the activation).
  The study brief's parameter table names gamma/beta's learning rate as a hyperparameter of its
  own, so a sweep searches ``activation.lr`` and ``optimizer.lr`` as separate dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from sgmod_study.errors import ConfigError, check_choice, check_non_negative, check_positive
from sgmod_study.nn.activations import LEARNABLE_ACTIVATIONS

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
SCHEDULERS = ("none", "cosine", "step")


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, act_cfg: Mapping) -> list[dict]:
    activation_params = {
        id(p) for m in model.modules() if isinstance(m, LEARNABLE_ACTIVATIONS) for p in m.parameters(recurse=False)
    }
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "activation": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in activation_params:
            groups["activation"].append(p)
        else:
            groups["decay" if p.dim() >= 2 else "no_decay"].append(p)
    act_decay = act_cfg.get("weight_decay", 0.0)
    check_non_negative("activation.weight_decay", act_decay)
    settings = {
        "decay": {"lr": lr, "weight_decay": weight_decay},
        "no_decay": {"lr": lr, "weight_decay": 0.0},
        "activation": {"lr": activation_lr(lr, act_cfg), "weight_decay": act_decay},
    }
    return [{"name": name, "params": params, **settings[name]} for name, params in groups.items() if params]


def activation_lr(lr: float, act_cfg: Mapping) -> float:
    """gamma/beta's learning rate: ``activation.lr`` when set, else ``lr * activation.lr_mult``."""
    absolute, lr_mult = act_cfg.get("lr"), act_cfg.get("lr_mult", 1.0)
    check_positive("activation.lr_mult", lr_mult)
    if absolute is None:
        return lr * lr_mult
    check_positive("activation.lr", absolute)
    if lr_mult != 1.0:
        raise ConfigError(
            f"activation.lr={absolute} and activation.lr_mult={lr_mult} both set gamma/beta's learning rate: "
            "set one (activation.lr absolute, or activation.lr_mult relative to optimizer.lr)"
        )
    return float(absolute)


def build_optimizer(model: nn.Module, opt_cfg: Mapping, act_cfg: Mapping) -> torch.optim.Optimizer:
    options = dict(opt_cfg)
    name = options.pop("name", None)
    check_choice("optimizer", name, OPTIMIZERS)
    lr, weight_decay = options.pop("lr", None), options.pop("weight_decay", 0.0)
    check_positive("optimizer.lr", lr)
    check_non_negative("optimizer.weight_decay", weight_decay)
    groups = parameter_groups(model, lr, weight_decay, act_cfg)
    try:
        return OPTIMIZERS[name](groups, lr=lr, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer={name}: {err}") from None


def build_scheduler(optimizer: torch.optim.Optimizer, sched_cfg: Mapping, max_epochs: int):
    """An epoch-wise schedule, or None for a constant learning rate."""
    name = sched_cfg.get("name", "none")
    check_choice("scheduler", name, SCHEDULERS)
    if name == "cosine":
        if not max_epochs or max_epochs < 1:
            raise ConfigError(
                f"scheduler=cosine needs trainer.max_epochs >= 1, got {max_epochs}; or use scheduler=none"
            )
        return _cosine(optimizer, max_epochs, sched_cfg.get("min_lr_ratio", 0.0))
    if name == "step":
        check_positive("scheduler.step_size", sched_cfg.get("step_size"))
        return torch.optim.lr_scheduler.StepLR(optimizer, sched_cfg["step_size"], gamma=sched_cfg.get("factor", 0.1))
    return None


def _cosine(optimizer: torch.optim.Optimizer, epochs: int, min_lr_ratio: float):
    # CosineAnnealingLR takes one absolute eta_min for all groups; scaling each group's own lr
    # keeps the activation group's multiplier through the whole schedule.
    def factor(epoch: int) -> float:
        progress = min(epoch, epochs) / epochs
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
