import math

import pytest
import torch
from torch import nn

from sgmod_study.activations import ACTIVATIONS, Sgmod, build_activation, clamp_activation_parameters, keep_in_bounds
from sgmod_study.errors import ConfigError


def _sgmod64(num_parameters: int, **kwargs) -> Sgmod:
    torch.manual_seed(0)
    return Sgmod(num_parameters, init="normal", init_std=0.5, **kwargs).double()


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_gradcheck_input_gamma_beta(num_parameters):
    act = _sgmod64(num_parameters)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    gamma = act.gamma.detach().clone().requires_grad_()
    beta = act.beta.detach().clone().requires_grad_()

    def f(x, gamma, beta):
        return torch.func.functional_call(act, {"gamma": gamma, "beta": beta}, (x,))

    assert torch.autograd.gradcheck(f, (x, gamma, beta))
    assert torch.autograd.gradgradcheck(f, (x, gamma, beta))  # double backward (WGAN-GP)


def test_gradient_matches_analytic_formula():
    act = _sgmod64(3)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    act(x).backward(g)
    s = torch.sigmoid(x.detach())
    gamma = act.gamma.detach().view(1, 3, 1, 1)
    torch.testing.assert_close(x.grad, g * gamma * s * (1 - s))
    torch.testing.assert_close(act.gamma.grad, (g * s).sum(dim=(0, 2, 3)))
    torch.testing.assert_close(act.beta.grad, g.sum(dim=(0, 2, 3)))


def test_default_is_plain_sigmoid_and_values_are_affine():
    x = torch.randn(8, 4)
    torch.testing.assert_close(Sgmod(4)(x), torch.sigmoid(x))
    act = Sgmod(1, gamma_init=2.0, beta_init=-1.0)
    torch.testing.assert_close(act(x), torch.tanh(x / 2))  # 2*sigmoid(x)-1 = tanh(x/2)


def test_per_channel_parameters_broadcast_on_dim_1():
    act = Sgmod(3)
    with torch.no_grad():
        act.gamma.copy_(torch.tensor([1.0, 2.0, 3.0]))
    y = act(torch.zeros(2, 3, 4, 4))
    torch.testing.assert_close(y[:, :, 0, 0], torch.tensor([[0.5, 1.0, 1.5]] * 2))


def test_fixed_gamma_beta_are_buffers_not_parameters():
    act = Sgmod(3, learn_gamma=False, learn_beta=True)
    assert [name for name, _ in act.named_parameters()] == ["beta"]
    assert "gamma" in dict(act.named_buffers())


def test_random_init_is_around_init_and_inside_bounds():
    torch.manual_seed(0)
    act = Sgmod(256, gamma_init=1.0, beta_init=4.9, init="normal", init_std=0.2)
    assert act.gamma.std() > 0.1 and abs(act.gamma.mean() - 1.0) < 0.05
    assert act.beta.max() <= 5.0 and act.beta.min() > 4.0


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"gamma_init": 20.0}, "gamma_init=20.0"),
        ({"beta_init": -6.0}, "beta_init=-6.0"),
        ({"gamma_init": 0.05}, "gamma_init=0.05"),
    ],
)
def test_init_outside_bounds_is_a_clear_error(kwargs, bad):
    with pytest.raises(ConfigError, match=rf"{bad} is outside its allowed range \[") as err:
        Sgmod(1, **kwargs)
    assert "\n" not in str(err.value)


def test_bounds_are_enforced_after_optimizer_steps():
    model = nn.Sequential(Sgmod(4))
    act = model[0]
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    keep_in_bounds(opt, model)
    # a huge step down, then a huge step up: each ends exactly on the bounds, not beyond
    for direction, gamma_end, beta_end in ((1.0, 0.1, -5.0), (-1.0, 10.0, 5.0)):
        opt.zero_grad()
        (direction * model(torch.ones(2, 4)).sum()).backward()
        opt.step()
        torch.testing.assert_close(act.gamma.detach(), torch.full((4,), gamma_end))
        torch.testing.assert_close(act.beta.detach(), torch.full((4,), beta_end))


def test_bounds_do_not_change_gradients_inside_the_range():
    bounded, free = Sgmod(1, gamma_init=9.99), Sgmod(1, gamma_init=9.99, gamma_bounds=None, beta_bounds=None)
    x = torch.randn(16)
    for act in (bounded, free):
        act(x).pow(2).sum().backward()
    assert bounded.gamma.grad.abs() > 0
    torch.testing.assert_close(bounded.gamma.grad, free.gamma.grad)
    torch.testing.assert_close(bounded.beta.grad, free.beta.grad)


def test_configurable_and_disabled_bounds():
    act = Sgmod(1, gamma_init=50.0, gamma_bounds=[1.0, 100.0], beta_bounds=None)
    with torch.no_grad():
        act.gamma.fill_(500.0)
        act.beta.fill_(-99.0)
    clamp_activation_parameters(act)
    assert act.gamma.item() == 100.0 and act.beta.item() == -99.0


def test_batchnorm_after_cancels_per_channel_gamma_beta():
    torch.manual_seed(0)
    sgmod = Sgmod(6, init="normal", init_std=0.5)  # positive gammas (inside [0.1, 10])
    x = torch.randn(32, 6, 5, 5)
    bn_a, bn_b = nn.BatchNorm2d(6, eps=1e-12), nn.BatchNorm2d(6, eps=1e-12)
    torch.testing.assert_close(bn_a(sgmod(x)), bn_b(torch.sigmoid(x)), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(sgmod(x), torch.sigmoid(x), atol=1e-2)  # the gammas/betas did matter before BN


def test_registry_builds_every_activation_the_same_way():
    x = torch.randn(2, 3, 4, 4)
    for name in ACTIVATIONS:
        act = build_activation({"name": name}, num_channels=3)
        assert act(x).shape == x.shape
    assert build_activation({"name": "prelu", "per_channel": True}, 3).weight.numel() == 3
    assert build_activation({"name": "sgmod", "per_channel": False}, 3).gamma.numel() == 1
    assert math.isclose(build_activation({"name": "leaky_relu", "negative_slope": 0.2}, 3).negative_slope, 0.2)


def test_registry_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="activation='swishy' is not a known choice; valid choices: elu, gelu"):
        build_activation({"name": "swishy"}, 3)
    with pytest.raises(ConfigError, match="activation=relu got an option it does not take"):
        build_activation({"name": "relu", "slope": 1}, 3)
