"""What a planner plans with: a cost for candidate action sequences, given the current position.

`LatentAgent` is the point of the project: it sees only images. It encodes the current
observation and the goal image, rolls every candidate out in latent space with the
action-conditioned predictor, and scores the distance of the predicted latents to the goal's.
Two ceilings use the same planner with the true simulator instead of the predictor:
`SimulatorAgent` scores the true distance to the goal (pixels): a perfect world model with a
hand-made energy; `SimulatorLatentAgent` renders the simulated frames and scores them with the
trained encoder's latent distance: a perfect predictor for the learned energy.

Candidate sequences are [N, H, A] action tokens: H model steps of `action_chunk` env actions
each, in units of env.max_norm (A = 2 * action_chunk). Agents are static (hashable) and take
their parameters as an argument, so they work inside `jit`/`vmap`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.envs import two_rooms
from jepa_jax.envs.two_rooms import TwoRooms
from jepa_jax.planning.energy import reduce_over_horizon
from jepa_jax.planning.planners import CostFn
from jepa_jax.planning.search import SearchSpace
from jepa_jax.world_model.model import WorldModel


def env_actions(env: TwoRooms, tokens: jax.Array) -> jax.Array:
    """Action tokens [..., A] (units of max_norm) -> env actions [..., A/2, 2] in pixels."""
    return tokens.reshape(tokens.shape[:-1] + (-1, 2)) * env.max_norm


def clip_tokens(tokens: jax.Array) -> jax.Array:
    """Rescale each 2-D action inside tokens [..., A] to norm <= 1 (i.e. <= max_norm)."""
    pairs = tokens.reshape(tokens.shape[:-1] + (-1, 2))
    norm = jnp.linalg.norm(pairs, axis=-1, keepdims=True)
    return (pairs * jnp.minimum(1.0, 1.0 / jnp.maximum(norm, 1e-12))).reshape(tokens.shape)


class _WorldModelAgent:
    """The environment and action chunk of an agent that holds a WorldModel `model`."""

    model: WorldModel

    @property
    def env(self) -> TwoRooms:
        return self.model.env

    @property
    def action_chunk(self) -> int:
        return self.model.action_chunk


@dataclasses.dataclass(frozen=True)
class LatentAgent(_WorldModelAgent):
    """Plans in the world model's latent space from images only."""

    model: WorldModel
    energy: str = "sum"  # sum | last
    distance: str = "l1"  # l1 | l2 | head (world_model.model.PLAN_DISTANCES)
    context_steps: int = 1  # predictor window during rollouts

    def goal(self, params: Any, task: dict) -> dict[str, jax.Array]:
        """What the goal image is compared by (`WorldModel.goal_target`, once per episode)."""
        frame = two_rooms.render(self.env, task["layout"], task["goal"])
        return self.model.goal_target(params, frame, self.distance)

    def cost_fn(self, params: Any, goal: dict, task: dict, pos: jax.Array) -> CostFn:
        """The energy of candidates [N, H, A] from position pos (observed as an image, and as a
        proprioceptive state with `use_state`)."""
        frame = two_rooms.render(self.env, task["layout"], pos)
        z0 = self.model.encode(params["encoder"], frame)
        # One frame: the scene map is made once per replan and shared by every candidate.
        state0, scene_map = self.model.conditioning(params["predictor"], frame, pos)

        def cost(tokens: jax.Array) -> jax.Array:
            n = tokens.shape[0]
            z = jnp.broadcast_to(z0, (n,) + z0.shape)
            s = None if state0 is None else jnp.broadcast_to(state0, (n, 2))
            preds = self.model.rollout(
                params["predictor"], z, tokens, self.context_steps, s, scene_map
            )
            distances = self.model.distance_to_goal(params, preds, goal, self.distance)
            return reduce_over_horizon(distances, self.energy)

        return cost

    def search_space(self, params: Any, goal: dict, task: dict, pos: jax.Array) -> SearchSpace:
        """Imagined states {"z": latent [P, D], "s": state [2]} from position pos, expanded by
        the predictor; merged by the model's own predicted position (its learned passability
        keeps them out of walls); scored by the distance head (model steps)."""
        frame = two_rooms.render(self.env, task["layout"], pos)
        state0, scene_map = self.model.conditioning(params["predictor"], frame, pos)
        root = {"z": self.model.encode(params["encoder"], frame), "s": state0}
        chunk = self.action_chunk

        def expand(nodes, actions):
            tokens = jnp.tile(actions, (1, chunk))  # held for the model step
            z, s = self.model.step(params["predictor"], nodes["z"], nodes["s"], tokens, scene_map)
            return {"z": z, "s": s}

        return SearchSpace(
            root=root,
            expand=expand,
            position=lambda nodes: self.model.pixel_position(nodes["s"]),
            steps_to_goal=lambda nodes: self.model.distance_to_goal(
                params, nodes["z"], goal, self.distance
            ),
        )


def _simulated_space(env: TwoRooms, chunk: int, layout: dict, pos: jax.Array, steps_to_goal):
    """A SearchSpace over true positions [2] (the true simulator), scored by steps_to_goal."""

    def expand(positions, actions):
        tokens = jnp.tile(actions, (1, chunk))[:, None]  # [N, 1 model step, A], held
        after = lambda p, t: _frame_positions(env, chunk, layout, p, t)[0]
        return jax.vmap(after)(positions, tokens)

    return SearchSpace(pos, expand, lambda positions: positions, steps_to_goal)


@dataclasses.dataclass(frozen=True)
class SimulatorAgent:
    """The ceiling: plans with the true simulator and a true distance to the goal: "euclidean"
    (straight line, blind to the wall) or "geodesic" (the shortest wall-avoiding path, through
    the door: two_rooms.geodesic_distance), the distance a perfect latent energy would give."""

    env: TwoRooms
    action_chunk: int
    energy: str = "sum"
    distance: str = "euclidean"  # euclidean | geodesic

    def goal(self, params: Any, task: dict) -> jax.Array:
        return task["goal"]

    def cost_fn(self, params: Any, goal: jax.Array, task: dict, pos: jax.Array) -> CostFn:
        def one(tokens):  # [H, A] -> distance after each model step [H]
            at_frames = _frame_positions(self.env, self.action_chunk, task["layout"], pos, tokens)
            if self.distance == "geodesic":
                geodesic = lambda p: two_rooms.geodesic_distance(self.env, task["layout"], p, goal)
                return jax.vmap(geodesic)(at_frames)
            return jnp.linalg.norm(at_frames - goal, axis=-1)

        return lambda tokens: reduce_over_horizon(jax.vmap(one)(tokens), self.energy)

    def search_space(self, params: Any, goal: jax.Array, task: dict, pos: jax.Array):
        """True positions, scored by the true distance in model steps at full speed."""
        px_per_step = self.env.max_norm * self.action_chunk
        layout = task["layout"]
        if self.distance == "geodesic":
            to_goal = jax.vmap(lambda p: two_rooms.geodesic_distance(self.env, layout, p, goal))
        else:
            to_goal = lambda p: jnp.linalg.norm(p - goal, axis=-1)
        steps = lambda positions: to_goal(positions) / px_per_step
        return _simulated_space(self.env, self.action_chunk, layout, pos, steps)


def _frame_positions(env: TwoRooms, chunk: int, layout: dict, pos: jax.Array, tokens: jax.Array):
    """True positions after each model step of tokens [H, A] from pos [2]: [H, 2]."""
    path = two_rooms.rollout(env, layout, pos, env_actions(env, tokens).reshape(-1, 2))
    return path[chunk - 1 :: chunk]


@dataclasses.dataclass(frozen=True)
class SimulatorLatentAgent(_WorldModelAgent):
    """Ceiling for the predictor: true dynamics, frames rendered and scored in latent space."""

    model: WorldModel
    energy: str = "sum"
    distance: str = "l1"

    def goal(self, params: Any, task: dict) -> dict[str, jax.Array]:
        frame = two_rooms.render(self.env, task["layout"], task["goal"])
        return self.model.goal_target(params, frame, self.distance)

    def cost_fn(self, params: Any, goal: dict, task: dict, pos: jax.Array) -> CostFn:
        layout, chunk = task["layout"], self.action_chunk

        def one(tokens):  # [H, A] -> latents of the true frames [H, P, D]
            frames = two_rooms.render_many(
                self.env, layout, _frame_positions(self.env, chunk, layout, pos, tokens)
            )
            return self.model.encode(params["encoder"], frames)

        def cost(tokens):
            dist = self.model.distance_to_goal(params, jax.vmap(one)(tokens), goal, self.distance)
            return reduce_over_horizon(dist, self.energy)

        return cost

    def search_space(self, params: Any, goal: dict, task: dict, pos: jax.Array):
        """True positions, scored by the learned distance of their rendered frames."""
        layout = task["layout"]

        def steps(positions):
            frames = two_rooms.render_many(self.env, layout, positions)
            z = self.model.encode(params["encoder"], frames)
            return self.model.distance_to_goal(params, z, goal, self.distance)

        return _simulated_space(self.env, self.action_chunk, layout, pos, steps)
