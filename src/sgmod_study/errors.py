"""The one exception type for bad user input: train.py prints its message as a single line."""


class ConfigError(ValueError):
    """A configuration value (or a missing resource it points to) that cannot be used."""


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not a known choice; valid choices: {', '.join(sorted(choices))}")


def check_positive(key: str, value) -> None:
    if value is None or not value > 0:
        raise ConfigError(f"{key}={value!r} is not allowed: it must be a number > 0")


def check_non_negative(key: str, value) -> None:
    if value is None or not value >= 0:
        raise ConfigError(f"{key}={value!r} is not allowed: it must be a number >= 0")
