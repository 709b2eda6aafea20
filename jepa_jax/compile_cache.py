"""JAX's persistent compilation cache for `jepa-jax train`.

A re-launch of the same recipe on the same mesh (a resume after preemption, a rerun) loads the
compiled train step, init and probe functions from disk instead of compiling them again.
`config.compile_cache_dir` says where: "workdir" (default) is `<workdir>/compile_cache`, so a
resumed run finds its own executables; any other path (e.g. a shared ~/.cache/jepa-jax on a
team disk) is shared by every run that uses it; "" turns the cache off. JAX keys entries by the
computation, the compile options, the devices and the JAX/XLA versions, so a stale entry is never
loaded for a changed model or mesh.

The cache is process-wide JAX state, so the command enables it before anything compiles; the
hit/miss counts come from JAX's monitoring events.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

CACHE_SUBDIR = "compile_cache"
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_MISS_EVENT = "/jax/compilation_cache/cache_misses"
_counts = {"hits": 0, "misses": 0}
_listening = False


def cache_dir(config: Mapping[str, Any], workdir: str) -> str | None:
    """The cache directory of a run, or None when `config.compile_cache_dir` is ""."""
    setting = str(config.get("compile_cache_dir", "workdir"))
    if not setting:
        return None
    if setting == "workdir":
        return os.path.join(workdir, CACHE_SUBDIR)
    return os.path.abspath(os.path.expanduser(setting))


def _count(event: str, **_: Any) -> None:
    if event == _HIT_EVENT:
        _counts["hits"] += 1
    elif event == _MISS_EVENT:
        _counts["misses"] += 1


def enable(path: str) -> None:
    """Cache every compilation of this process in `path`. Call before the first compilation:
    JAX reads these settings when it first uses the cache, and creates `path` only then (after
    the run's config checks, so a rejected config leaves no directory behind)."""
    import jax
    from jax import monitoring

    global _listening
    jax.config.update("jax_compilation_cache_dir", path)
    # Every executable, however quick to compile: a resume pays for all of them at once.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if not _listening:
        monitoring.register_event_listener(_count)
        _listening = True


def summary() -> dict[str, int]:
    """{"hits", "misses"}: compilations loaded from / added to the cache by this process."""
    return dict(_counts)
