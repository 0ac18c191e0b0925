"""A study's fixed setup: what every trial shares, recorded in the study so that a sweep under
another setup cannot add its trials to it (two experiments mixed in one study, one best trial)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import optuna

from sgmod_study.errors import ConfigError

# Settings that say how a trial runs or logs, not what it computes: a study may go on with others.
HOW_NOT_WHAT = (
    "output_dir",
    "ckpt_path",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "data.on_device",
    "data.num_workers",
    "data.data_dir",
    "data.system_dir",
    "data.download",
    "speed.",
    "diagnostics.",
    "logger.",
)
SETUP_ATTR = "fixed_setup"  # the study's user attribute that records it


def fixed_setup(config: Mapping, searched: Sequence[str]) -> dict:
    """What every trial of a study shares: the trial config's flat entries, less the searched ones
    (a searched config group, e.g. ``activation``, takes all its keys) and the HOW_NOT_WHAT ones."""
    from sgmod_study.diagnostics import flatten_config

    def is_searched(key: str) -> bool:
        return any(key == s or key.startswith(f"{s}.") for s in searched)

    flat = flatten_config(config)
    return {k: v for k, v in sorted(flat.items()) if not is_searched(k) and not k.startswith(HOW_NOT_WHAT)}


def check_fixed_setup(study: optuna.Study, setup: Mapping | None) -> None:
    """Record the fixed setup in a new study; refuse to add trials run under another one, which
    would silently mix two experiments in one study, its best trial and its tables."""
    if setup is None:
        return
    recorded = study.user_attrs.get(SETUP_ATTR)
    if recorded is None:
        study.set_user_attr(SETUP_ATTR, dict(setup))
        return
    # only keys both know: a setting added to the configs later (with a default that keeps the old
    # behaviour, the project's rule) must not lock every committed study
    differ = sorted(k for k in set(recorded) & set(setup) if recorded[k] != setup[k])
    if differ:
        shown = "; ".join(f"{k}={recorded[k]} there, {setup[k]} here" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(
            f"hydra.sweeper.study_name={study.study_name} was run under another fixed setup ({shown}{more}): "
            "its trials and these would mix; use another hydra.sweeper.study_name, or the study's settings"
        )
