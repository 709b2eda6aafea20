"""JAX's persistent compilation cache: a second launch of the same recipe and mesh loads every
executable instead of compiling it, and the setting resolves to the documented directories."""

import os
import re

from conftest import REPO
from helpers import cli

from jepa_jax import compile_cache

SMOKE = os.path.join(REPO, "configs", "default.py") + ":runlocal"


def loaded_and_compiled(stdout: str) -> tuple[int, int]:
    match = re.search(r"compile cache .*: (\d+) compilations loaded, (\d+) compiled", stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


def test_second_launch_loads_every_compilation_from_the_cache(tmp_path):
    cache = str(tmp_path / "shared_cache")
    args = [
        "train",
        f"--config={SMOKE}",
        "--config.total_steps=2",
        "--config.probe.enabled=False",
        f"--config.compile_cache_dir={cache}",
    ]
    first = cli(*args, f"--workdir={tmp_path / 'a'}", check=True)
    loaded, compiled = loaded_and_compiled(first.stdout)
    assert loaded == 0 and compiled > 0
    assert os.listdir(cache)
    # Another run of the same recipe and mesh (here a fresh workdir; a resume is the same).
    second = cli(*args, f"--workdir={tmp_path / 'b'}", check=True)
    assert loaded_and_compiled(second.stdout) == (compiled, 0)


def test_cache_dir_setting():
    assert compile_cache.cache_dir({}, "/runs/a") == "/runs/a/compile_cache"
    assert compile_cache.cache_dir({"compile_cache_dir": "workdir"}, "/r") == "/r/compile_cache"
    assert compile_cache.cache_dir({"compile_cache_dir": ""}, "/r") is None
    home = os.path.expanduser("~")
    assert compile_cache.cache_dir({"compile_cache_dir": "~/c"}, "/r") == os.path.join(home, "c")
