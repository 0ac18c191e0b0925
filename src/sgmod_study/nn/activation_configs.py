"""What an activation's config file declares for a study, read without torch.

``conf/activation/NAME.yaml`` may declare ``search:``, a mapping from an option of the activation
(a key set in that same file) to a sweep range in the sweeper's grammar, e.g.::

    search:
      alpha_init: tag(log, interval(0.5, 4.0))

A study of NAME searches these besides the network's ``optimizer.lr`` and
``optimizer.weight_decay``: ``declared_search(NAME, conf_dir)`` gives them as the sweeper's
parameters, ``{"activation.alpha_init": "tag(log, interval(0.5, 4.0))"}``. Building the
activation ignores ``search`` (sgmod_study.nn.activations.build_activation).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from sgmod_study.errors import ConfigError, check_choice

SEARCH_EXAMPLE = "e.g. search: {alpha_init: 'tag(log, interval(0.5, 4.0))'}"
# Keys of an activation config that are no option a study can search.
NOT_OPTIONS = ("name", "target", "search", "defaults")


def activation_names(conf_dir: Path) -> list[str]:
    """The activations of ``conf_dir/activation/``: one per YAML file."""
    return sorted(path.stem for path in (Path(conf_dir) / "activation").glob("*.yaml"))


def declared_search(name: str, conf_dir: Path) -> dict[str, str]:
    """The sweep parameters ``conf_dir/activation/<name>.yaml`` declares under ``search``, as
    ``{"activation.<option>": "<range>"}`` ({} when it declares none). An unknown ``name`` or a
    malformed ``search`` raises ``ConfigError`` with one line naming it."""
    path = Path(conf_dir) / "activation" / f"{name}.yaml"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        check_choice("activation", name, activation_names(conf_dir))  # raises: not one of the files
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path} is not allowed: it must be a mapping of the activation's settings")
    search = config.get("search")
    if search is None:
        return {}
    try:
        check_search("activation.search", search, [key for key in config if key not in NOT_OPTIONS])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return {f"activation.{option}": value for option, value in search.items()}


def check_search(key: str, search, options: list[str]) -> None:
    """``search`` (the setting ``key``, e.g. ``activation.search``) maps options of the activation
    (``options``) to sweep ranges; else one ``ConfigError`` line naming the bad entry."""
    if not isinstance(search, Mapping):
        raise ConfigError(
            f"{key}={search!r} is not allowed: it must be a mapping from an option of the activation "
            f"to a sweep range, {SEARCH_EXAMPLE}"
        )
    for option, value in search.items():
        if option not in options:
            raise ConfigError(
                f"{key}.{option} is not an option set in the activation's config; its options: "
                f"{', '.join(sorted(map(str, options))) or 'none'} (set the option's default next to its range)"
            )
        if not isinstance(value, str) or not _is_sweep(f"activation.{option}={value}"):
            raise ConfigError(
                f"{key}.{option}={value!r} is not allowed: it must be a sweep range as a string, such as "
                "interval(low, high), tag(log, interval(low, high)), range(start, stop) or choice(a, b)"
            )


def _is_sweep(override: str) -> bool:
    """Whether Hydra's override parser reads ``override`` as a sweep (not a plain value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except HydraException:  # unparsable, or a function called wrongly
        return False
