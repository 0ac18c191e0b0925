"""Sgmod and the registry that builds every activation of the study the same way.

Every activation is built by ``build_activation(cfg, num_channels)`` where ``cfg`` is the
``activation`` config group entry (``name`` plus that activation's options).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.sgmod_op import sgmod, sgmod_reference

Bounds = Sequence[float] | None


class Sgmod(nn.Module):
    """``y = gamma * sigmoid(x) + beta`` with learnable (or fixed) gamma and beta, kept within bounds.

    Channels: ``num_parameters`` is the number of channels (dim 1 of the input, as in ``nn.PReLU``)
    for one gamma/beta per channel, or 1 for one pair shared by all channels. Without a channel
    count (``Sgmod()``, which is how timm builds ``act_layer(inplace=True)``) each layer has its
    own scalar gamma and beta and takes an input of any shape. ``inplace`` is accepted for that
    use and ignored: the op never overwrites its input (the backward pass needs it).

    Init: gamma/beta start at ``gamma_init``/``beta_init``; ``init="normal"`` draws them around
    those values with standard deviation ``init_std`` (clipped into the bounds).
    ``learn_gamma=False``/``learn_beta=False`` keep one fixed (a buffer, not a parameter).

    Bounds: gamma and beta stay within ``gamma_bounds``/``beta_bounds`` (None: unbounded) in any
    training loop, with nothing to wire: after each step of a ``torch.optim`` optimizer that holds
    them they are projected back (a global optimizer step hook over the live Sgmod layers;
    ``clamp_()`` does it by hand, e.g. after editing them). Inside the range the gradient is the
    plain analytic one; a reparametrisation (e.g. lo + (hi-lo)*sigmoid(raw)) would rescale it,
    and a clamp in the forward pass would zero it for good once a value crossed a bound.

    ``impl="fused"`` runs the fused op of ``sgmod_study.sgmod_op`` (compiled, one tensor saved),
    ``impl="reference"`` the plain eager expression; both compute the same values.

    A bad argument raises ``ValueError`` naming it, e.g. ``gamma_init=50.0 is outside its allowed
    range [0.1, 10.0] (gamma_bounds sets the range)``.
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
        inplace: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int) or num_parameters < 1:
            raise ValueError(f"num_parameters={num_parameters!r} is not allowed: it must be an integer >= 1")
        _check_argument_choice("init", init, INIT_STRATEGIES)
        _check_argument_choice("impl", impl, IMPLEMENTATIONS)
        if not init_std >= 0:
            raise ValueError(f"init_std={init_std!r} is not allowed: it must be a number >= 0")
        self.impl = impl
        self.gamma_bounds = _checked_bounds("gamma", gamma_init, gamma_bounds)
        self.beta_bounds = _checked_bounds("beta", beta_init, beta_bounds)
        gamma = _initial_values(num_parameters, gamma_init, init, init_std, self.gamma_bounds)
        beta = _initial_values(num_parameters, beta_init, init, init_std, self.beta_bounds)
        _register(self, "gamma", gamma, learn_gamma)
        _register(self, "beta", beta, learn_beta)
        _track(self)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        _track(self)  # a deep copy or an unpickled module is kept within bounds too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return IMPLEMENTATIONS[self.impl](x, self.gamma, self.beta)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project gamma and beta back into their bounds (optimizer steps do this by themselves)."""
        self._project(None)

    @torch.no_grad()
    def _project(self, stepped: set[int] | None) -> None:
        """Project those of gamma/beta whose id is in ``stepped`` (None: both)."""
        for p, bounds in ((self.gamma, self.gamma_bounds), (self.beta, self.beta_bounds)):
            if bounds is not None and (stepped is None or id(p) in stepped):
                p.clamp_(*bounds)

    def extra_repr(self) -> str:
        return (
            f"num_parameters={self.gamma.numel()}, gamma_bounds={self.gamma_bounds}, "
            f"beta_bounds={self.beta_bounds}, learn_gamma={isinstance(self.gamma, nn.Parameter)}, "
            f"learn_beta={isinstance(self.beta, nn.Parameter)}, impl={self.impl}"
        )


INIT_STRATEGIES = ("constant", "normal")
IMPLEMENTATIONS = {"fused": sgmod, "reference": sgmod_reference}


def _check_argument_choice(name: str, value, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not a known choice; valid choices: {', '.join(sorted(choices))}")


def _checked_bounds(name: str, init: float, bounds: Bounds) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not lo < hi:
        raise ValueError(
            f"{name}_bounds={bounds!r} is not allowed: it must be None or (low, high), two numbers with low < high"
        )
    if not lo <= init <= hi:
        raise ValueError(f"{name}_init={init} is outside its allowed range [{lo}, {hi}] ({name}_bounds sets the range)")
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


# The bounds mechanism: every live Sgmod, and one global step post hook for all optimizers,
# registered when the first Sgmod is built (importing the package changes nothing in torch).
_live: weakref.WeakSet[Sgmod] = weakref.WeakSet()
_step_hook = None


def _track(module: Sgmod) -> None:
    global _step_hook
    _live.add(module)
    if _step_hook is None:
        _step_hook = register_optimizer_step_post_hook(_project_after_step)


def _project_after_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Project the gamma/beta this optimizer holds. Only those: projecting (in place) those of
    another network would break a backward pass still pending through it, e.g. the GAN's
    generator loss after the discriminator's step."""
    if not _live:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for module in list(_live):  # a snapshot: a layer built or freed meanwhile changes the set
        module._project(stepped)


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
    """The activation described by ``cfg`` for a layer of ``num_channels`` channels.

    ``cfg`` is an entry of the ``activation`` config group: ``name`` (a key of ``ACTIVATIONS``)
    plus that activation's options, e.g. ``{"name": "sgmod", "gamma_init": 2.0, "per_channel": False}``;
    the optimizer settings (``lr``, ``lr_mult``, ``weight_decay``) are skipped. A bad name or option
    raises ``ConfigError`` (a ``ValueError``) with one line naming it.
    """
    options = dict(cfg)
    name = options.pop("name", None)
    check_choice("activation", name, ACTIVATIONS)
    for key in OPTIMIZER_KEYS:
        options.pop(key, None)
    try:
        return ACTIVATIONS[name](num_channels, **options)
    except TypeError as err:
        raise ConfigError(f"activation={name} got an option it does not take: {err}") from None
    except ValueError as err:  # the module's own check, which names its constructor argument
        raise ConfigError(f"activation={name}: {err}") from None
