"""Wavefront search in imagination: breadth-first over a few discrete actions, rolled out with the
world model, merging imagined states that land on the same spot.

Why not only CEM/MPPI: a sampling planner follows the gradient of its energy, so wherever the
planning distance leaks through a wall (a learned distance does near the wall, where two
positions a few pixels apart on either side look alike) it walks to the wall opposite the goal
and stays there. A breadth-first search does not follow the energy: it expands every reachable
imagined state, depth by depth, until one is *near* the goal by the learned distance, and the
only distances it trusts are those below `goal_steps` (model steps), where the learned distance
is accurate. The walls then come from the world model's dynamics (imagined states cannot pass
them), not from the distance. Measured on Two Rooms with the distance-head recipe: MPPI 88%,
this search 96% of 50 episodes, 4x faster per episode (README, benchmarks/planning.py).

Per depth, each of `width` kept states is expanded by every action (`directions` headings x
`speeds`, held for the model step); among the children, a greedy farthest-point pass keeps up to
`width` that lie more than `merge_px` from every state kept so far (at any depth): a state
reached again later is never better, so the search is a wavefront over the free space. Fixed
shapes throughout (one `lax.scan` over depths), so it runs inside `jit`.

The search needs, from the agent, a `SearchSpace`: the root state, a batched one-step `expand`,
each state's position (px; merging) and its distance to the goal in model steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.errors import need_under

_FAR = 1e9  # cost of "none found"; positions of empty archive slots


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Static settings of the wavefront search (hashable)."""

    width: int = 64  # imagined states kept per depth
    merge_px: float = 4.0  # children closer than this to a kept state are dropped
    goal_steps: float = 1.0  # a state is at the goal below this distance (model steps)
    directions: int = 8  # headings, evenly spaced
    speeds: tuple[float, ...] = (1.0, 0.5)  # units of env.max_norm


def settings_from_config(plan: Mapping[str, Any]) -> SearchSettings:
    """The search of `config.plan` (plan.search_*); raises ConfigError naming a bad value."""
    s = SearchSettings(
        width=int(plan["search_width"]),
        merge_px=float(plan["search_merge_px"]),
        goal_steps=float(plan["search_goal_steps"]),
        directions=int(plan["search_directions"]),
        speeds=tuple(float(v) for v in plan["search_speeds"]),
    )
    need = need_under("plan")
    need(s.width >= 1, "search_width", s.width, "an integer >= 1")
    need(s.merge_px > 0, "search_merge_px", s.merge_px, "a number > 0 (pixels)")
    need(s.goal_steps > 0, "search_goal_steps", s.goal_steps, "a number > 0 (model steps)")
    need(s.directions >= 1, "search_directions", s.directions, "an integer >= 1")
    need(
        len(s.speeds) >= 1 and all(0 < v <= 1 for v in s.speeds),
        "search_speeds",
        s.speeds,
        "a non-empty tuple of speeds in (0, 1] (units of env.max_norm)",
    )
    return s


def action_set(settings: SearchSettings) -> jax.Array:
    """The searched actions [directions * len(speeds), 2], in units of env.max_norm."""
    angles = jnp.arange(settings.directions) * (2 * jnp.pi / settings.directions)
    unit = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    return jnp.concatenate([v * unit for v in settings.speeds]).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What the search explores (one episode, one replan).

    root: the current state, a pytree of arrays without a batch axis.
    expand: (states with leading [N], actions [N, 2] in units of max_norm, held for the model
      step) -> the states one model step later, leading [N].
    position: states [N] -> positions [N, 2] (px), for merging.
    steps_to_goal: states [N] -> distances to the goal [N], in model steps.
    """

    root: Any
    expand: Callable[[Any, jax.Array], Any]
    position: Callable[[Any], jax.Array]
    steps_to_goal: Callable[[Any], jax.Array]


def search(settings: SearchSettings, space: SearchSpace, depth: int) -> dict[str, jax.Array]:
    """Breadth-first search `depth` model steps deep from `space.root`.

    The best state is the cheapest (depth + distance to the goal) among states whose distance is
    below `goal_steps`; if none was reached, the cheapest of all (a greedy fallback).

    Returns:
      {"plan": [depth, 2] the actions (units of max_norm) that lead to the best state, zeros after
       it; "found": bool [] whether a state below goal_steps was reached; "visited": float32
       [depth + 1, width, 2] positions (px) of the states kept at each depth (the root first),
       where "visited_mask" bool [depth + 1, width] is set}.
    """
    actions = action_set(settings)
    k, m = actions.shape[0], settings.width
    pos0 = space.position(jax.tree.map(lambda x: x[None], space.root))[0]

    nodes = jax.tree.map(lambda x: jnp.broadcast_to(x, (m,) + x.shape), space.root)
    live = jnp.arange(m) == 0  # the root only
    paths = jnp.zeros((m, depth), jnp.int32)  # action indices from the root
    archive = jnp.full((depth + 1, m, 2), _FAR, jnp.float32).at[0, 0].set(pos0)
    child_actions = jnp.tile(actions, (m, 1))  # [m * k, 2]: child i takes action i % k

    def keep_apart(positions, novelty):
        """Greedy farthest-point choice of up to m children [m * k] -> (indices, kept)."""

        def pick(i, carry):
            novelty, chosen, kept = carry
            j = jnp.argmax(novelty)
            kept = kept.at[i].set(novelty[j] > settings.merge_px)
            chosen = chosen.at[i].set(j)
            spread = jnp.linalg.norm(positions - positions[j], axis=-1)
            novelty = jnp.minimum(novelty, spread).at[j].set(-_FAR)
            return novelty, chosen, kept

        init = (novelty, jnp.zeros((m,), jnp.int32), jnp.zeros((m,), bool))
        _, chosen, kept = jax.lax.fori_loop(0, m, pick, init)
        return chosen, kept

    def one_depth(carry, d):
        nodes, live, paths, archive, best = carry
        parents = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), nodes)
        children = space.expand(parents, child_actions)
        positions = space.position(children)
        to_archive = jnp.linalg.norm(positions[:, None] - archive.reshape(1, -1, 2), axis=-1)
        novelty = jnp.where(jnp.repeat(live, k), to_archive.min(-1), -_FAR)
        chosen, live = keep_apart(positions, novelty)
        nodes = jax.tree.map(lambda x: x[chosen], children)
        paths = paths[chosen // k].at[:, d].set(chosen % k)
        archive = archive.at[d + 1].set(jnp.where(live[:, None], positions[chosen], _FAR))
        distance = space.steps_to_goal(nodes)
        cost = jnp.where(live, d + 1 + distance, _FAR)
        at_goal = jnp.where(distance < settings.goal_steps, cost, _FAR)
        best = tuple(
            _better(b, c, paths, d + 1) for b, c in zip(best, (at_goal, cost), strict=True)
        )
        return (nodes, live, paths, archive, best), None

    none = (jnp.float32(_FAR), jnp.zeros((depth,), jnp.int32), jnp.int32(0))
    carry = (nodes, live, paths, archive, (none, none))
    (_, _, _, archive, (at_goal, anywhere)), _ = jax.lax.scan(one_depth, carry, jnp.arange(depth))
    found = at_goal[0] < _FAR
    path, length = (jnp.where(found, a, b) for a, b in zip(at_goal[1:], anywhere[1:], strict=True))
    plan = jnp.where((jnp.arange(depth) < length)[:, None], actions[path], 0.0)
    visited = archive[..., 0] < _FAR
    return {"plan": plan, "found": found, "visited": archive, "visited_mask": visited}


def _better(best, costs, paths, length):
    """(cost, path, length) of the cheaper of `best` and the cheapest of costs [m]."""
    i = jnp.argmin(costs)
    better = costs[i] < best[0]
    return (
        jnp.where(better, costs[i], best[0]),
        jnp.where(better, paths[i], best[1]),
        jnp.where(better, jnp.asarray(length, jnp.int32), best[2]),
    )
