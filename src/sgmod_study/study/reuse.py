"""Whether a user's own activation may be compared with a study's committed baselines: only when
their sweeps ran under the same fixed setup (data, model, budget, optimizer, seed), activation
aside. Checked on the records (the sweeper stores each study's fixed setup) and, before a run,
on the setup the user's sweep will have. Before any run, the same check keeps a part's record
from gaining trials made under another setup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sgmod_study.errors import ConfigError
from sgmod_study.paths import CONF_DIR
from sgmod_study.study.record import Record
from sgmod_study.study.spec import Part, Study

SETUP_ATTR = "fixed_setup"  # the sweeper's study user attribute (sgmod_study.sweeper.fixed_setup)


def differences(mine: Mapping, theirs: Mapping, activation_aside: bool = True) -> list[str]:
    """The keys both setups know whose values differ (the activation's own aside, for a reuse)."""
    shared = set(mine) & set(theirs)
    if activation_aside:
        shared -= {k for k in mine if k == "activation" or k.startswith("activation.")}
    return [f"{k}={theirs[k]} there, {mine[k]} here" for k in sorted(shared) if mine[k] != theirs[k]]


def baseline_sweeps(study: Study) -> list[str]:
    return [n for n, p in study.parts.items() if p.kind == "sweep" and n != f"sweep_{study.activation}"]


def check_reusable(study: Study, record: Record, mine: Mapping | None = None) -> None:
    """Refuse (one line, exit 2) when a baseline sweep's recorded setup differs from the user's
    sweep's: ``mine``, or the one recorded in the user's sweep."""
    if mine is None:
        mine = record.load(f"sweep_{study.activation}").user_attrs.get(SETUP_ATTR) or {}
    for name in baseline_sweeps(study):
        if not record.has_journal(name):
            raise ConfigError(
                f"--activation {study.activation}: the baseline {name} has no record in "
                f"{record.part_dir(name)}; run it first (scripts/study.py run {study.record} {name})"
            )
        differ = differences(mine, record.load(name).user_attrs.get(SETUP_ATTR) or {})
        if differ:
            raise ConfigError(
                f"--activation {study.activation}: {name}'s record was made under another fixed setup "
                f"({'; '.join(differ[:3])}): its baseline cannot be reused; run under the study's setup"
            )


def check_setups(study: Study, record: Record, parts: Sequence[Part], overrides: Sequence[str]) -> None:
    """Refuse (one line, exit 2), before any sweep starts, to add trials to a part whose record
    was made under another fixed setup: its trials and the new ones would mix."""
    for part in parts:
        recorded = record.load(part.name).user_attrs.get(SETUP_ATTR) if record.has_journal(part.name) else None
        differ = differences(planned_setup(study, part, record, overrides), recorded, False) if recorded else []
        if differ:
            raise ConfigError(
                f"part={part.name}: its record {record.part_dir(part.name)} was made under another fixed setup "
                f"({'; '.join(differ[:3])}): its trials and these would mix; run with the study's settings, "
                "or keep a new record elsewhere with --record DIR"
            )


def planned_setup(study: Study, part: Part, record: Record, overrides: Sequence[str]) -> dict:
    """The fixed setup ``part``'s sweep will record, from its composed configuration."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sgmod_study.study.choose import confirm_overrides
    from sgmod_study.sweeper.fixed_setup import fixed_setup

    chosen = confirm_overrides(record.load(part.of), part) if part.kind == "confirm" else []
    wanted = [o for o in (*study.setup_overrides(), *part.overrides, *chosen, *overrides) if not o.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(CONF_DIR.resolve()), version_base="1.3"):
        # output_dir reads Hydra's run folder, which only a run has; it is not part of the setup
        config = compose("train", overrides=[*wanted, "output_dir=."], return_hydra_config=True)
    searched = list(config.hydra.sweeper.params or {}) + [
        o.split("=", 1)[0].removeprefix("hydra.sweeper.params.") for o in part.overrides if "sweeper.params." in o
    ]
    job = OmegaConf.to_container(config, resolve=False)
    job.pop("hydra")
    return fixed_setup(OmegaConf.to_container(OmegaConf.create(job), resolve=True), searched)
