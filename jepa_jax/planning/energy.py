"""Planning energies: how far a rolled-out sequence stays from the goal.

A distance per rolled-out step ([..., H]) is reduced over the horizon: "sum" scores the whole
path (it rewards getting close early and staying there, and it is what lets a planner prefer the
way through the door over pressing against the wall), "last" only the final step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ENERGIES = ("sum", "last")
DISTANCES = ("l1", "l2")


def latent_distance(pred: jax.Array, goal: jax.Array, kind: str) -> jax.Array:
    """Mean |pred - goal| (l1) or mean (pred - goal)^2 (l2) over the last two axes (tokens,
    dims). pred: [..., H, P, D], goal: [P, D] -> [..., H]."""
    diff = pred.astype(jnp.float32) - goal.astype(jnp.float32)
    if kind == "l1":
        return jnp.mean(jnp.abs(diff), axis=(-2, -1))
    if kind == "l2":
        return jnp.mean(jnp.square(diff), axis=(-2, -1))
    raise ValueError(f"unknown distance {kind!r}; expected one of {DISTANCES}")


def reduce_over_horizon(distances: jax.Array, kind: str) -> jax.Array:
    """distances [..., H] -> energies [...]: their sum ("sum") or the last one ("last")."""
    if kind == "sum":
        return distances.sum(axis=-1)
    if kind == "last":
        return distances[..., -1]
    raise ValueError(f"unknown energy {kind!r}; expected one of {ENERGIES}")
