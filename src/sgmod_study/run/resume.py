"""The configuration of a resumed run: the checkpoint's own, with the command line's changes that
a resume may make.

``python src/train.py ckpt_path=<run>/checkpoints/last.ckpt`` alone continues the run as it was
configured. Options given with it that say how and where it runs and logs (``MAY_CHANGE``:
``trainer.max_epochs``, the device, the logger ...) are applied; options that decide what is
trained (the model, the data, the optimizer and its schedule, whose state the checkpoint restores,
the seed) are refused when they differ from the checkpoint's, with one line naming each.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgmod_study.errors import ConfigError
from sgmod_study.run.cli import hydra_value, shown_path
from sgmod_study.run.diagnostics import flatten_config
from sgmod_study.tasks.checkpoints import saved_config

# Where the data are on this machine: not in a checkpoint, so a resume command repeats them.
WHERE_DATA_ARE = ("data.data_dir", "data.system_dir", "data.num_workers")
# Config entries that say where things are, not how the model was trained: not in a checkpoint.
NOT_HYPERPARAMETERS = ("output_dir", "ckpt_path", *WHERE_DATA_ARE)
# What a resumed run may change: how and where it runs and logs.
MAY_CHANGE = ("trainer.", "logger.", "diagnostics.", "speed.", "optimized_metric", "data.on_device")
_ABSENT = object()


@dataclass
class CommandLine:
    """What the command line of a run said: its overrides and the config keys they set or changed."""

    overrides: list[str] = field(default_factory=list)
    given: set[str] | None = None  # None: a config composed in Python, where every key counts as given

    @classmethod
    def from_hydra(cls, cfg) -> CommandLine:
        """The running Hydra app's task overrides; ``given``: the keys they name, and those whose value
        differs from the config composed without them (what a group override such as trainer=cpu set)."""
        from hydra import compose
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        hydra = HydraConfig.get()
        # as typed: `seed=${oops}` is an interpolation inside Hydra's own config too
        overrides = OmegaConf.to_container(hydra.overrides.task, resolve=False)
        if cfg.get("ckpt_path") is None:  # only a resume reads them: no second composition for other runs
            return cls(overrides, set())
        # unresolved: a bad interpolation is reported where the run resolves its config, naming its key
        current = flatten_config(OmegaConf.to_container(cfg, resolve=False))
        plain = flatten_config(OmegaConf.to_container(compose(hydra.job.config_name, overrides=[]), resolve=False))
        given = {key for key, value in current.items() if plain.get(key, _ABSENT) != value}
        for override in OverridesParser.create().parse_overrides(overrides):
            name = override.key_or_group
            given |= {key for key in current if key == name or key.startswith(name + ".")}
        return cls(overrides, given)

    def resume_command(self, ckpt_path: Path, script: str) -> str:
        """The command that resumes from ``ckpt_path``: the checkpoint, and where the data are (not in it)."""
        data = [o for o in self.overrides if o.lstrip("+~").split("=")[0] in WHERE_DATA_ARE]
        checkpoint = shlex.quote(f"ckpt_path={hydra_value(shown_path(ckpt_path))}")
        return " ".join(["python", script, checkpoint, *map(shlex.quote, data)])


def resumed_config(c: Mapping, checkpoint: Mapping, ckpt_path: str, given: set[str] | None) -> dict:
    """The checkpoint's config, with the given keys (None: every key of ``c``) that may change taken
    from ``c``, where the data are and settings newer than the checkpoint too. A given key that may
    not change and differs from the checkpoint's value is refused (``ConfigError``)."""
    saved = checkpoint["hyper_parameters"]
    current = flatten_config(c)
    given = set(current) if given is None else given
    if "task.name" in given and saved["task.name"] != current["task.name"]:
        raise ConfigError(
            f"ckpt_path={ckpt_path} is a checkpoint of task={saved['task.name']}, not of task={current['task.name']}: "
            f"leave task= out to resume it, or give a {current['task.name']} checkpoint"
        )
    resumed = saved_config(checkpoint)
    for key in current:
        if key.startswith(NOT_HYPERPARAMETERS):
            _set(resumed, key, _get(c, key))
    _add_missing(resumed, c)
    refused = []
    for key in sorted(given & current.keys()):
        if key.startswith(NOT_HYPERPARAMETERS):
            continue
        if key.startswith(MAY_CHANGE):
            _set(resumed, key, _get(c, key))
        elif saved.get(key, _ABSENT) != current[key]:
            refused.append(key)
    if refused:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: a resumed run keeps the model, data, optimizer and seed of its checkpoint; "
            f"these overrides differ from it: {', '.join(_differences(refused, saved, current))} (leave them "
            f"out: ckpt_path alone resumes with the checkpoint's configuration; to change them, start a new run)"
        )
    return resumed


def _differences(keys: list[str], saved: Mapping, current: Mapping) -> list[str]:
    """``key=given (checkpoint: value)`` for each key; one entry for a section whose option differs
    (model=mlp on a cnn checkpoint), not one for each of its keys."""
    other_options = [key.removesuffix("name") for key in keys if key.endswith(".name")]
    entries = []
    for key in keys:
        section = next((prefix for prefix in other_options if key.startswith(prefix)), None)
        if section is not None and key != section + "name":
            continue
        shown = section[:-1] if section else key
        entries.append(f"{shown}={_text(current[key])} (checkpoint: {_text(saved.get(key, _ABSENT))})")
    return entries


def _text(value: Any) -> str:
    """A value as an override would write it."""
    if value is _ABSENT:
        return "not set"
    if value is None or value == "None":
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _add_missing(resumed: dict, current: Mapping) -> None:
    """Settings the checkpoint lacks (newer than it) from ``current``; not into a section of
    another option (a checkpoint's model=mlp has no model.channels)."""
    for key, value in current.items():
        if key not in resumed:
            resumed[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(resumed[key], dict):
            if value.get("name") == resumed[key].get("name"):
                _add_missing(resumed[key], value)


def _get(config: Mapping, key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return copy.deepcopy(config)


def _set(config: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        config = config.setdefault(part, {})
    config[leaf] = value
