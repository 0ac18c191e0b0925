"""Sgmod and the registry that builds every activation of the study the same way.

Every activation is built by ``build_activation(cfg, num_channels)`` where ``cfg`` is the
``activation`` config group entry (``name`` plus that activation's options).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.sgmod_op import sgmod, sgmod_reference

Bounds = Sequence[float] | None


class Sgmod(nn.Module):
    """``y = gamma * sigmoid(x) + beta`` with learnable (or fixed) gamma and beta.

    ``num_parameters`` is 1 (shared scalars) or the number of channels (dim 1 of the input),
    as in ``nn.PReLU``. ``init="normal"`` draws gamma/beta around their init values with
    standard deviation ``init_std`` (clipped into the bounds).

    ``impl="fused"`` runs the fused op of ``sgmod_study.sgmod_op`` (compiled, one tensor saved),
    ``impl="reference"`` the plain eager expression; both compute the same values.

    Bounds are kept by projection: ``clamp_()`` after each optimizer step (see
    ``keep_in_bounds``). Inside the range the gradient is the plain analytic one; a
    reparametrisation (e.g. lo + (hi-lo)*sigmoid(raw)) would rescale it, and a clamp in the
    forward pass would zero it for good once a value crossed a bound.
    """

    def __init__(
        self,
        num_parameters: int = 1,
        gamma_init: float = 1.0,
        beta_init: float = 0.0,
        init: str = "constant",
        init_std: float = 0.1,
        learn_gamma: bool = True,
        learn_beta: bool = True,
        gamma_bounds: Bounds = (0.1, 10.0),
        beta_bounds: Bounds = (-5.0, 5.0),
        impl: str = "fused",
    ) -> None:
        super().__init__()
        check_choice("activation.init", init, INIT_STRATEGIES)
        check_choice("activation.impl", impl, IMPLEMENTATIONS)
        self.impl = impl
        self.gamma_bounds = _checked_bounds("gamma", gamma_init, gamma_bounds)
        self.beta_bounds = _checked_bounds("beta", beta_init, beta_bounds)
        gamma = _initial_values(num_parameters, gamma_init, init, init_std, self.gamma_bounds)
        beta = _initial_values(num_parameters, beta_init, init, init_std, self.beta_bounds)
        _register(self, "gamma", gamma, learn_gamma)
        _register(self, "beta", beta, learn_beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return IMPLEMENTATIONS[self.impl](x, self.gamma, self.beta)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project gamma and beta back into their bounds."""
        for p, bounds in ((self.gamma, self.gamma_bounds), (self.beta, self.beta_bounds)):
            if bounds is not None:
                p.clamp_(*bounds)

    def extra_repr(self) -> str:
        return (
            f"num_parameters={self.gamma.numel()}, gamma_bounds={self.gamma_bounds}, "
            f"beta_bounds={self.beta_bounds}, learn_gamma={isinstance(self.gamma, nn.Parameter)}, "
            f"learn_beta={isinstance(self.beta, nn.Parameter)}, impl={self.impl}"
        )


INIT_STRATEGIES = ("constant", "normal")
IMPLEMENTATIONS = {"fused": sgmod, "reference": sgmod_reference}


def _checked_bounds(name: str, init: float, bounds: Bounds) -> tuple[float, float] | None:
    if bounds is None:
        return None
    lo, hi = (float(b) for b in bounds)
    if not lo < hi:
        raise ConfigError(
            f"activation.{name}_bounds={[lo, hi]} is not allowed: the lower bound must be below the upper"
        )
    if not lo <= init <= hi:
        raise ConfigError(
            f"activation.{name}_init={init} is outside its allowed range [{lo}, {hi}] "
            f"(activation.{name}_bounds sets the range)"
        )
    return lo, hi


def _initial_values(n: int, init: float, strategy: str, std: float, bounds) -> torch.Tensor:
    values = torch.full((n,), float(init))
    if strategy == "normal":
        values += std * torch.randn(n)
    if bounds is not None:
        values.clamp_(*bounds)
    return values


def _register(module: nn.Module, name: str, values: torch.Tensor, learnable: bool) -> None:
    if learnable:
        module.register_parameter(name, nn.Parameter(values))
    else:
        module.register_buffer(name, values)


def clamp_activation_parameters(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, Sgmod):
            module.clamp_()


def keep_in_bounds(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """After every step of ``optimizer``, project all Sgmod parameters of ``model`` into bounds."""
    optimizer.register_step_post_hook(lambda *_: clamp_activation_parameters(model))


# Modules whose parameters go to the optimizer's "activation" parameter group.
LEARNABLE_ACTIVATIONS = (Sgmod, nn.PReLU)

# Keys of an activation config that configure its optimizer parameter group, not the module.
OPTIMIZER_KEYS = ("lr", "lr_mult", "weight_decay")


def _per_channel(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def build(num_channels: int, per_channel: bool = True, **kwargs) -> nn.Module:
        return factory(num_channels if per_channel else 1, **kwargs)

    return build


def _stateless(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(num_channels: int, **kwargs) -> nn.Module:
        return cls(**kwargs)

    return build


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "sgmod": _per_channel(Sgmod),
    "prelu": _per_channel(lambda n, init=0.25: nn.PReLU(num_parameters=n, init=init)),
    "relu": _stateless(nn.ReLU),
    "leaky_relu": _stateless(nn.LeakyReLU),
    "elu": _stateless(nn.ELU),
    "selu": _stateless(nn.SELU),
    "gelu": _stateless(nn.GELU),
    "silu": _stateless(nn.SiLU),
    "mish": _stateless(nn.Mish),
    "sigmoid": _stateless(nn.Sigmoid),
    "tanh": _stateless(nn.Tanh),
}


def build_activation(cfg: Mapping, num_channels: int) -> nn.Module:
    """Build the activation described by ``cfg`` (``name`` plus its options) for ``num_channels``."""
    options = dict(cfg)
    name = options.pop("name", None)
    check_choice("activation", name, ACTIVATIONS)
    for key in OPTIMIZER_KEYS:
        options.pop(key, None)
    try:
        return ACTIVATIONS[name](num_channels, **options)
    except TypeError as err:
        raise ConfigError(f"activation={name} got an option it does not take: {err}") from None
