"""What a config key may hold (``Rule``), the builders of rules, and the check of a group of keys.

A rule says in words what a key may hold ("a number > 0"): that text completes every error
about the key, "<key>=<value> is not allowed: it must be <allowed>". ``check_group`` and
``check_value`` walk a mapping of keys against its rules and raise ``ConfigError`` with one line
naming the first bad key. The groups' own rules are in ``schema.py`` and ``activation_rules.py``.

Imports no torch: the task registry (``sgmod_study.tasks.registry``) writes its settings' rules
with these builders.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sgmod_study.errors import ConfigError, check_choice

MISSING = "???"  # OmegaConf's mark of a mandatory value that was never set
# Constructor arguments that are never settings: lightning.Trainer's that training.py sets itself.
NOT_SETTINGS = ("self", "params", "logger", "callbacks", "plugins", "default_root_dir")


@dataclass(frozen=True)
class Rule:
    """What one key may hold. ``allowed`` completes the sentence "it must be ..."."""

    allowed: str
    test: Callable[[Any], bool] = lambda value: True
    choice: bool = False  # a bad value is "not a known choice; valid choices: <allowed>"
    required: bool = True
    # a group of settings (a mapping) checked by this function, called with (key, value)
    group: Callable[[str, Any], None] | None = None


# -- rule builders


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"{'<' if hi_open else '<='} {hi}" if hi is not None else ""


def _in_range(value, lo, hi, lo_open: bool, hi_open: bool) -> bool:
    above = lo is None or (value > lo if lo_open else value >= lo)
    below = hi is None or (value < hi if hi_open else value <= hi)
    return above and below


def number(lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False) -> Rule:
    text = _range_text(lo, hi, lo_open, hi_open)
    return Rule(f"a number {text}".strip(), lambda v: _is_number(v) and _in_range(v, lo, hi, lo_open, hi_open))


def integer(lo=None, hi=None) -> Rule:
    text = _range_text(lo, hi, False, False)
    return Rule(f"an integer {text}".strip(), lambda v: _is_int(v) and _in_range(v, lo, hi, False, False))


def positive() -> Rule:
    return number(0, lo_open=True)


def non_negative() -> Rule:
    return number(0)


def fraction() -> Rule:
    """A probability-like value in [0, 1): dropout, label smoothing."""
    return number(0, 1, hi_open=True)


def boolean() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def choice(*options: str) -> Rule:
    # the wording and order of errors.check_choice, which the builders use
    return Rule(", ".join(sorted(options)), lambda v: v in options, choice=True)


def text() -> Rule:
    return Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")


def nullable(rule: Rule) -> Rule:
    return replace(rule, allowed=f"null or {rule.allowed}", test=lambda v: v is None or rule.test(v))


def optional(rule: Rule) -> Rule:
    return replace(rule, required=False)


def int_list(lo: int) -> Rule:
    return Rule(
        f"a non-empty list of integers >= {lo}, e.g. [32, 64]",
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(x) and x >= lo for x in v),
    )


def bounds() -> Rule:
    return Rule(
        "null or a list [low, high] of two numbers with low < high",
        lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)) and v[0] < v[1]),
    )


def betas() -> Rule:
    return Rule(
        "a list [beta1, beta2] of two numbers in [0, 1)",
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) and 0 <= x < 1 for x in v),
    )


def batches() -> Rule:
    """Lightning's limit_*_batches: a fraction of the batches or a number of them; 0 would train nothing."""
    return Rule(
        "a fraction in (0, 1] or a number of batches >= 1",
        lambda v: (isinstance(v, float) and 0 < v <= 1) or (_is_int(v) and v >= 1),
    )


def devices() -> Rule:
    return Rule(
        "an integer >= 1, -1 (all), 'auto', a list of device indices or a string such as '0,1'",
        lambda v: (
            (_is_int(v) and (v >= 1 or v == -1))
            or (isinstance(v, str) and v != "")
            or (isinstance(v, list) and len(v) > 0 and all(_is_int(x) and x >= 0 for x in v))
        ),
    )


def max_steps() -> Rule:
    return Rule("an integer >= 1 or -1 (no limit)", lambda v: _is_int(v) and (v >= 1 or v == -1))


def metric_names() -> Rule:
    # which names the task logs is checked by schema._check_metrics once the task is known
    return Rule(
        "a metric name or a non-empty list of metric names",
        lambda v: isinstance(v, str) or (isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)),
    )


def group(rules: Mapping[str, Rule], takes_arguments_of: type | None = None) -> Rule:
    """A mapping with these settings; ``takes_arguments_of``: the class it configures, whose other
    constructor arguments are allowed too (unchecked here: the class checks them)."""
    return Rule(
        "a group of settings",
        group=lambda key, value: check_group(key, value, rules, key, takes_arguments_of),
    )


def named(
    options: Mapping[str, Mapping[str, Rule]],
    takes_arguments_of: Callable[[str], type] | None = None,
    partial: bool = False,
    check: Callable[[str, Mapping], None] | None = None,
) -> Rule:
    """A config group: ``name`` picks one of ``options``, whose own settings apply. ``partial``:
    the settings may be left out (the builders' defaults apply); ``check``: a rule across keys.
    ``options`` is read when a config is checked, so it may be a live view (the registered tasks)."""

    def check_named(key: str, value) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}={value!r} is not allowed: it must be a group of settings with a name")
        name = value.get("name")
        check_choice(f"{key}.name", name, tuple(options))
        cls = takes_arguments_of(name) if takes_arguments_of else None
        check_group(key, value, {"name": text(), **options[name]}, f"{key}={name}", cls, partial)
        if check is not None:
            check(key, value)

    return Rule("a group of settings with a name", group=check_named)


# -- checking


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def check_group(
    prefix: str, node, rules: Mapping[str, Rule], label: str, takes_arguments_of: type | None = None, partial=False
) -> None:
    """Every key of ``rules`` in ``node`` (``label`` names the group in errors), and no other key
    than those and the constructor arguments of ``takes_arguments_of``."""
    if not isinstance(node, Mapping):
        raise ConfigError(f"{prefix}={node!r} is not allowed: it must be a group of settings")
    for key, rule in rules.items():
        if key in node:
            check_value(join(prefix, key), node[key], rule)
        elif rule.required and not partial:
            raise ConfigError(f"{join(prefix, key)} is missing: it must be {_must_be(rule)}")
    arguments = _arguments(takes_arguments_of)
    for key, value in node.items():
        if key not in rules and key not in arguments:
            also = f" (or another argument of {takes_arguments_of.__name__})" if takes_arguments_of else ""
            raise ConfigError(
                f"{join(prefix, key)}={value!r} is not a setting of {label}; its settings: "
                f"{', '.join(sorted(rules))}{also}"
            )


def _arguments(cls: type | None) -> set[str]:
    if cls is None:
        return set()
    return set(inspect.signature(cls.__init__).parameters) - set(NOT_SETTINGS)


def check_value(key: str, value, rule: Rule) -> None:
    if value == MISSING:
        raise ConfigError(f"{key} has no value (???): it must be {_must_be(rule)}")
    if rule.group is not None:
        rule.group(key, value)
    elif rule.choice and not rule.test(value):
        raise ConfigError(f"{key}={value!r} is not a known choice; valid choices: {rule.allowed}")
    elif not rule.test(value):
        raise ConfigError(f"{key}={value!r} is not allowed: it must be {rule.allowed}")


def _must_be(rule: Rule) -> str:
    return f"one of {rule.allowed}" if rule.choice else rule.allowed
