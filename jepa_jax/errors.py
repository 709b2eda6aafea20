"""Errors for bad user input. The CLI prints these as one line (no traceback) and exits 2."""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the bad value and what is
    valid."""
