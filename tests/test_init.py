"""model.init: each scheme's weight spread, the gain per activation, which layers get gain 1."""

import math

import pytest
import torch
from torch import nn

from sgmod_study.errors import ConfigError
from sgmod_study.nn.init import INITS, activation_gain, initialize
from sgmod_study.nn.models import Discriminator, Generator, build_model

WIDTH = 512  # 262k weights per hidden layer: the sample std is within 0.5% of the true one


def _mlp(scheme: str, act: dict, depth: int = 2) -> nn.Module:
    torch.manual_seed(0)
    cfg = {"name": "mlp", "depth": depth, "width": WIDTH, "init": scheme}
    return build_model(cfg, act, {"name": "none"}, 1, 8, 10)


def _expected_std(scheme: str, weight: torch.Tensor, gain: float) -> float:
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    if scheme == "xavier":
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    return gain / math.sqrt(fan_in)  # kaiming, and orthogonal's rows of norm gain over fan_in columns


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "orthogonal"])
@pytest.mark.parametrize(
    "act, gain",
    [({"name": "relu"}, math.sqrt(2)), ({"name": "tanh"}, 5 / 3), ({"name": "sgmod", "gamma_init": 1.0}, 20 / 3)],
)
def test_the_hidden_weights_spread_as_the_scheme_says(scheme, act, gain):
    model = _mlp(scheme, act)
    hidden = model.net.layer2.fc.weight.detach()  # 512 x 512
    assert hidden.mean().abs().item() < 0.01 * hidden.std().item()
    assert hidden.std().item() == pytest.approx(_expected_std(scheme, hidden, gain), rel=0.01)
    assert torch.count_nonzero(model.net.layer2.fc.bias) == 0
    if scheme == "orthogonal":  # square: W W^T = gain^2 I exactly
        torch.testing.assert_close(hidden @ hidden.T, gain**2 * torch.eye(WIDTH), atol=1e-3, rtol=0)


@pytest.mark.parametrize("scheme", ["xavier", "kaiming"])
def test_the_output_layer_gets_gain_one(scheme):
    out = _mlp(scheme, {"name": "relu"}).net.out.weight.detach()  # 10 x 512: 5k weights, within about 3%
    assert out.std().item() == pytest.approx(_expected_std(scheme, out, 1.0), rel=0.05)


def test_default_keeps_pytorchs_initialisation():
    torch.manual_seed(0)
    plain = build_model({"name": "mlp", "depth": 2, "width": 32}, {"name": "tanh"}, {"name": "none"}, 1, 8, 10)
    torch.manual_seed(0)
    default = build_model(
        {"name": "mlp", "depth": 2, "width": 32, "init": "default"}, {"name": "tanh"}, {"name": "none"}, 1, 8, 10
    )
    for a, b in zip(plain.parameters(), default.parameters(), strict=True):
        assert torch.equal(a, b)
    # PyTorch's Linear init: uniform(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in), not a variance-preserving one
    assert plain.net.layer2.fc.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 32), rel=0.1)


def test_the_sgmod_gain_follows_gamma_and_matches_its_function():
    assert activation_gain({"name": "sgmod", "gamma_init": 4.0, "beta_init": -2.0}) == pytest.approx(5 / 3)
    assert activation_gain({"name": "sgmod", "gamma_init": 2.0}) == pytest.approx(10 / 3)
    # sigmoid is Sgmod at (1, 0): the same function gets the same gain (not PyTorch's 1)
    assert activation_gain({"name": "sigmoid"}) == activation_gain({"name": "sgmod", "gamma_init": 1.0})
    assert activation_gain({"name": "leaky_relu", "negative_slope": 0.2}) == pytest.approx(math.sqrt(2 / 1.04))
    assert activation_gain({"name": "prelu", "init": 0.25}) == pytest.approx(math.sqrt(2 / 1.0625))
    assert activation_gain({"name": "gelu"}) == pytest.approx(math.sqrt(2))
    assert activation_gain({"name": "relu", "gain": 1.2}) == 1.2  # a stated gain wins


def test_an_activation_of_your_own_needs_its_gain():
    with pytest.raises(ConfigError, match=r"activation=softcap has no known gain .* add gain: <number>"):
        activation_gain({"name": "softcap", "target": "examples.softcap:SoftCap"})
    assert activation_gain({"name": "softcap", "target": "examples.softcap:SoftCap", "gain": 5 / 3}) == 5 / 3


def test_a_bad_scheme_is_refused():
    with pytest.raises(ConfigError, match=r"model.init='he' is not a known choice; valid choices: default, kaiming"):
        initialize(nn.Linear(2, 2), "he", {"name": "relu"})


@pytest.mark.parametrize("scheme", INITS)
def test_every_scheme_reaches_every_layer_of_the_gan(scheme):
    """Under spectral norm the parametrization's original weight is initialised."""
    torch.manual_seed(0)
    act = {"name": "leaky_relu", "negative_slope": 0.2}
    g = Generator(16, 1, 28, {"name": "relu"}, {"name": "batch"}, width=8)
    d = Discriminator(1, 28, act, {"name": "none"}, width=8, spectral_norm=True)
    before = [p.detach().clone() for p in (*g.parameters(), *d.parameters())]
    initialize(g, scheme, {"name": "relu"}, Generator.OUTPUT_LAYERS)
    initialize(d, scheme, act, Discriminator.OUTPUT_LAYERS)
    after = list((*g.parameters(), *d.parameters()))
    changed = sum(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    # G: project, up1 (no biases: BatchNorm follows), up2 + bias; D: conv1, conv2, logit, each + bias
    assert changed == (0 if scheme == "default" else 4 + 6)
    if scheme == "kaiming":
        conv2 = d.body.conv2.parametrizations.weight.original
        assert conv2.std().item() == pytest.approx(activation_gain(act) / math.sqrt(conv2[0].numel()), rel=0.05)
