"""Weight initialisation as a choice (``model.init``), with a gain per activation.

``default`` keeps PyTorch's own initialisation. The others draw every weight layer's weights
(Linear, Conv2d, ConvTranspose2d) from a variance-preserving scheme scaled by the activation's
gain, and zero the biases:

- ``xavier``: normal, std = gain * sqrt(2 / (fan_in + fan_out))   (Glorot & Bengio 2010)
- ``kaiming``: normal, std = gain / sqrt(fan_in)                  (He et al. 2015)
- ``orthogonal``: a (semi-)orthogonal matrix times gain            (Saxe et al. 2014)

Fans follow PyTorch's convention (``fan_in`` = weight.size(1) * kernel area, also for
ConvTranspose2d). A model's output layers (``OUTPUT_LAYERS``: the logits, the generator's last
layer) feed a loss or the output tanh, not the hidden activation, and get gain 1. Norm layers and
the activations' own parameters (Sgmod's gamma/beta) are left as they are.

The gain is PyTorch's ``calculate_gain`` where it names the activation, with one exception: the
Sgmod family. Sgmod(x) = gamma * sigmoid(x) + beta = (gamma / 2) * tanh(x / 2) + (beta + gamma /
2), a tanh stretched 2x along x and scaled by gamma / 2, plus a constant; its slope at 0 is gamma /
4. Its gain is tanh's 5/3 times 4 / gamma: tanh's gain compensated for the smaller slope, as the
"4x tanh's initialisation for sigmoid" rule derived from Glorot & Bengio (2010) does. At gamma = 4,
beta = -2 (= 2 tanh(x / 2)) that is tanh's 5/3. Sigmoid is Sgmod at (1, 0) and gets its gain,
20/3: the same function must get the same initialisation for sigmoid and fixed Sgmod to be
comparable. The compensation holds only near 0 and between hidden layers: the constant gamma / 2 +
beta (0.5 for sigmoid), through weights of that gain, gives every hidden unit a fixed offset, and
layer 1 reads the data, so its pre-activations' std is the gain itself. Measured at depth 32, width
256 (``python scripts/init_gains.py``): sigmoid at 20/3 has hidden pre-activations of std 4.4, 30%
of hidden units saturated (slope under 0.01), and its weight gradient falls 3.2 decades from layer
32 to layer 2; at PyTorch's table value 1, no unit saturates and it falls 18.9 decades. 20/3 gives
sigmoid's gradient its best chance, the conservative side for asking whether Sgmod relieves
sigmoid's vanishing gradient. ReLU-like activations PyTorch has no entry for (ELU, GELU, SiLU,
Mish) get ReLU's sqrt(2). An activation of your own states its gain as ``gain:`` in its config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.nn.activations import GAIN_KEY

INITS = ("default", "xavier", "kaiming", "orthogonal")
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
TANH_GAIN = 5.0 / 3.0
RELU_LIKE = ("elu", "gelu", "silu", "mish")


def activation_gain(act_cfg: Mapping) -> float:
    """The gain of the activation ``act_cfg`` (an entry of the activation config group)."""
    name = act_cfg.get("name")
    if act_cfg.get(GAIN_KEY) is not None:
        return float(act_cfg[GAIN_KEY])
    if name == "sgmod":
        return sgmod_gain(float(act_cfg.get("gamma_init", 1.0)))
    if name == "sigmoid":
        return sgmod_gain(1.0)
    if name == "prelu":
        return nn.init.calculate_gain("leaky_relu", float(act_cfg.get("init", 0.25)))
    if name == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", float(act_cfg.get("negative_slope", 0.01)))
    if name in RELU_LIKE:
        return math.sqrt(2.0)
    if name in ("relu", "tanh", "selu"):
        return nn.init.calculate_gain(name)
    raise ConfigError(
        f"activation={name} has no known gain for a variance-preserving model.init: add {GAIN_KEY}: <number> "
        "to its config (e.g. 1.0 for an identity-like one), or use model.init=default"
    )


def sgmod_gain(gamma: float) -> float:
    if gamma == 0:
        raise ConfigError("activation.gamma_init=0 has no gain (Sgmod is constant there): use gamma_init != 0")
    return TANH_GAIN * 4.0 / abs(gamma)


def initialize(model: nn.Module, scheme: str, act_cfg: Mapping, output_layers: Sequence[str] = ()) -> None:
    """Re-initialise ``model``'s weight layers by ``scheme`` (a name of ``INITS``) with the gain of
    ``act_cfg``; the layers named in ``output_layers`` (module names in ``model``) get gain 1."""
    check_choice("model.init", scheme, INITS)
    if scheme == "default":
        return
    gain = activation_gain(act_cfg)
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            init_layer(module, scheme, 1.0 if name in output_layers else gain)


@torch.no_grad()
def init_layer(layer: nn.Module, scheme: str, gain: float) -> None:
    weight = _raw_weight(layer)
    if scheme == "xavier":
        nn.init.xavier_normal_(weight, gain=gain)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(weight, nonlinearity="linear")  # std 1 / sqrt(fan_in)
        weight.mul_(gain)
    else:
        nn.init.orthogonal_(weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _raw_weight(layer: nn.Module) -> torch.Tensor:
    """The weight tensor itself: under spectral norm, the parametrization's original."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight
