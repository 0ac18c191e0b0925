import pytest
import torch
from torch import nn

from sgmod_study.errors import ConfigError
from sgmod_study.nn.activations import Sgmod
from sgmod_study.tasks.optim import build_optimizer, build_scheduler

SGMOD = {"name": "sgmod", "lr_mult": 10.0, "weight_decay": 0.5}


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), Sgmod(4), nn.PReLU(4))


def _groups(optimizer) -> dict[str, dict]:
    return {g["name"]: g for g in optimizer.param_groups}


def test_activation_parameters_get_their_own_group():
    net = _net()
    opt = build_optimizer(net, {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4}, SGMOD)
    groups = _groups(opt)
    act_params = {id(p) for p in groups["activation"]["params"]}
    assert act_params == {id(net[2].gamma), id(net[2].beta), id(net[3].weight)}
    assert groups["activation"]["lr"] == pytest.approx(1e-2)
    assert groups["activation"]["weight_decay"] == 0.5
    assert groups["decay"]["weight_decay"] == 1e-4 and groups["decay"]["lr"] == 1e-3
    assert [p.shape for p in groups["decay"]["params"]] == [net[0].weight.shape]
    assert groups["no_decay"]["weight_decay"] == 0.0  # conv bias, BN affine
    assert len(groups["no_decay"]["params"]) == 3


def test_default_activation_group_has_no_weight_decay():
    opt = build_optimizer(_net(), {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9}, {"name": "sgmod"})
    assert _groups(opt)["activation"]["weight_decay"] == 0.0
    assert _groups(opt)["activation"]["lr"] == 0.1


def test_fixed_gamma_beta_are_not_optimised():
    net = nn.Sequential(nn.Linear(3, 3), Sgmod(3, learn_gamma=False, learn_beta=False))
    opt = build_optimizer(net, {"name": "adam", "lr": 1e-3}, {"name": "sgmod"})
    assert "activation" not in _groups(opt)


def test_activation_lr_multiplier_survives_the_cosine_schedule():
    opt = build_optimizer(_net(), {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0}, SGMOD)
    sched = build_scheduler(opt, {"name": "cosine", "min_lr_ratio": 0.1}, max_epochs=4)
    for _ in range(2):
        opt.step()
        sched.step()
    groups = _groups(opt)
    assert groups["activation"]["lr"] == pytest.approx(10 * groups["decay"]["lr"])
    assert groups["decay"]["lr"] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # halfway down the cosine


def test_step_schedule_decays_by_factor():
    opt = build_optimizer(_net(), {"name": "sgd", "lr": 1.0}, {"name": "sgmod"})
    sched = build_scheduler(opt, {"name": "step", "step_size": 2, "factor": 0.5}, max_epochs=10)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5]
    assert build_scheduler(opt, {"name": "none"}, max_epochs=10) is None


@pytest.mark.parametrize(
    "opt_cfg, message",
    [
        ({"name": "adamw", "lr": -0.1}, r"optimizer.lr=-0.1 is not allowed: it must be a number > 0"),
        ({"name": "adamw", "lr": 1e-3, "weight_decay": -1}, r"optimizer.weight_decay=-1 is not allowed"),
        (
            {"name": "lion", "lr": 1e-3},
            r"optimizer='lion' is not a known choice; valid choices: adam, adamw, rmsprop, sgd",
        ),
    ],
)
def test_bad_optimizer_settings_are_clear_errors(opt_cfg, message):
    with pytest.raises(ConfigError, match=message):
        build_optimizer(_net(), opt_cfg, {"name": "sgmod"})


def test_cosine_needs_a_finite_epoch_budget():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="scheduler=cosine needs trainer.max_epochs >= 1"):
        build_scheduler(opt, {"name": "cosine"}, max_epochs=-1)


def test_gamma_beta_absolute_learning_rate_and_weight_decay():
    """The study brief's table: gamma/beta have a learning rate and weight decay of their own."""
    act = {"name": "sgmod", "lr": 3e-3, "lr_mult": 1.0, "weight_decay": 2e-4}
    opt = build_optimizer(_net(), {"name": "adamw", "lr": 1e-4, "weight_decay": 1e-5}, act)
    groups = _groups(opt)
    assert groups["activation"]["lr"] == pytest.approx(3e-3)  # not tied to optimizer.lr
    assert groups["activation"]["weight_decay"] == pytest.approx(2e-4)
    assert groups["decay"]["lr"] == pytest.approx(1e-4) and groups["decay"]["weight_decay"] == pytest.approx(1e-5)


@pytest.mark.parametrize(
    "act, message",
    [
        ({"lr": 1e-3, "lr_mult": 10.0}, "activation.lr=0.001 and activation.lr_mult=10.0 both set"),
        ({"lr": -1e-3}, "activation.lr=-0.001 is not allowed: it must be a number > 0"),
    ],
)
def test_gamma_beta_learning_rate_conflicts_are_refused(act, message):
    with pytest.raises(ConfigError, match=message):
        build_optimizer(_net(), {"name": "adamw", "lr": 1e-3}, {"name": "sgmod", **act})
