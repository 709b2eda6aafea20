"""Param-tree utilities: unscanned block layout and shape comparison with readable errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from jepa_jax.errors import ConfigError


def unstack_blocks(params: Mapping[str, Any]) -> dict[str, Any]:
    """Encoder (or predictor) params with `transformer/blocks` stacked by `nn.scan` (a leading
    [depth] axis on every leaf) rewritten as `transformer/blocks_{i}`; other trees unchanged.

    Exports always use the unscanned layout, which maps one-to-one onto PyTorch's `blocks.{i}`.
    Works on arrays and on jax.ShapeDtypeStruct trees.
    """
    transformer = params["transformer"]
    if "blocks" not in transformer:
        return dict(params)
    stacked = transformer["blocks"]
    depth = jax.tree.leaves(stacked)[0].shape[0]

    def layer(a, i):
        if isinstance(a, jax.ShapeDtypeStruct):  # abstract trees (checkpoint metadata) too
            return jax.ShapeDtypeStruct(a.shape[1:], a.dtype)
        return a[i]

    blocks = {
        f"blocks_{i}": jax.tree.map(lambda a, i=i: layer(a, i), stacked) for i in range(depth)
    }
    return {**params, "transformer": blocks}


def shape_table(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"a/b/kernel": shape} of every leaf of a nested-dict tree (arrays or ShapeDtypeStructs)."""
    flat = traverse_util.flatten_dict(dict(tree), sep="/")
    return {
        k: tuple(int(d) for d in (v.shape if hasattr(v, "shape") else np.shape(v)))
        for k, v in flat.items()
    }


def check_same_shapes(expected: Any, actual: Any, expected_name: str, actual_name: str) -> None:
    """ConfigError naming the first differences if two param trees differ in keys or shapes.

    Args:
      expected, actual: nested dicts of arrays or ShapeDtypeStructs.
      expected_name, actual_name: how to call each side in the message, e.g. "the model
        (encoder_config.json: width 192, depth 6)" and "the checkpoint".
    """
    want, got = shape_table(expected), shape_table(actual)
    problems = []
    for key in sorted(set(want) | set(got)):
        if key not in got:
            problems.append(f"{key} missing from {actual_name}")
        elif key not in want:
            problems.append(f"{key} in {actual_name} but not in {expected_name}")
        elif want[key] != got[key]:
            problems.append(
                f"{key} has shape {got[key]} in {actual_name} but {want[key]} in {expected_name}"
            )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(
            f"{actual_name} does not match {expected_name}: " + "; ".join(problems[:3]) + more
        )
