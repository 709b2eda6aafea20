"""World-model training sequences from exploratory Two Rooms trajectories, made on device.

A sequence has `num_steps` model steps; a model step is `action_chunk` env steps, so frames are
rendered every `action_chunk` env steps and each action token holds the chunk of env actions
between two frames (divided by max_norm). Batches are a pure function of their key: the
training loop folds the step number into the data seed, so data need no iterator state.
"""

from __future__ import annotations

from typing import Any

import jax

from jepa_jax.envs import trajectories, two_rooms
from jepa_jax.envs.trajectories import ExplorationPolicy
from jepa_jax.envs.two_rooms import TwoRooms


def sequence(
    env: TwoRooms,
    policy: ExplorationPolicy,
    key: jax.Array,
    num_steps: int,
    action_chunk: int,
    goals: int = 0,
) -> dict[str, Any]:
    """One training sequence.

    Returns:
      {"frames": float32 [num_steps + 1, size, size, 2],
       "actions": float32 [num_steps, 2 * action_chunk] (env actions / max_norm),
       "positions": float32 [num_steps + 1, 2] agent positions at the frames (pixels),
       with goals > 0 also "goal_frames": float32 [goals, size, size, 2], frames of uniformly
       random free positions in the same layout (other states of the same scene, as a longer
       trajectory would reach)}.
    """
    traj = trajectories.generate(env, policy, key, num_steps * action_chunk)
    positions = traj["positions"][::action_chunk]
    actions = traj["actions"].reshape(num_steps, 2 * action_chunk) / env.max_norm
    frames = two_rooms.render_many(env, traj["layout"], positions)
    out = {"frames": frames, "actions": actions, "positions": positions}
    if goals:
        k_goals = jax.random.fold_in(key, 1)  # the trajectory stays that of goals=0
        raw = jax.random.uniform(k_goals, (goals, 2), minval=env.lo, maxval=env.hi)
        free = jax.vmap(lambda p: two_rooms.project_to_free(env, traj["layout"], p))(raw)
        out["goal_frames"] = two_rooms.render_many(env, traj["layout"], free)
    return out


def batch(
    env: TwoRooms,
    policy: ExplorationPolicy,
    key: jax.Array,
    batch_size: int,
    num_steps: int,
    action_chunk: int,
    goals: int = 0,
) -> dict[str, Any]:
    """`batch_size` sequences; every leaf of `sequence` gets a leading [batch_size] axis."""
    keys = jax.random.split(key, batch_size)
    return jax.vmap(lambda k: sequence(env, policy, k, num_steps, action_chunk, goals))(keys)
