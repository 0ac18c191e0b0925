"""Failures the toolkit reports as one line, each with its own exit code (the sweeper reads them)."""

import sys
from typing import NoReturn

EXIT_CONFIG, EXIT_DIVERGED, EXIT_PRUNED = 2, 3, 4
EXIT_DISK = 5  # the output folder cannot be written: a full disk, a read-only mount, no permission
# stopped by a signal, last.ckpt written: 128 + the signal's number, as a shell reports a process it killed
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class ConfigError(ValueError):
    """A configuration value (or a missing resource it points to) that cannot be used. Exit code 2."""


class TrainingDiverged(RuntimeError):
    """Training went non-finite or collapsed; the run stops instead of burning its budget. Exit code 3."""


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not a known choice; valid choices: {', '.join(sorted(choices))}")


def check_bool(key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not allowed: it must be true or false")


def check_positive(key: str, value) -> None:
    if value is None or not value > 0:
        raise ConfigError(f"{key}={value!r} is not allowed: it must be a number > 0")


def check_non_negative(key: str, value) -> None:
    if value is None or not value >= 0:
        raise ConfigError(f"{key}={value!r} is not allowed: it must be a number >= 0")


def exit_with(prefix: str, err: BaseException, code: int) -> NoReturn:
    """Print ``prefix: message`` as one line on stderr and exit with ``code`` (no traceback)."""
    print(f"{prefix}: {err}", file=sys.stderr)
    raise SystemExit(code) from None
