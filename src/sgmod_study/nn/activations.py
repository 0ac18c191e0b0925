"""Sgmod and the registry that builds every activation of the study the same way.

Every activation is built by ``build_activation(cfg, num_channels)`` where ``cfg`` is the
``activation`` config group entry (``name`` plus that activation's options). An activation of
your own needs no entry in ``ACTIVATIONS``: its config names it with ``target:
package.module:Factory`` (README, "Add your activation").
"""

from __future__ import annotations

import importlib
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.nn.sgmod_op import sgmod, sgmod_reference

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

    ``impl="fused"`` runs the fused op of ``sgmod_study.nn.sgmod_op`` (compiled, one tensor saved),
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


# The attribute build_activation sets on a module it built from a ``target`` (its value: the target).
TARGET_MARK = "_activation_target"


class _BuiltFromTarget(type):
    def __instancecheck__(cls, instance) -> bool:
        return isinstance(instance, nn.Module) and getattr(instance, TARGET_MARK, None) is not None


class TargetActivation(metaclass=_BuiltFromTarget):
    """``isinstance(m, TargetActivation)``: ``m`` is a module that ``build_activation`` built from a
    config with a ``target`` (an activation of your own). The mark is an attribute of the module
    (its target), so it survives a deep copy and pickling (DDP's spawned processes)."""


# Modules whose own parameters (not their submodules') go to the optimizer's "activation"
# parameter group: activation.lr (or optimizer.lr * activation.lr_mult) and activation.weight_decay.
LEARNABLE_ACTIVATIONS = (Sgmod, nn.PReLU, TargetActivation)

# Keys of an activation config that configure its optimizer parameter group, not the module.
OPTIMIZER_KEYS = ("lr", "lr_mult", "weight_decay")
# Keys of an activation config that say where the module is and what a study searches, not options.
TARGET_KEY, SEARCH_KEY = "target", "search"
# The activation's gain for a variance-preserving model.init (sgmod_study.nn.init), not an option.
GAIN_KEY = "gain"


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
    the optimizer settings (``lr``, ``lr_mult``, ``weight_decay``) and ``search`` (what a study
    searches) are skipped. With ``target: "package.module:Factory"`` the module is the one that
    factory returns, whatever ``name`` is: ``Factory(num_channels=num_channels, **options)`` when
    the factory has a parameter named ``num_channels``, else ``Factory(**options)``. A bad name,
    target or option raises ``ConfigError`` (a ``ValueError``) with one line naming it.
    """
    options = dict(cfg)
    name = options.pop("name", None)
    target = options.pop(TARGET_KEY, None)
    options.pop(SEARCH_KEY, None)
    options.pop(GAIN_KEY, None)
    for key in OPTIMIZER_KEYS:
        options.pop(key, None)
    if target is None:
        check_choice("activation", name, ACTIVATIONS)
        factory = ACTIVATIONS[name]
    else:
        factory = _with_channels(load_target(target))
    try:
        module = factory(num_channels, **options)
    except TypeError as err:
        raise ConfigError(f"activation={name} got an option it does not take: {err}") from None
    except ValueError as err:  # the module's own check, which names its constructor argument
        raise ConfigError(f"activation={name}: {err}") from None
    if target is not None:
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"activation.target={target!r} returned {type(module).__name__}, not a torch.nn.Module: "
                "it must name a module class or a function that returns a module"
            )
        setattr(module, TARGET_MARK, target)  # its parameters join the "activation" group (optim.py)
    return module


def load_target(target) -> Callable[..., nn.Module]:
    """The callable named by ``"package.module:Factory"`` (``Factory`` may be dotted: ``Class.build``).

    The module must be importable as any Python module: an installed package (``pip install -e``)
    or a folder on ``PYTHONPATH``. A malformed target, a module that cannot be imported and a
    missing or non-callable attribute each raise ``ConfigError`` with one line naming the target.
    """
    module_name, _, attribute = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not (module_name and attribute) or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"activation.target={target!r} is not allowed: it must be 'package.module:Factory', an importable "
            "module and a callable in it (a module class or a function that returns one)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"activation.target={target!r} cannot be imported: {err} (its module must be importable: install "
            "its package with pip install -e, or put the folder that holds it on PYTHONPATH, e.g. PYTHONPATH=$PWD)"
        ) from None
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            found = sorted(
                key
                for key, value in vars(module).items()
                if not key.startswith("_") and callable(value) and getattr(value, "__module__", None) == module_name
            )
            raise ConfigError(
                f"activation.target={target!r}: {module_name} has no attribute {attribute!r}; "
                f"its callables: {', '.join(found) or 'none'}"
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(
            f"activation.target={target!r} is not callable ({type(factory).__name__}): it must name a module "
            "class or a function that returns a module"
        )
    return factory


def _with_channels(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """``factory`` called as ``ACTIVATIONS``' builders are: with the channel count as
    ``num_channels=`` when it takes a parameter of that name, else with the options alone."""
    try:
        takes_channels = "num_channels" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a callable without a signature Python can read
        takes_channels = False

    def build(num_channels: int, **options) -> nn.Module:
        return factory(num_channels=num_channels, **options) if takes_channels else factory(**options)

    return build
