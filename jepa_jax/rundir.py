"""What a training workdir holds besides checkpoints: the config the run was started with.

`jepa-jax train` writes `<workdir>/config.json` when it starts, so commands that only get a
workdir (`jepa-jax export`, `jepa-jax eval --checkpoint=<workdir>`) can rebuild the model.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import ml_collections

from jepa_jax.errors import ConfigError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
# Each <workdir>/checkpoints/<step>/ holds these orbax items (jepa_jax.checkpoint).
STATE_ITEM = "state"
DATA_ITER_ITEM = "data_iter"


def write_json_atomic(path: str, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` via a temporary file in the same directory and
    `os.replace`: readers never see a half-written file, and a failed write leaves neither a
    partial file nor the temporary one. The package's one JSON writer."""
    fd, tmp = tempfile.mkstemp(suffix=".json.tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_json(path: str, missing: str) -> Any:
    """The JSON document at `path`; ConfigError with the message `missing` when the file does
    not exist, and one naming the path when it is not valid JSON (a truncated write)."""
    if not os.path.isfile(path):
        raise ConfigError(missing)
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        raise ConfigError(f"{path!r} is not valid JSON ({e})") from e


def _step_dir(path: str) -> tuple[str, int] | None:
    """(workdir, step) when absolute `path` is a `<workdir>/checkpoints/<step>` directory."""
    parent = os.path.dirname(path)
    if os.path.basename(parent) == CHECKPOINT_DIR and os.path.basename(path).isdigit():
        return os.path.dirname(parent), int(os.path.basename(path))
    return None


def run_root(path: str) -> str:
    """The training workdir of `path`: the workdir itself, its checkpoints/ directory or one of
    its checkpoints/<step> directories."""
    path = os.path.abspath(path)
    step_dir = _step_dir(path)
    if step_dir is not None:
        return step_dir[0]
    return os.path.dirname(path) if os.path.basename(path) == CHECKPOINT_DIR else path


def write_config(workdir: str, config: Mapping[str, Any]) -> None:
    """Save the run's config as `<workdir>/config.json` (tuples become lists)."""
    if isinstance(config, ml_collections.ConfigDict):
        data = json.loads(config.to_json_best_effort())
    else:
        data = json.loads(json.dumps(config, default=list))
    write_json_atomic(os.path.join(workdir, CONFIG_FILE), data)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a training run in `workdir` was started with.

    Raises:
      ConfigError: `workdir` has no config.json (not a training workdir, or one written before
        runs recorded their config).
    """
    path = os.path.join(workdir, CONFIG_FILE)
    missing = (
        f"{path!r} not found: {workdir!r} is not a jepa-jax training workdir (expected "
        f"{CONFIG_FILE} and {CHECKPOINT_DIR}/ written by `jepa-jax train`)"
    )
    saved = read_json(path, missing)
    return ml_collections.ConfigDict(_lists_as_tuples(_with_new_keys(saved)))


def _lists_as_tuples(tree: Any) -> Any:
    """JSON has no tuples (write_config wrote them as lists): read them back as the tuples a
    config file holds, so a restored config has the file's types, and ml_collections can
    override them from the command line (it cannot override a list)."""
    if isinstance(tree, Mapping):
        return {k: _lists_as_tuples(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return tuple(_lists_as_tuples(v) for v in tree)
    return tree


def _with_new_keys(saved: dict) -> dict:
    """The saved config plus any key this version's base config has and the run's lacks (a
    setting added since the run was started), at its default. Defaults of new settings keep the
    old behaviour, so an older run restores and plans as it trained."""
    from jepa_jax import config_lib  # local: config_lib's recipes import nothing from here

    method = saved.get("method", "jepa")
    if method not in config_lib.METHODS:
        return saved

    def merge(default: Any, value: Any, named: bool = False) -> Any:
        """`named`: the mapping's keys are names the run chose (mask groups under `blocks`), not
        settings, so the base config's own names are not added (a run with groups "future" and
        "short_range" must not gain the default's "long_range")."""
        if isinstance(default, Mapping) and isinstance(value, Mapping):
            merged = {
                k: merge(default[k], v, k == "blocks") if k in default else v
                for k, v in value.items()
            }
            if not named:
                merged.update({k: v for k, v in default.items() if k not in value})
            return merged
        return value

    return merge(config_lib.base_config(method).to_dict(), saved)


def committed_steps(workdir: str) -> list[int]:
    """Steps with a committed checkpoint in `<workdir>/checkpoints`, ascending.

    Read-only: orbax renames a save into its `<step>` directory only when it is complete, so
    in-progress saves (temporary names) of a run still training are ignored, never touched.
    """
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return []
    return sorted(
        int(name)
        for name in os.listdir(directory)
        if name.isdigit() and os.path.isdir(os.path.join(directory, name, STATE_ITEM))
    )


def find_checkpoint(path: str, step: int | None = None) -> tuple[str, int]:
    """(workdir, step) for a training workdir or its checkpoints/ directory (latest step, or
    `step`) or a `<workdir>/checkpoints/<step>` directory.

    Raises:
      ConfigError: no such directory, no committed checkpoint, or no such step.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ConfigError(f"checkpoint path not found: {path!r}")
    step_dir = _step_dir(path)
    if step_dir is not None:
        workdir, path_step = step_dir
        if step is not None and step != path_step:
            raise ConfigError(f"step {step} asked for, but {path!r} is the step-{path_step} one")
        step = path_step
    else:
        workdir = run_root(path)
    steps = committed_steps(workdir)
    if not steps:
        raise ConfigError(
            f"{workdir!r} holds no committed checkpoint (expected {CHECKPOINT_DIR}/<step>/"
            f"{STATE_ITEM} written by `jepa-jax train`)"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ConfigError(f"no checkpoint at step {step} in {workdir!r}; it has steps {steps}")
    return workdir, step
