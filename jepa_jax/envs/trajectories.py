"""Exploratory trajectories in Two Rooms, generated on the fly in JAX (pure, jittable, vmappable).

The policy is a smooth random walk: the heading drifts by N(0, heading_std) radians per step and
the step length is uniform in [step_min, 1] * max_norm. Actions do not depend on the position,
so a trajectory is (actions, start) -> positions through the true dynamics. A fraction
`door_rate` of trajectories is aimed at the door (as eb_jepa's door-crossing trajectories): a
crossing step c is drawn and the start is placed so that the free-space path of the first c
actions ends in the doorway, which makes door crossings common in the data rather than rare.

A batch is a pure function of its key, so training data is a function of (seed, step) and a run
resumes on exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.envs import two_rooms
from jepa_jax.envs.two_rooms import TwoRooms
from jepa_jax.errors import need_under


@dataclasses.dataclass(frozen=True)
class ExplorationPolicy:
    """Parameters of the random exploratory policy."""

    heading_std: float = 0.45  # radians per step (von Mises kappa 5 in eb_jepa has std ~0.45)
    step_min: float = 0.2  # smallest step, as a fraction of max_norm
    door_rate: float = 0.35  # fraction of trajectories aimed through the door


def policy_from_config(world_model_config: Mapping[str, Any]) -> ExplorationPolicy:
    """The exploratory policy of `config.world_model` (heading_std, step_min, door_rate);
    raises ConfigError naming the key."""
    policy = ExplorationPolicy(
        heading_std=float(world_model_config["heading_std"]),
        step_min=float(world_model_config["step_min"]),
        door_rate=float(world_model_config["door_rate"]),
    )
    need = need_under("world_model")
    need(policy.heading_std >= 0, "heading_std", policy.heading_std, "a number >= 0")
    need(0 <= policy.step_min <= 1, "step_min", policy.step_min, "a fraction in [0, 1]")
    need(0 <= policy.door_rate <= 1, "door_rate", policy.door_rate, "a fraction in [0, 1]")
    return policy


def random_actions(
    env: TwoRooms, policy: ExplorationPolicy, key: jax.Array, num_steps: int
) -> jax.Array:
    """Smoothly turning random displacements: float32 [num_steps, 2], norms <= max_norm."""
    k_head, k_turn, k_len = jax.random.split(key, 3)
    turns = policy.heading_std * jax.random.normal(k_turn, (num_steps,))
    heading = jax.random.uniform(k_head, (), maxval=2 * jnp.pi) + jnp.cumsum(turns)
    length = env.max_norm * jax.random.uniform(k_len, (num_steps,), minval=policy.step_min)
    return length[:, None] * jnp.stack([jnp.cos(heading), jnp.sin(heading)], axis=-1)


def _start(
    env: TwoRooms, policy: ExplorationPolicy, key: jax.Array, layout: dict, actions: jax.Array
) -> jax.Array:
    k_uniform, k_door, k_cross, k_row = jax.random.split(key, 4)
    uniform = jax.random.uniform(k_uniform, (2,), minval=env.lo, maxval=env.hi)
    # Door-aimed start: door point minus the free-space displacement of the first c actions.
    c = jax.random.randint(k_cross, (), 0, actions.shape[0])
    before = jnp.arange(actions.shape[0]) < c
    travelled = jnp.sum(jnp.where(before[:, None], actions, 0.0), axis=0)
    row = jax.random.uniform(k_row, (), minval=-1.0, maxval=1.0) * (env.door_half_height - 0.5)
    door_point = jnp.stack([layout["wall_x"], layout["door_y"] + row])
    aimed = door_point - travelled
    use_door = jax.random.bernoulli(k_door, policy.door_rate)
    return two_rooms.project_to_free(env, layout, jnp.where(use_door, aimed, uniform))


def generate(
    env: TwoRooms, policy: ExplorationPolicy, key: jax.Array, num_steps: int
) -> dict[str, Any]:
    """One exploratory trajectory of `num_steps` steps (observations are rendered separately).

    Returns:
      {"layout": Layout,
       "actions": float32 [num_steps, 2] (already within max_norm),
       "positions": float32 [num_steps + 1, 2], positions[0] the start}.
    """
    k_layout, k_actions, k_start = jax.random.split(key, 3)
    layout = two_rooms.sample_layout(env, k_layout)
    actions = random_actions(env, policy, k_actions, num_steps)
    start = _start(env, policy, k_start, layout, actions)
    positions = jnp.concatenate([start[None], two_rooms.rollout(env, layout, start, actions)])
    return {"layout": layout, "actions": actions, "positions": positions}


def generate_batch(
    env: TwoRooms, policy: ExplorationPolicy, key: jax.Array, batch_size: int, num_steps: int
) -> dict[str, Any]:
    """`batch_size` independent trajectories (vmapped `generate`); every leaf gets a leading
    [batch_size] axis."""
    keys = jax.random.split(key, batch_size)
    return jax.vmap(lambda k: generate(env, policy, k, num_steps))(keys)
