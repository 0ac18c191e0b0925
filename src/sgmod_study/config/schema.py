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
anyway. So the rules live here, read top to bottom, and the YAML files stay plain: the Rule type,
its builders and the check of a group in ``rules.py``, the activation and norm groups in
``activation_rules.py``, each task's settings, models and metrics in ``sgmod_study.tasks.registry``.

The schema checks the configuration, not the machine: whether a GPU is there, a dataset is
on disk or a checkpoint fits the model is found out where those things are used.

``hydra_error_line`` turns Hydra's and OmegaConf's own errors (unknown group option or key,
unparsable override, unresolvable interpolation) into the same kind of single line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import lightning as L
from hydra.errors import MissingConfigException, OverrideParseException
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from sgmod_study.config.activation_rules import ACTIVATION, NETWORK_ACTIVATION, NETWORK_NORM, NORM
from sgmod_study.config.rules import (
    Rule,
    batches,
    betas,
    boolean,
    check_group,
    choice,
    devices,
    fraction,
    group,
    int_list,
    integer,
    max_steps,
    metric_names,
    named,
    non_negative,
    nullable,
    number,
    optional,
    positive,
    text,
)
from sgmod_study.data import DATASETS, SCALINGS
from sgmod_study.errors import ConfigError
from sgmod_study.nn.init import INITS
from sgmod_study.tasks.optim import OPTIMIZERS
from sgmod_study.tasks.registry import TASKS


def _nesterov_needs_momentum(key: str, opt: Mapping) -> None:
    if opt.get("nesterov") and not opt.get("momentum"):
        raise ConfigError(
            f"{key}.nesterov=true needs {key}.momentum > 0, got {opt.get('momentum')}; "
            f"set {key}.momentum (e.g. 0.9) or {key}.nesterov=false"
        )


# -- the table

INIT = {"init": optional(choice(*INITS))}  # absent in configs written before it: PyTorch's default
MODELS: dict[str, dict[str, Rule]] = {
    "cnn": {"channels": int_list(1), "hidden": integer(1), "dropout": fraction(), **INIT},
    "mlp": {"depth": integer(1), "width": integer(1), "dropout": fraction(), **INIT},
    "resnet": {"channels": int_list(1), "blocks_per_stage": integer(1), "dropout": fraction(), **INIT},
    "dcgan": {
        **INIT,
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
    "max_steps": optional(max_steps()),
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


class TaskSettings(Mapping):
    """The ``task`` group's options: each registered task's ``task.*`` rules, read from the
    registry when a config is checked (so a task added to ``TASKS`` is known here at once)."""

    def __getitem__(self, name: str) -> Mapping[str, Rule]:
        return TASKS[name].rules()

    def __iter__(self) -> Iterator[str]:
        return iter(TASKS)

    def __len__(self) -> int:
        return len(TASKS)


# speed.compile: torch.compile's modes ("reduce-overhead" adds CUDA graphs), which training.apply_speed passes on
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
    "task": named(TaskSettings()),
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
    "diagnostics": group({"every_n_steps": nullable(integer(0)), "steps": nullable(int_list(0))}),
    "optimized_metric": metric_names(),
    "checkpoint": group({"monitor": text(), "mode": choice("min", "max")}),
    "ckpt_path": nullable(text()),
    "output_dir": text(),
}


# -- checking


def check_config(c: Mapping) -> None:
    """Raise ConfigError naming the first key of the resolved config ``c`` that breaks the schema."""
    check_group("", c, CONFIG, "the config")
    _check_task_model(c["task"]["name"], c["model"]["name"])
    _check_metrics(c)


def _check_task_model(task: str, model: str) -> None:
    if model not in TASKS[task].models:
        raise ConfigError(f"task={task} needs {TASKS[task].models_text}, got model={model}")


def _check_metrics(c: Mapping) -> None:
    """optimized_metric and checkpoint.monitor must be metrics the task logs (else a whole run
    trains before the missing value is noticed)."""
    task = c["task"]["name"]
    logged = TASKS[task].logged()
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
