"""Flags and set-up shared by the commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

from jepa_jax.errors import ConfigError


def start_command(argv: list[str]) -> None:
    """What every command's main does first: reject stray positional arguments (absl passes
    them through), then show only warnings from libraries (orbax logs every save at INFO)
    unless -v or `jepa-jax --verbose` was given."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jepa_jax import startup

    if startup.verbose() and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.INFO)
    elif not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def define_config_flag(help_text: str, default: str | None = None) -> None:
    """The --config flag: a config file `configs/<file>.py[:arg]` whose fields can be overridden
    with --config.<key>=<value> (locked: an override of an unknown key is an error)."""
    config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)


# True once `override_run_config` made --config the run's own config (one command per process).
_RUN_CONFIG_AS_FLAG = False


def flag_value(args: list[str], name: str) -> str | None:
    """The value of --name=V or --name V in command-line args (absl's two spellings), or None."""
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
        if a == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return None


def override_run_config(args: list[str], run_flags: tuple[str, ...], load_run: Callable) -> None:
    """For commands that fall back to a training run's config.json (eval, plan): before absl
    parses `args`, when they hold --config.<key> overrides but no --config, make --config the
    run's config (`load_run(path)`, path the first of `run_flags` given), so the overrides apply
    to it with ml_collections' parsing and checks, as they would to a config file's."""
    global _RUN_CONFIG_AS_FLAG
    if flag_value(args, "config") is not None or not any(a.startswith("--config.") for a in args):
        return
    path = next((v for v in (flag_value(args, f) for f in run_flags) if v), None)
    if path is None:
        return  # absl then names the missing flag
    config = load_run(path)
    delattr(flags.FLAGS, "config")
    config_flags.DEFINE_config_dict(
        "config", config, "The training run's config.json, with overrides.", lock_config=True
    )
    _RUN_CONFIG_AS_FLAG = True


def config_or_run_config(load_run: Callable[[], Any]) -> Any:
    """The command's config: --config's (a file, or the run's config with overrides, see
    `override_run_config`), else `load_run()` (the run's config.json as it is)."""
    if _RUN_CONFIG_AS_FLAG:
        return flags.FLAGS.config
    if flags.FLAGS["config"].value is not None:
        return loaded_config()
    return load_run()


def define_export_flags() -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """--out (required) and --overwrite, the flags of the commands that write an export
    directory (`export`, `import`)."""
    out = flags.DEFINE_string("out", None, "Export directory to write.")
    overwrite = flags.DEFINE_boolean("overwrite", False, "Replace an existing export at --out.")
    flags.mark_flag_as_required("out")
    return out, overwrite


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
