"""A study's identity: its fixed setup (what every trial shares) and its search space, recorded in
the study so that a sweep under another setup or over another space cannot add its trials to it
(two experiments mixed in one study, one best trial)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, IntDistribution, distribution_to_json, json_to_distribution

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
    from sgmod_study.run.diagnostics import flatten_config

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


SPACE_ATTR = "search_space"  # the study's user attribute that records it: {parameter: its distribution as JSON}


def check_search_space(study: optuna.Study, space: Mapping[str, BaseDistribution]) -> None:
    """Record the searched parameters and their ranges in a new study; refuse a sweep that
    searches others, before it asks for a trial. Optuna itself only notices a changed range
    when a trial sets the parameter (a ValueError after the trial was created RUNNING), and
    mixing two ranges in one study would bias its sampler, importances and best trial."""
    wanted = {name: distribution_to_json(d) for name, d in sorted(space.items())}
    recorded = study.user_attrs.get(SPACE_ATTR) or _space_of_trials(study, wanted) or wanted
    differ = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
    if differ:
        shown = "; ".join(f"{k}: {_range(recorded.get(k))} there, {_range(wanted.get(k))} here" for k in differ[:3])
        raise ConfigError(
            f"hydra.sweeper.study_name={study.study_name} searched another space ({shown}): its trials and these "
            "would mix; use another hydra.sweeper.study_name, or the study's search space"
        )
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, wanted)


def _space_of_trials(study: optuna.Study, wanted: Mapping[str, str]) -> dict[str, str]:
    """A study recorded before SPACE_ATTR existed: the distributions its trials used, of the
    parameters this sweep searches (parameters a custom search space adds are not in ``wanted``)."""
    seen: dict[str, str] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, d in trial.distributions.items():
            if name in wanted:
                seen.setdefault(name, distribution_to_json(d))
    return {**wanted, **seen} if seen else {}


def _range(encoded: str | None) -> str:
    if encoded is None:
        return "not searched"
    d = json_to_distribution(encoded)
    if hasattr(d, "choices"):
        return f"choice{tuple(d.choices)}"
    scale = ", log" if getattr(d, "log", False) else ""
    step = f", step {d.step}" if getattr(d, "step", None) not in (None, 1) else ""
    kind = "int" if isinstance(d, IntDistribution) else "float"
    return f"{kind} [{d.low}, {d.high}]{scale}{step}"
