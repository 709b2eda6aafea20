"""The in-step half of the non-finite guard: a step whose loss or gradients are not finite
changes nothing but the step counter.

A NaN that reaches the parameters spreads to the optimizer moments and the EMA target within one
step, and a checkpoint of that state is unusable (the run cannot resume even with a sane lr). So
the jitted step computes the update as usual, then keeps the old values wherever the update is
not finite, on device, every step. The host half (`train.runner`) reads the step's "finite"
metric and stops the run (config.nan_policy="stop") or counts the skipped step ("skip_step").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Keys of a train state that the guard restores; everything else (the step counter) advances.
GUARDED_KEYS = ("params", "target_params", "opt_state", "frozen")


def all_finite(*values: jax.Array) -> jax.Array:
    """bool scalar: every value (scalars, e.g. the loss and gradient norm) is finite."""
    return jnp.all(jnp.stack([jnp.isfinite(jnp.asarray(v, jnp.float32)) for v in values]))


def keep_if_not_finite(old_state: dict, new_state: dict, finite: jax.Array) -> dict:
    """`new_state`, except that its guarded entries are `old_state`'s when `finite` is False."""
    out = dict(new_state)
    for key in GUARDED_KEYS:
        if key in new_state:
            out[key] = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), new_state[key], old_state[key]
            )
    return out
