"""The data-source registry: `config.data.name` -> source factory and per-example input shape.

`jepa_jax.data.sources` registers the built-in and file-backed sources; `data.pipeline` looks
them up. A new source is one `register_source` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jepa_jax.errors import ConfigError

# name -> (data_config, split) -> random-access source whose items are
# {"pixels": uint8 [(T,) H, W, 3], "labels": {...}}.
SourceFactory = Callable[[Mapping[str, Any], str], Any]
SOURCES: dict[str, SourceFactory] = {}
# name -> data_config -> per-example pixel shape, known without reading data.
INPUT_SHAPES: dict[str, Callable[[Mapping[str, Any]], tuple[int, ...]]] = {}


def register_source(
    name: str, factory: SourceFactory, input_shape: Callable[[Mapping[str, Any]], tuple[int, ...]]
) -> None:
    """Make `config.data.name = name` build `factory(data_config, split)`."""
    SOURCES[name] = factory
    INPUT_SHAPES[name] = input_shape


def lookup(table: dict, name: str):
    """`table[name]`, or ConfigError naming the registered sources."""
    if name not in table:
        raise ConfigError(
            f"unknown data source config.data.name={name!r}; expected one of {sorted(table)}"
        )
    return table[name]
