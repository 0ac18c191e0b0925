import copy
import math
import pickle
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from helpers.runs import CONF, ROOT, TINY, compose_config, run_train
from sgmod_study.config.schema import check_config
from sgmod_study.errors import ConfigError
from sgmod_study.nn.activation_configs import declared_search
from sgmod_study.nn.activations import ACTIVATIONS, Sgmod, TargetActivation, build_activation
from sgmod_study.run.training import train
from sgmod_study.tasks.classifier import Classifier
from sgmod_study.tasks.optim import parameter_groups


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
    "kwargs, message",
    [
        (
            {"gamma_init": 20.0},
            "gamma_init=20.0 is outside its allowed range [0.1, 10.0] (gamma_bounds sets the range)",
        ),
        ({"beta_init": -6.0}, "beta_init=-6.0 is outside its allowed range [-5.0, 5.0] (beta_bounds sets the range)"),
        ({"gamma_init": 0.05}, "gamma_init=0.05 is outside its allowed range [0.1, 10.0]"),
        ({"gamma_bounds": (10, 0.1)}, "gamma_bounds=(10, 0.1) is not allowed: it must be None or (low, high)"),
        ({"init": "uniform"}, "init='uniform' is not a known choice; valid choices: constant, normal"),
        ({"impl": "triton"}, "impl='triton' is not a known choice; valid choices: fused, reference"),
        ({"num_parameters": 0}, "num_parameters=0 is not allowed: it must be an integer >= 1"),
        ({"init_std": -0.1}, "init_std=-0.1 is not allowed: it must be a number >= 0"),
    ],
)
def test_bad_arguments_name_the_constructor_argument(kwargs, message):
    """A library user reads the argument they passed, not the toolkit's config key (activation.gamma_init)."""
    with pytest.raises(ValueError) as err:
        Sgmod(**kwargs)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value) and "activation." not in str(err.value)


def test_registry_names_the_activation_of_a_bad_option():
    with pytest.raises(ConfigError, match=r"^activation=sgmod: gamma_init=20.0 is outside its allowed range \[0.1"):
        build_activation({"name": "sgmod", "gamma_init": 20.0}, 3)


def _huge_step(act: Sgmod, optimizer: torch.optim.Optimizer, direction: float = 1.0) -> None:
    optimizer.zero_grad()
    (direction * act(torch.ones(2, act.gamma.numel())).sum()).backward()
    optimizer.step()


def test_bounds_hold_in_a_plain_torch_loop():
    """No hook to wire: any torch.optim optimizer's step projects gamma/beta back into their bounds."""
    act = Sgmod(4)
    optimizer = torch.optim.SGD(act.parameters(), lr=100.0)
    # a huge step down, then a huge step up: each ends exactly on the bounds, not beyond
    for direction, gamma_end, beta_end in ((1.0, 0.1, -5.0), (-1.0, 10.0, 5.0)):
        _huge_step(act, optimizer, direction)
        torch.testing.assert_close(act.gamma.detach(), torch.full((4,), gamma_end))
        torch.testing.assert_close(act.beta.detach(), torch.full((4,), beta_end))
    other = Sgmod(4)
    _huge_step(other, torch.optim.AdamW(other.parameters(), lr=100.0))
    _assert_on_lower_bounds(other)


def _assert_on_lower_bounds(act: Sgmod) -> None:
    torch.testing.assert_close(act.gamma.detach(), torch.full_like(act.gamma, 0.1))
    torch.testing.assert_close(act.beta.detach(), torch.full_like(act.beta, -5.0))


def test_deep_copies_are_kept_in_bounds_too():
    act = copy.deepcopy(Sgmod(4))  # e.g. an EMA copy of a model: built without __init__
    _huge_step(act, torch.optim.SGD(act.parameters(), lr=100.0))
    _assert_on_lower_bounds(act)


def test_a_step_projects_only_the_parameters_of_its_own_optimizer():
    """A GAN steps the discriminator between the generator's forward and backward passes: projecting
    the generator's gamma in place then would fail that backward ("modified by an inplace operation")."""
    generator, discriminator = Sgmod(4, impl="reference"), Sgmod(4, impl="reference")
    opt_d = torch.optim.SGD(discriminator.parameters(), lr=100.0)
    fake = generator(torch.ones(2, 4))  # its graph saves the generator's gamma
    discriminator(fake.detach()).sum().backward()
    opt_d.step()
    _assert_on_lower_bounds(discriminator)
    fake.sum().backward()  # the generator's pending backward still runs
    assert generator.gamma.grad is not None


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
    act.clamp_()
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


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize(
    "shape, message",
    [
        (
            (2, 32, 4, 4),
            "Sgmod with 64 channels expects an input of shape (N, 64, ...) (channels on dim 1); "
            "got shape (2, 32, 4, 4)",
        ),
        ((64,), "Sgmod with 64 channels expects an input of shape (N, 64, ...) (channels on dim 1); got shape (64,)"),
    ],
)
def test_wrong_input_shape_is_one_line_naming_both_shapes(impl, shape, message, capfd):
    """Checked before the compiled kernel runs: its own error is pages of compiler log (and a 1-D
    input broadcast silently to a (1, 64) output)."""
    with pytest.raises(ValueError) as err:
        Sgmod(64, impl=impl)(torch.randn(*shape))
    assert str(err.value) == message
    assert capfd.readouterr().err == ""


def test_without_a_channel_count_gamma_beta_are_scalars_for_any_shape():
    act = Sgmod(inplace=True)  # how timm builds act_layer
    assert act.gamma.shape == act.beta.shape == (1,)
    for shape in ((5,), (2, 3), (2, 7, 3, 3)):
        x = torch.randn(*shape)
        torch.testing.assert_close(act(x), torch.sigmoid(x))
    with pytest.raises(ValueError, match=r"^Sgmod expects an input with at least 1 dimension; got a 0-d tensor$"):
        act(torch.tensor(1.0))


@pytest.mark.slow
def test_the_toolkits_training_keeps_gamma_beta_in_bounds(tmp_path):
    """The toolkit trains with no projection of its own: the optimizer steps do it."""
    overrides = [*TINY, "activation.impl=reference", "activation.lr=100", "trainer.max_epochs=1"]
    train(compose_config([*overrides, "trainer.limit_train_batches=3"], tmp_path))
    module = Classifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    gammas = torch.cat([m.gamma.detach() for m in module.modules() if isinstance(m, Sgmod)])
    assert gammas.min() >= 0.1 and gammas.max() <= 10.0
    assert ((gammas == 0.1) | (gammas == 10.0)).any()  # a step of 100 did push some onto a bound


# -- an activation of your own: `target: package.module:Factory` in conf/activation/NAME.yaml

SOFTCAP = {  # conf/activation/softcap.yaml, as composed
    "name": "softcap",
    "target": "examples.softcap:SoftCap",
    "alpha_init": 1.0,
    "search": {"alpha_init": "tag(log, interval(0.5, 4.0))"},
    "lr": None,
    "lr_mult": 1.0,
    "weight_decay": 0.0,
}


@pytest.fixture
def examples_importable(monkeypatch):
    """The repository root on sys.path, as PYTHONPATH=$PWD puts it for a run (README)."""
    monkeypatch.syspath_prepend(str(ROOT))


def test_a_target_that_takes_num_channels_gets_the_layers_channels(examples_importable):
    act = build_activation({**SOFTCAP, "alpha_init": 2.0}, num_channels=3)
    assert type(act).__name__ == "SoftCap" and act.log_alpha.shape == (3,)  # search and lr were not passed
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(act(x), 2.0 * torch.tanh(x / 2.0))
    torch.testing.assert_close(act(x[:, :, 0, 0]), 2.0 * torch.tanh(x[:, :, 0, 0] / 2.0))  # (N, C) as in the MLP


def test_a_target_without_num_channels_gets_the_options_alone():
    act = build_activation({"name": "hardtanh2", "target": "torch.nn:Hardtanh", "min_val": -2.0, "max_val": 2.0}, 7)
    assert isinstance(act, nn.Hardtanh) and (act.min_val, act.max_val) == (-2.0, 2.0)
    assert "hardtanh2" not in ACTIVATIONS  # using a target registers nothing globally


@pytest.mark.parametrize(
    "target, message",
    [
        (
            "examples.nosuch:SoftCap",
            "activation.target='examples.nosuch:SoftCap' cannot be imported: No module named 'examples.nosuch' "
            "(its module must be importable: install its package with pip install -e, or put the folder that "
            "holds it on PYTHONPATH, e.g. PYTHONPATH=$PWD)",
        ),
        (
            "examples.softcap:SoftCapp",
            "activation.target='examples.softcap:SoftCapp': examples.softcap has no attribute 'SoftCapp'; "
            "its callables: SoftCap",
        ),
        (
            "examples.softcap.SoftCap",
            "activation.target='examples.softcap.SoftCap' is not allowed: it must be 'package.module:Factory', "
            "an importable module and a callable in it (a module class or a function that returns one)",
        ),
        ("math:pi", "activation.target='math:pi' is not callable (float): it must name a module class or a function"),
        ("builtins:dict", "activation.target='builtins:dict' returned dict, not a torch.nn.Module"),
    ],
)
def test_a_bad_target_is_one_line_naming_it(examples_importable, target, message):
    with pytest.raises(ConfigError) as err:
        build_activation({"name": "mine", "target": target}, 3)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_target_refusing_an_option_is_one_line_naming_the_activation(examples_importable):
    with pytest.raises(ConfigError, match=r"^activation=softcap: alpha_init=-1.0 is not allowed: it must be"):
        build_activation({**SOFTCAP, "alpha_init": -1.0}, 3)
    with pytest.raises(ConfigError, match=r"^activation=softcap got an option it does not take: .*'alpha'"):
        build_activation({**SOFTCAP, "alpha": 2.0}, 3)


def test_a_target_activations_parameters_join_the_activation_group(examples_importable):
    from examples.softcap import SoftCap

    model = nn.Sequential(nn.Linear(4, 3), build_activation(SOFTCAP, 3), nn.Linear(3, 2), Sgmod(2))
    act_cfg = {"lr": 0.05, "weight_decay": 0.0}
    for copied in (model, copy.deepcopy(model), pickle.loads(pickle.dumps(model))):  # DDP spawn pickles it
        groups = {g["name"]: g for g in parameter_groups(copied, 1e-3, 1e-4, act_cfg)}
        names = {id(p): n for n, p in copied.named_parameters()}
        assert sorted(names[id(p)] for p in groups["activation"]["params"]) == ["1.log_alpha", "3.beta", "3.gamma"]
        assert (groups["activation"]["lr"], groups["activation"]["weight_decay"]) == (0.05, 0.0)
        assert len(groups["decay"]["params"]) == 2  # the Linear weights stay where they were
    assert not isinstance(SoftCap(3), TargetActivation)  # the same class built by hand is not marked
    assert not isinstance(nn.Linear(2, 2), TargetActivation)


def test_declared_search_reads_the_yaml_of_the_activation():
    assert declared_search("softcap", CONF) == {"activation.alpha_init": "tag(log, interval(0.5, 4.0))"}
    assert declared_search("sgmod", CONF) == {}
    with pytest.raises(ConfigError) as err:
        declared_search("swishy", CONF)
    assert str(err.value).startswith("activation='swishy' is not a known choice; valid choices: elu, gelu, ")
    assert ", softcap, " in str(err.value) and ", sgmod_tanh_init, " in str(err.value)


@pytest.mark.parametrize(
    "search, message",
    [
        ("{alpha: 'interval(0.5, 4.0)'}", "activation.search.alpha is not an option set in the activation's config; "),
        ("{alpha_init: 0.5}", "activation.search.alpha_init=0.5 is not allowed: it must be a sweep range as a string"),
        ("{alpha_init: 'interval(0.5 4.0)'}", "activation.search.alpha_init='interval(0.5 4.0)' is not allowed: "),
        ("[alpha_init]", "activation.search=['alpha_init'] is not allowed: it must be a mapping from an option"),
    ],
)
def test_declared_search_refuses_a_bad_search_in_one_line(tmp_path, search, message):
    (tmp_path / "activation").mkdir()
    path = tmp_path / "activation" / "mine.yaml"
    path.write_text(f"name: mine\ntarget: examples.softcap:SoftCap\nalpha_init: 1.0\nsearch: {search}\n")
    with pytest.raises(ConfigError) as err:
        declared_search("mine", tmp_path)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_declared_search_does_not_import_torch():
    code = (
        "import sys; from pathlib import Path; from sgmod_study.nn.activation_configs import declared_search; "
        f"print(declared_search('softcap', Path({str(CONF)!r}))); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[-2:] == ["False", ""], result.stdout + result.stderr


def test_the_schema_accepts_a_target_activation_and_still_refuses_a_misspelled_built_in(tmp_path):
    config = OmegaConf.to_container(compose_config([*TINY, "activation=softcap"], tmp_path), resolve=True)
    check_config(config)
    check_config({**config, "activation": {**config["activation"], "per_channel": [1, 2], "note": None}})
    with pytest.raises(ConfigError) as err:
        check_config({**config, "activation": {"name": "sgmodd"}})
    assert str(err.value) == (
        "activation.name='sgmodd' is not a known choice; valid choices: elu, gelu, leaky_relu, mish, prelu, relu, "
        "selu, sgmod, sigmoid, silu, tanh"
    )
    with pytest.raises(ConfigError) as err:
        check_config({**config, "activation": {**config["activation"], "table": {"a": 1}}})
    assert str(err.value) == (
        "activation.table={'a': 1} is not allowed: it must be a plain value (a number, a string, true or false, "
        "null, or a list of those)"
    )


@pytest.mark.slow
def test_a_run_trains_the_worked_example_activation(tmp_path, monkeypatch, examples_importable):
    """`PYTHONPATH=$PWD python src/train.py activation=softcap` as the README has it, one short epoch."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    overrides = ["activation=softcap", "model=mlp", "model.depth=2", "model.width=32", "trainer.max_epochs=1"]
    result = run_train([*TINY, *overrides, "trainer.limit_train_batches=5"], tmp_path / "run", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| softcap | mlp |" in result.stdout
    module = Classifier.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    alphas = [m.log_alpha.detach() for m in module.modules() if isinstance(m, TargetActivation)]
    assert len(alphas) == 2 and all(a.shape == (32,) for a in alphas)
    assert any(a.abs().max() > 0 for a in alphas)  # alpha (log 1.0 = 0 at the start) was trained
