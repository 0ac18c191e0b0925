"""Normalisation layers and their placement relative to the activation.

``norm`` config: ``name`` (batch | layer | group | none), ``placement`` (before | after the
activation) and ``groups`` for group norm. ``norm_act`` is the one place that orders the
two, so every model gets the placement the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.nn.activations import build_activation

NORMS = ("batch", "layer", "group", "none")
PLACEMENTS = ("before", "after")


def build_norm(cfg: Mapping, num_channels: int, spatial: bool) -> nn.Module:
    """A norm over ``num_channels`` features; ``spatial`` means (N, C, H, W) input, else (N, C).

    Layer norm is GroupNorm with one group: it normalises over (C, H, W) like nn.LayerNorm
    over those dims, with a per-channel affine, and works unchanged on (N, C) input.
    """
    name = cfg["name"]
    check_choice("norm", name, NORMS)
    if name == "batch":
        return nn.BatchNorm2d(num_channels) if spatial else nn.BatchNorm1d(num_channels)
    if name == "layer":
        return nn.GroupNorm(1, num_channels)
    if name == "group":
        return nn.GroupNorm(_group_count(cfg.get("groups", 8), num_channels), num_channels)
    return nn.Identity()


def _group_count(requested: int, num_channels: int) -> int:
    """The largest group count <= requested that divides num_channels."""
    if requested < 1:
        raise ConfigError(f"norm.groups={requested} is not allowed: it must be >= 1")
    return max(g for g in range(1, min(requested, num_channels) + 1) if num_channels % g == 0)


def norm_act(norm_cfg: Mapping, act_cfg: Mapping, num_channels: int, spatial: bool) -> list[tuple[str, nn.Module]]:
    """Named norm and activation layers in the configured order.

    ``before``: norm -> act (the usual conv -> BN -> act); ``after``: act -> norm.
    """
    placement = norm_cfg.get("placement", "before")
    check_choice("norm.placement", placement, PLACEMENTS)
    norm = ("norm", build_norm(norm_cfg, num_channels, spatial))
    act = ("act", build_activation(act_cfg, num_channels))
    return [norm, act] if placement == "before" else [act, norm]


def conv_bias_needed(norm_cfg: Mapping) -> bool:
    """A layer followed directly by a norm does not need its own bias (the norm removes it)."""
    return norm_cfg["name"] == "none" or norm_cfg.get("placement", "before") == "after"


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """``model``'s BatchNorm layers normalise with each batch's own statistics (train mode) while
    the rest stays as it is (dropout off in evaluation); their running statistics, which a
    train-mode forward updates, and their modes are restored afterwards."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in layers]
    saved = [[b.clone() for b in m.buffers()] for m in layers]
    for layer in layers:
        layer.train(True)
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, buffers, mode in zip(layers, saved, modes, strict=True):
                for buffer, value in zip(layer.buffers(), buffers, strict=True):
                    buffer.copy_(value)
                layer.train(mode)
