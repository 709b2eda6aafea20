"""Comparing param trees by shape, with errors that name what differs."""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import traverse_util

from jepa_jax.errors import ConfigError


def shape_table(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"a/b/kernel": shape} of every leaf of a nested-dict tree (arrays or ShapeDtypeStructs)."""
    flat = traverse_util.flatten_dict(dict(tree), sep="/")
    return {
        k: tuple(int(d) for d in (v.shape if hasattr(v, "shape") else np.shape(v)))
        for k, v in flat.items()
    }


def check_same_shapes(
    expected: Any,
    actual: Any,
    expected_name: str,
    actual_name: str,
    expected_short: str = "expected",
    actual_short: str = "found",
) -> None:
    """ConfigError naming the first differences if two param trees differ in keys or shapes.

    Args:
      expected, actual: nested dicts of arrays or ShapeDtypeStructs.
      expected_name, actual_name: how to call each side in the message, e.g. "the model of
        config.json (width 192, ...)" and "the checkpoint at step 400".
      expected_short, actual_short: one-word names for the shape listing ("model", ...).
    """
    want, got = shape_table(expected), shape_table(actual)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = [k for k in sorted(set(want) & set(got)) if want[k] != got[k]]
    if not (missing or extra or differ):
        return

    def listing(keys, fmt):
        more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
        return ", ".join(fmt(k) for k in keys[:3]) + more

    parts = []
    if differ:
        parts.append(
            f"shapes ({actual_short} vs {expected_short}) differ for "
            + listing(differ, lambda k: f"{k} {got[k]} vs {want[k]}")
        )
    if missing:
        parts.append(f"missing from the {actual_short}: " + listing(missing, str))
    if extra:
        parts.append(f"not in the {expected_short}: " + listing(extra, str))
    raise ConfigError(f"{actual_name} does not match {expected_name}: " + "; ".join(parts))
