"""Planning energies: how far a rolled-out sequence stays from the goal.

A distance per rolled-out step ([..., H]) is reduced over the horizon: "sum" scores the whole
path (it rewards getting close early and staying there, and it is what lets a planner prefer the
way through the door over pressing against the wall), "last" only the final step.
The distance itself is the world model's `latent_distance` (its training loss uses it too).
"""

from __future__ import annotations

import jax

ENERGIES = ("sum", "last")


def reduce_over_horizon(distances: jax.Array, kind: str) -> jax.Array:
    """distances [..., H] -> energies [...]: their sum ("sum") or the last one ("last")."""
    if kind == "sum":
        return distances.sum(axis=-1)
    if kind == "last":
        return distances[..., -1]
    raise ValueError(f"unknown energy {kind!r}; expected one of {ENERGIES}")
