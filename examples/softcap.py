"""SoftCap(x) = alpha * tanh(x / alpha): tanh's slope 1 at zero, saturating at -alpha and +alpha.

The worked example of an activation of your own (README, "Add your activation"). Its config is
conf/activation/softcap.yaml, which names this class with ``target: examples.softcap:SoftCap``;
the module is found as any Python module is, here with the repository root on PYTHONPATH:

    PYTHONPATH=. python src/train.py activation=softcap

alpha is learnable, one per channel (dim 1 of the input), kept positive by learning its log.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SoftCap(nn.Module):
    """``alpha * tanh(x / alpha)`` with one learnable alpha per channel, starting at ``alpha_init``.

    ``build_activation`` calls it as ``SoftCap(num_channels=<the layer's channels>, alpha_init=...)``
    (it takes ``num_channels``); the options come from the activation's config.
    """

    def __init__(self, num_channels: int, alpha_init: float = 1.0) -> None:
        super().__init__()
        if not alpha_init > 0:
            raise ValueError(f"alpha_init={alpha_init!r} is not allowed: it must be a number > 0")
        # an nn.Parameter of the module itself: the optimizer's "activation" parameter group takes it
        self.log_alpha = nn.Parameter(torch.full((num_channels,), math.log(alpha_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.log_alpha.exp().view(1, -1, *([1] * (x.dim() - 2)))  # channels on dim 1
        return alpha * torch.tanh(x / alpha)
