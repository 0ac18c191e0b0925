"""The schema of the composed config: every key's type, range and choices, in one table.

``check_config(c)`` takes the resolved config (``OmegaConf.to_container(cfg, resolve=True)``)
and raises ``ConfigError`` with one line naming the first bad key, its value and what is
allowed. ``training.train()`` calls it before it builds anything, and the sweeper calls it on
its first trial's config before any trial starts. The checks inside the builders
(activations.py, optim.py, ...) stay where they are as a second line of defence.

Why a table of key -> rule rather than Hydra structured configs (dataclasses in the
ConfigStore): the options of one group have different keys (``activation=sgmod`` has a dozen,
``relu`` none; ``model=cnn`` and ``model=dcgan`` share only ``name``), and the DCGAN's networks
take free-form activation/norm nodes (``{name: leaky_relu, negative_slope: 0.2}``), which
OmegaConf cannot type as a union of dataclasses. Dataclasses would also check only types:
ranges, "init inside its bounds" and "a metric the task logs" would still need code, and
their errors are multi-line OmegaConf messages. The sweeper needs a check of a plain dict
anyway. So the rules live here, read top to bottom, and the YAML files stay plain.

The schema checks the configuration, not the machine: whether a GPU is there, a dataset is
on disk or a checkpoint fits the model is found out where those things are used.

``hydra_error_line`` turns Hydra's and OmegaConf's own errors (unknown group option or key,
unparsable override, unresolvable interpolation) into the same kind of single line.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import lightning as L
from hydra.errors import MissingConfigException, OverrideParseException
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from sgmod_study.data import DATASETS, SCALINGS
from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.nn.activation_configs import check_search
from sgmod_study.nn.activations import IMPLEMENTATIONS, INIT_STRATEGIES, SEARCH_KEY, TARGET_KEY
from sgmod_study.nn.norms import PLACEMENTS
from sgmod_study.tasks.classifier import Classifier
from sgmod_study.tasks.gan import GAN, LOSSES
from sgmod_study.tasks.optim import OPTIMIZERS

MISSING = "???"  # OmegaConf's mark of a mandatory value that was never set


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


def metric_names() -> Rule:
    # which names the task logs is checked by _check_metrics once the task is known
    return Rule(
        "a metric name or a non-empty list of metric names",
        lambda v: isinstance(v, str) or (isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)),
    )


def group(rules: Mapping[str, Rule], takes_arguments_of: type | None = None) -> Rule:
    """A mapping with these settings; ``takes_arguments_of``: the class it configures, whose other
    constructor arguments are allowed too (unchecked here: the class checks them)."""
    return Rule(
        "a group of settings",
        group=lambda key, value: _check_group(key, value, rules, key, takes_arguments_of),
    )


def named(
    options: Mapping[str, Mapping[str, Rule]],
    takes_arguments_of: Callable[[str], type] | None = None,
    partial: bool = False,
    check: Callable[[str, Mapping], None] | None = None,
) -> Rule:
    """A config group: ``name`` picks one of ``options``, whose own settings apply. ``partial``:
    the settings may be left out (the builders' defaults apply); ``check``: a rule across keys."""

    def check_named(key: str, value) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}={value!r} is not allowed: it must be a group of settings with a name")
        name = value.get("name")
        check_choice(f"{key}.name", name, tuple(options))
        cls = takes_arguments_of(name) if takes_arguments_of else None
        _check_group(key, value, {"name": text(), **options[name]}, f"{key}={name}", cls, partial)
        if check is not None:
            check(key, value)

    return Rule("a group of settings with a name", group=check_named)


# -- cross-key rules


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


def _nesterov_needs_momentum(key: str, opt: Mapping) -> None:
    if opt.get("nesterov") and not opt.get("momentum"):
        raise ConfigError(
            f"{key}.nesterov=true needs {key}.momentum > 0, got {opt.get('momentum')}; "
            f"set {key}.momentum (e.g. 0.9) or {key}.nesterov=false"
        )


# -- the table

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
}
TARGET_OPTION = Rule("a plain value (a number, a string, true or false, null, or a list of those)", _is_plain)


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
            options = [k for k in value if k not in ("name", TARGET_KEY, SEARCH_KEY)]
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
            _check_value(_join(key, option), value, TARGET_ACTIVATION.get(option, TARGET_OPTION))


ACTIVATION = activation()
NORM = named(NORMS)
# A DCGAN network's own activation and norm: the selected groups, or a partial node such as
# {name: leaky_relu, negative_slope: 0.2} whose missing settings take the builders' defaults.
NETWORK_ACTIVATION = activation(partial=True)
NETWORK_NORM = named(NORMS, partial=True)

MODELS: dict[str, dict[str, Rule]] = {
    "cnn": {"channels": int_list(1), "hidden": integer(1), "dropout": fraction()},
    "mlp": {"depth": integer(1), "width": integer(1), "dropout": fraction()},
    "resnet": {"channels": int_list(1), "blocks_per_stage": integer(1), "dropout": fraction()},
    "dcgan": {
        "latent_dim": integer(1),
        "width": integer(1),
        "generator": group({"activation": NETWORK_ACTIVATION, "norm": NETWORK_NORM}),
        "discriminator": group({"activation": NETWORK_ACTIVATION, "norm": NETWORK_NORM, "spectral_norm": boolean()}),
    },
}

OPTIMIZER_SETTINGS = {"lr": positive(), "weight_decay": non_negative()}
OPTIMIZER_RULES: dict[str, dict[str, Rule]] = {
    "adam": {**OPTIMIZER_SETTINGS, "betas": betas()},
    "adamw": {**OPTIMIZER_SETTINGS, "betas": betas()},
    "sgd": {**OPTIMIZER_SETTINGS, "momentum": non_negative(), "nesterov": boolean()},
    "rmsprop": {**OPTIMIZER_SETTINGS, "alpha": non_negative(), "momentum": non_negative()},
}

SCHEDULERS: dict[str, dict[str, Rule]] = {
    "none": {},
    "cosine": {"min_lr_ratio": number(0, 1)},
    "step": {"step_size": integer(1), "factor": number(0, 1, lo_open=True)},
}

DATA = {
    "name": choice(*DATASETS),
    "data_dir": text(),
    "system_dir": optional(text()),  # Fashion-MNIST only
    "download": optional(boolean()),  # not for digits (ships with scikit-learn)
    "batch_size": integer(1),
    "val_size": integer(1),  # its upper bound depends on the dataset: data.py checks it
    "split_seed": integer(0),
    "scaling": choice(*SCALINGS),
    "augment": boolean(),
    "shift": integer(0),
    "hflip": boolean(),
    "num_workers": integer(0),
    "on_device": boolean(),
}

# Lightning's precision values (the numbers 32, 16 and 64 too, as YAML reads 32 as an int)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64")
TRAINER = {
    "accelerator": choice("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())),
    "strategy": optional(choice("auto", *StrategyRegistry.available_strategies())),
    "devices": devices(),
    # -1 (no limit) would train forever with scheduler=none; max_epochs=0 would train nothing
    "max_epochs": integer(1),
    "max_steps": optional(Rule("an integer >= 1 or -1 (no limit)", lambda v: _is_int(v) and (v >= 1 or v == -1))),
    "precision": Rule(", ".join(PRECISIONS), lambda v: str(v) in PRECISIONS, choice=True),
    "gradient_clip_val": nullable(non_negative()),
    "deterministic": Rule("true, false or 'warn'", lambda v: isinstance(v, bool) or v == "warn"),
    "log_every_n_steps": integer(1),
    "enable_progress_bar": boolean(),
    "enable_model_summary": boolean(),
    "limit_train_batches": batches(),
    "limit_val_batches": optional(batches()),  # 0 would skip the validation every metric comes from
    "limit_test_batches": optional(batches()),
    "check_val_every_n_epoch": integer(1),
}
# Constructor arguments that are never settings: lightning.Trainer's that training.py sets itself.
NOT_SETTINGS = ("self", "params", "logger", "callbacks", "plugins", "default_root_dir")

TASKS: dict[str, dict[str, Rule]] = {
    "classifier": {"label_smoothing": fraction()},
    "gan": {
        "loss": choice(*LOSSES),
        "lr_g": nullable(positive()),
        "lr_d": nullable(positive()),
        "d_steps": integer(1),
        "gp_weight": non_negative(),
        "eval_samples": integer(1),
        "kid_subset_size": integer(1),
        "grid_size": integer(1),
        "collapse_steps": integer(0),
        "collapse_loss": non_negative(),
    },
}
# Each task's LightningModule, the model names it can train and how to say so.
TASK_MODULES = {"classifier": Classifier, "gan": GAN}
TASK_MODELS = {"classifier": ("cnn", "mlp", "resnet"), "gan": ("dcgan",)}
TASK_MODELS_TEXT = {"classifier": "model=cnn, mlp or resnet", "gan": "model=dcgan or model=dcgan_baseline"}

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# Top-level keys in the order they are checked: the groups a user sets before those derived from them
# (model.generator.activation copies activation), so the first error names what was typed.
CONFIG: dict[str, Rule] = {
    "seed": integer(0, 2**32 - 1),
    "activation": ACTIVATION,
    "norm": NORM,
    "model": named(MODELS),
    "optimizer": named(OPTIMIZER_RULES, OPTIMIZERS.get, check=_nesterov_needs_momentum),
    "scheduler": named(SCHEDULERS),
    "data": group(DATA),
    "trainer": group(TRAINER, L.Trainer),
    "task": named(TASKS),
    "logger": named({"tensorboard": {}, "csv": {}}),
    "speed": group(
        {
            "compile": Rule(
                "null or false (off), " + ", ".join(COMPILE_MODES),  # true: "default"
                lambda v: v is None or isinstance(v, bool) or v in COMPILE_MODES,
                choice=True,
            ),
            "channels_last": boolean(),
        }
    ),
    "diagnostics": group({"every_n_steps": nullable(integer(0))}),
    "optimized_metric": metric_names(),
    "checkpoint": group({"monitor": text(), "mode": choice("min", "max")}),
    "ckpt_path": nullable(text()),
    "output_dir": text(),
}


# -- checking


def check_config(c: Mapping) -> None:
    """Raise ConfigError naming the first key of the resolved config ``c`` that breaks the schema."""
    _check_group("", c, CONFIG, "the config")
    _check_task_model(c["task"]["name"], c["model"]["name"])
    _check_metrics(c)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _check_group(
    prefix: str, node, rules: Mapping[str, Rule], label: str, takes_arguments_of: type | None = None, partial=False
) -> None:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{prefix}={node!r} is not allowed: it must be a group of settings")
    for key, rule in rules.items():
        if key in node:
            _check_value(_join(prefix, key), node[key], rule)
        elif rule.required and not partial:
            raise ConfigError(f"{_join(prefix, key)} is missing: it must be {_must_be(rule)}")
    arguments = _arguments(takes_arguments_of)
    for key, value in node.items():
        if key not in rules and key not in arguments:
            also = f" (or another argument of {takes_arguments_of.__name__})" if takes_arguments_of else ""
            raise ConfigError(
                f"{_join(prefix, key)}={value!r} is not a setting of {label}; its settings: "
                f"{', '.join(sorted(rules))}{also}"
            )


def _arguments(cls: type | None) -> set[str]:
    if cls is None:
        return set()
    return set(inspect.signature(cls.__init__).parameters) - set(NOT_SETTINGS)


def _check_value(key: str, value, rule: Rule) -> None:
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


def _check_task_model(task: str, model: str) -> None:
    if model not in TASK_MODELS[task]:
        raise ConfigError(f"task={task} needs {TASK_MODELS_TEXT[task]}, got model={model}")


def _check_metrics(c: Mapping) -> None:
    """optimized_metric and checkpoint.monitor must be metrics the task logs (else a whole run
    trains before the missing value is noticed)."""
    task = c["task"]["name"]
    logged = TASK_MODULES[task].LOGGED_METRICS
    names = c["optimized_metric"]
    for name in names if isinstance(names, list) else [names]:
        if name not in logged:
            raise ConfigError(
                f"optimized_metric={name!r} is not a metric task={task} logs; its metrics: {', '.join(logged)}"
            )
    during_fit = [m for m in logged if not m.startswith("test/")]
    monitor = c["checkpoint"]["monitor"]
    if monitor not in during_fit:
        raise ConfigError(
            f"checkpoint.monitor={monitor!r} is not a metric task={task} logs while training; "
            f"its metrics: {', '.join(during_fit)}"
        )


# -- Hydra's and OmegaConf's own errors as one line


def hydra_error_line(err: Exception) -> str:
    """One line for an error Hydra or OmegaConf raised while composing or resolving the config."""
    if isinstance(err, MissingConfigException):
        # hydra/launcher=slurm (or submitit_local) without its plugin, which comes with the sweep extra
        missing_plugin = "hydra/launcher/submitit_" in str(err)
        hint = " (hydra-submitit-launcher is not installed: pip install -e '.[sweep]')" if missing_plugin else ""
        if err.options and err.missing_cfg_file:
            group_name, _, option = err.missing_cfg_file.rpartition("/")
            return f"{group_name}={option!r} is not a known choice; valid choices: {', '.join(err.options)}{hint}"
        if missing_plugin:
            return " ".join(_lines(err)) + hint
    if isinstance(err, OverrideParseException):
        details = [line for line in _lines(err) if not line.startswith("Error parsing override")]
        return f"cannot parse the override {err.override!r}: {'; '.join(details)}"
    cause = err.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and "not in struct" in str(cause):
        return _unknown_key_line(err, cause)
    if isinstance(err, OmegaConfBaseException):
        first = _lines(err)[0] if _lines(err) else type(err).__name__
        return f"{err.full_key}: {first}" if getattr(err, "full_key", None) else first
    text = " ".join(_lines(err)) or type(err).__name__
    reason = _lines(cause) if cause is not None else []
    return f"{text}: {reason[0]}" if reason else text  # e.g. why an override could not be merged


def _lines(err: BaseException) -> list[str]:
    """The message's lines without Hydra's decorations (caret markers, links, search paths)."""
    lines = []
    for line in str(err).splitlines():
        line = line.strip()
        if line.startswith("Config search path"):
            break
        if line and line != "^" and not line.startswith("See https://hydra.cc"):
            lines.append(line)
    return lines


def _unknown_key_line(err: Exception, cause) -> str:
    """``foo=1`` or ``optimizer.learnig_rate=0.1``: a key the config does not have."""
    parent = cause.full_key.rpartition(".")[0]
    known = sorted(k for k in cause.parent_node.keys() if k != "hydra") if cause.parent_node is not None else []
    # Hydra's hint "To append to your config use +foo=1" ends with the override that adds the key
    hint = next((line.rpartition(" ")[2] for line in _lines(err) if line.startswith("To append")), "")
    where = f"of {parent}" if parent else "at the top level"
    added = f" (to add it anyway: {hint})" if hint else ""
    return f"{cause.full_key} is not a known setting; settings {where}: {', '.join(known)}{added}"
