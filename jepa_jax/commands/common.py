"""Flags and set-up shared by the commands."""

from __future__ import annotations

import os

from absl import flags, logging
from ml_collections import config_flags

from jepa_jax.errors import ConfigError


def quiet_logging_unless_asked() -> None:
    """Show only warnings from libraries (orbax logs every save at INFO) unless -v or
    `jepa-jax --verbose` was given."""
    from jepa_jax import startup

    if startup.verbose() and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
    elif not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def directory_flag(flag_name: str) -> str:
    """The value of a directory flag, or ConfigError when it is empty (`--workdir=`)."""
    value = flags.FLAGS[flag_name].value
    if value is None or not str(value).strip():
        raise ConfigError(f"--{flag_name}={value!r} is empty: expected a directory path")
    return str(value)


def loaded_config(flag_name: str = "config"):
    """The parsed config of a config_flags flag, or ConfigError if its file does not exist
    (ml_collections defers that failure to first use, with a long traceback)."""
    # The flag holds "file.py[:arg]"; only the file part must exist.
    path = config_flags.get_config_filename(flags.FLAGS[flag_name])
    if ".py:" in path:
        path = path[: path.index(".py:") + 3]
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path!r} (from --{flag_name})")
    return flags.FLAGS[flag_name].value
