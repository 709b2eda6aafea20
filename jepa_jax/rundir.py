"""What a training workdir holds besides checkpoints: the config the run was started with.

`jepa-jax train` writes `<workdir>/config.json` when it starts, so commands that only get a
workdir (`jepa-jax export`, `jepa-jax eval --checkpoint=<workdir>`) can rebuild the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from jepa_jax.errors import ConfigError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def write_json_atomic(path: str, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` via a temporary file and `os.replace`, so readers
    never see a half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def run_root(path: str) -> str:
    """The training workdir of `path`: the workdir itself or its checkpoints/ directory."""
    path = os.path.abspath(path)
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
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path!r} not found: {workdir!r} is not a jepa-jax training workdir (expected "
            f"{CONFIG_FILE} and {CHECKPOINT_DIR}/ written by `jepa-jax train`)"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))
