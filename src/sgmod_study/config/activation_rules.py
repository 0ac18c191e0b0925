"""The rules of the activation and norm groups: the built-in activations and norms with their
settings, an activation of your own (``target``), a study's ``search`` of an activation, and the
partial nodes a DCGAN network takes (``{name: leaky_relu, negative_slope: 0.2}``)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sgmod_study.config.rules import (
    Rule,
    boolean,
    bounds,
    check_value,
    choice,
    integer,
    join,
    named,
    non_negative,
    nullable,
    number,
    optional,
    positive,
    text,
)
from sgmod_study.errors import ConfigError
from sgmod_study.nn.activation_configs import check_search
from sgmod_study.nn.activations import GAIN_KEY, IMPLEMENTATIONS, INIT_STRATEGIES, SEARCH_KEY, TARGET_KEY
from sgmod_study.nn.norms import PLACEMENTS

ACTIVATION_OPTIMIZER = {  # gamma/beta's (or PReLU's slopes') own optimizer parameter group
    "lr": nullable(positive()),
    "lr_mult": positive(),
    "weight_decay": non_negative(),
}
ACTIVATIONS: dict[str, dict[str, Rule]] = {
    "sgmod": {
        "gamma_init": number(),
        "beta_init": number(),
        "init": choice(*INIT_STRATEGIES),
        "init_std": non_negative(),
        "per_channel": boolean(),
        "learn_gamma": boolean(),
        "learn_beta": boolean(),
        "gamma_bounds": bounds(),
        "beta_bounds": bounds(),
        **ACTIVATION_OPTIMIZER,
        "impl": choice(*IMPLEMENTATIONS),
    },
    "prelu": {"init": number(), "per_channel": boolean(), **ACTIVATION_OPTIMIZER},
    "relu": {},
    "leaky_relu": {"negative_slope": number()},
    "elu": {"alpha": number()},
    "selu": {},
    "gelu": {"approximate": choice("none", "tanh")},
    "silu": {},
    "mish": {},
    "sigmoid": {},
    "tanh": {},
}
for _settings in ACTIVATIONS.values():  # any activation may state its gain for model.init
    _settings[GAIN_KEY] = optional(positive())

NORMS: dict[str, dict[str, Rule]] = {
    "batch": {"placement": choice(*PLACEMENTS)},
    "layer": {"placement": choice(*PLACEMENTS)},
    "group": {"placement": choice(*PLACEMENTS), "groups": integer(1)},
    "none": {"placement": choice(*PLACEMENTS)},
}


# An activation of your own: ``target: package.module:Factory`` (README, "Add your activation").
# Its options are the factory's arguments, unknown here beyond being plain values: the factory
# checks them when the activation is built. Whether the target imports is found out there too.
_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _is_plain(value) -> bool:
    if isinstance(value, list):
        return all(map(_is_plain, value))
    return value is None or isinstance(value, (bool, int, float, str))


TARGET_ACTIVATION = {
    "name": text(),
    TARGET_KEY: Rule(
        "'package.module:Factory', an importable module and a callable in it",
        lambda v: isinstance(v, str) and _TARGET.fullmatch(v) is not None,
    ),
    **{key: optional(rule) for key, rule in ACTIVATION_OPTIMIZER.items()},
    GAIN_KEY: optional(positive()),
}
TARGET_OPTION = Rule("a plain value (a number, a string, true or false, null, or a list of those)", _is_plain)


def _init_inside_bounds(key: str, act: Mapping) -> None:
    """Sgmod's gamma_init/beta_init inside their bounds (where both are set)."""
    for which in ("gamma", "beta"):
        init, limits = act.get(f"{which}_init"), act.get(f"{which}_bounds")
        if init is None or limits is None:
            continue
        lo, hi = (float(b) for b in limits)
        if not lo <= init <= hi:
            raise ConfigError(
                f"{key}.{which}_init={init} is outside its allowed range [{lo}, {hi}] "
                f"({key}.{which}_bounds sets the range)"
            )


def activation(partial: bool = False) -> Rule:
    """The activation group: a name of ``ACTIVATIONS`` with its settings, or (with ``target`` set)
    an activation of your own; either may declare ``search`` (what a study of it searches)."""
    built_in = named(ACTIVATIONS, partial=partial, check=_init_inside_bounds)

    def check_activation(key: str, value) -> None:
        if not isinstance(value, Mapping) or value.get(TARGET_KEY) is None:
            built_in.group(key, _settings_of_built_in(value))
        else:
            _check_target_activation(key, value)
        if isinstance(value, Mapping) and value.get(SEARCH_KEY) is not None:
            options = [k for k in value if k not in ("name", TARGET_KEY, SEARCH_KEY, GAIN_KEY)]
            check_search(f"{key}.{SEARCH_KEY}", value[SEARCH_KEY], options)

    return Rule("a group of settings with a name", group=check_activation)


def _settings_of_built_in(value):
    """A built-in activation's settings: without ``search`` and an unset ``target``."""
    if not isinstance(value, Mapping):
        return value
    return {k: v for k, v in value.items() if k not in (SEARCH_KEY, TARGET_KEY)}


def _check_target_activation(key: str, act: Mapping) -> None:
    if "name" not in act:
        raise ConfigError(f"{key}.name is missing: it must be {TARGET_ACTIVATION['name'].allowed}")
    for option, value in act.items():
        if option != SEARCH_KEY:
            check_value(join(key, option), value, TARGET_ACTIVATION.get(option, TARGET_OPTION))


ACTIVATION = activation()
NORM = named(NORMS)
# A DCGAN network's own activation and norm: the selected groups, or a partial node such as
# {name: leaky_relu, negative_slope: 0.2} whose missing settings take the builders' defaults.
NETWORK_ACTIVATION = activation(partial=True)
NETWORK_NORM = named(NORMS, partial=True)
