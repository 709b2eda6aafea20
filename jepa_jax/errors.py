"""Errors the CLI reports as one line, without a traceback.

`ConfigError` is bad user input (exit status 2); `RunError` is a run that cannot go on through no
fault of the command line (a diverged loss, a failed checkpoint save; exit status 1).
"""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the bad value and what is
    valid."""


class RunError(RuntimeError):
    """A run stopped by a fault; the message names the step, what went wrong and the last good
    checkpoint, so the user knows what to change and where the run resumes from."""


def need(cond: bool, key: str, value: object, expected: str) -> None:
    """Raise ConfigError "config.<key>=<value> is invalid: expected <expected>" unless `cond`."""
    if not cond:
        raise ConfigError(f"config.{key}={value!r} is invalid: expected {expected}")


def need_under(section: str):
    """`need` for the keys of one config section: need_under("probe")(cond, "num_train", v, e)
    names config.probe.num_train."""

    def need_in_section(cond: bool, key: str, value: object, expected: str) -> None:
        need(cond, f"{section}.{key}", value, expected)

    return need_in_section
