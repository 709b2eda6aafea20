"""Model-predictive control in Two Rooms: plan (CEM / MPPI over action sequences, or the
wavefront search in imagination, search.py), execute the first action(s), observe, replan.

`run_episode` is one whole episode as a pure JAX function (a `lax.while_loop` over replans that
stops at the goal or at the step budget), so episodes are jitted once and vmapped. Two success
rules are reported: first arrival within `success_radius` of the goal within `max_steps` env
steps (ours), and the position after the last step within the radius (eb_jepa's). With
`stop_at_goal` (default) the agent stops on arrival, so the two agree; without it the episode
runs the whole budget, replanning at the goal, as the reference does, and they can differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.envs import two_rooms
from jepa_jax.errors import need_under
from jepa_jax.planning import planners, search
from jepa_jax.planning.agents import clip_tokens, env_actions
from jepa_jax.planning.energy import ENERGIES
from jepa_jax.world_model.model import PLAN_DISTANCES


@dataclasses.dataclass(frozen=True)
class MpcSettings:
    """Static settings of the MPC loop (hashable)."""

    planner: planners.PlannerSettings | search.SearchSettings  # sampling, or the wavefront search
    horizon: int = 16  # model steps
    init_std: float = 1.0  # units of max_norm
    replan_every: int = 1  # model steps executed per plan
    warm_start: bool = True
    hold_actions: bool = True  # plan one action per model step, held for its env steps
    action_repeat: int = 1  # model steps each planned action is held for (a coarser search)
    max_steps: int = 200  # env steps
    success_radius: float = 4.5  # pixels
    stop_at_goal: bool = True  # False: run the whole budget (the reference's final-step rule)


# What plans: a sampling optimiser over action sequences, or the wavefront search (search.py).
PLANNER_KINDS = planners.PLANNERS + ("search",)


def settings_from_config(plan: Mapping[str, Any]) -> MpcSettings:
    """MPC settings of `config.plan`; raises ConfigError naming a bad value."""
    need = need_under("plan")
    kind = plan["planner"]
    need(kind in PLANNER_KINDS, "planner", kind, f"one of {PLANNER_KINDS}")
    searching = kind == "search"
    s = MpcSettings(
        planner=search.settings_from_config(plan)
        if searching
        else planners.settings_from_config(plan),
        horizon=int(plan["horizon"]),
        init_std=float(plan["init_std"]),
        replan_every=int(plan["replan_every"]),
        warm_start=bool(plan["warm_start"]),
        hold_actions=bool(plan["hold_actions"]),
        action_repeat=int(plan.get("action_repeat", 1)),
        max_steps=int(plan["max_steps"]),
        success_radius=float(plan["success_radius"]),
        stop_at_goal=bool(plan.get("stop_at_goal", True)),
    )
    need(s.horizon >= 1, "horizon", s.horizon, "an integer >= 1")
    need(s.init_std > 0, "init_std", s.init_std, "a number > 0")
    every = f"an integer in [1, plan.horizon={s.horizon}]"
    need(1 <= s.replan_every <= s.horizon, "replan_every", s.replan_every, every)
    need(
        s.action_repeat >= 1 and s.horizon % s.action_repeat == 0,
        "action_repeat",
        s.action_repeat,
        f"an integer >= 1 that divides plan.horizon={s.horizon}",
    )
    need(s.max_steps >= 1, "max_steps", s.max_steps, "an integer >= 1")
    need(s.success_radius > 0, "success_radius", s.success_radius, "a number > 0")
    need(plan["energy"] in ENERGIES, "energy", plan["energy"], f"one of {ENERGIES}")
    need(
        plan["distance"] in PLAN_DISTANCES, "distance", plan["distance"], f"one of {PLAN_DISTANCES}"
    )
    if searching:  # it searches one held 2-D action per model step, scored in model steps
        need(s.hold_actions, "hold_actions", s.hold_actions, "True with planner='search'")
        need(s.action_repeat == 1, "action_repeat", s.action_repeat, "1 with planner='search'")
        need(
            plan["distance"] == "head",
            "distance",
            plan["distance"],
            "'head' with planner='search' (it needs a distance in model steps)",
        )
    for key in ("context_steps", "episodes", "parallel_episodes"):
        need(int(plan[key]) >= 1, key, plan[key], "an integer >= 1")
    return s


def planner_description(p: Any, action_chunk: int) -> str:
    """One line naming the planner of config.plan `p` and its sizes (the first line printed by
    `jepa-jax plan` and benchmarks/planning.py)."""
    steps = f"{p.horizon} model steps ({int(p.horizon) * action_chunk} env steps)"
    if p.planner == "search":
        return (
            f"wavefront search {steps} deep, {p.search_width} imagined states per depth, "
            f"{p.search_directions} headings x speeds {tuple(p.search_speeds)}, at the goal "
            f"within {p.search_goal_steps} model steps by the {p.distance} distance"
        )
    return (
        f"{p.planner} with {p.samples} samples x {p.iterations} iterations, horizon {steps}, "
        f"energy {p.energy} {p.distance}"
    )


def run_episode(
    settings: MpcSettings, agent: Any, params: Any, task: dict, key: jax.Array
) -> dict[str, jax.Array]:
    """One MPC episode of `agent` on `task` (see two_rooms.sample_task).

    Args:
      settings: MPC and planner settings.
      agent: a LatentAgent or SimulatorAgent (static).
      params: the agent's parameters (a pytree; may be empty).
      task: {"layout", "start" [2], "goal" [2]}.
      key: PRNG key of the planner's sampling.

    Returns:
      {"success": bool [] first arrival within the budget, "success_final": bool [] the
       position after the last step is within the radius, "steps": int32 [] env steps to the
       first arrival (max_steps if never), "path": float32 [max_steps + 1, 2] positions (held
       after the episode ends), "replans": int32 [] number of plans made}.
    """
    env = agent.env
    chunk = agent.action_chunk
    horizon, execute = settings.horizon, settings.replan_every
    goal_ctx = agent.goal(params, task)
    path0 = jnp.broadcast_to(task["start"], (settings.max_steps + 1, 2))

    repeat = settings.action_repeat
    knots = horizon // repeat  # planned actions per sequence

    def to_tokens(plans):  # planner variables [..., H/r, 2 or A] -> action tokens [..., H, A]
        plans = jnp.repeat(plans, repeat, axis=-2)
        if settings.hold_actions:
            return jnp.tile(plans, (1,) * (plans.ndim - 1) + (chunk,))
        return plans

    def arrived(pos):
        return jnp.linalg.norm(pos - task["goal"]) <= settings.success_radius

    def acting(t, done):
        more = t < settings.max_steps
        return (~done & more) if settings.stop_at_goal else more

    def run_actions(carry, action):
        pos, t, done, path = carry
        active = acting(t, done)
        new_pos = jnp.where(active, two_rooms.step(env, task["layout"], pos, action), pos)
        t = t + active.astype(jnp.int32)
        path = jax.lax.dynamic_update_index_in_dim(path, new_pos, t, axis=0)
        return (new_pos, t, done | (active & arrived(new_pos)), path), None

    def keep_going(carry):
        _, t, done, *_ = carry
        return acting(t, done)

    def replan(carry):
        pos, t, done, path, mean, replans, key = carry
        key, k_plan = jax.random.split(key)
        if isinstance(settings.planner, search.SearchSettings):
            space = agent.search_space(params, goal_ctx, task, pos)
            plan = search.search(settings.planner, space, horizon)["plan"]
        else:
            token_cost = agent.cost_fn(params, goal_ctx, task, pos)
            cost_fn = lambda plans: token_cost(to_tokens(plans))
            plan, _ = planners.optimize(
                settings.planner, cost_fn, k_plan, mean, settings.init_std, clip_tokens
            )
        actions = env_actions(env, to_tokens(plan)[:execute]).reshape(-1, 2)
        (pos, t, done, path), _ = jax.lax.scan(run_actions, (pos, t, done, path), actions)
        if settings.warm_start:  # the rest of the plan, then zeros (in whole planned actions)
            done_knots = execute // repeat
            mean = jnp.concatenate([plan[done_knots:], jnp.zeros_like(plan[:done_knots])])
        return pos, t, done, path, mean, replans + 1, key

    mean0 = jnp.zeros((knots, 2 if settings.hold_actions else 2 * chunk), jnp.float32)
    init = (task["start"], jnp.int32(0), arrived(task["start"]), path0, mean0, jnp.int32(0), key)
    pos, t, done, path, _, replans, _ = jax.lax.while_loop(keep_going, replan, init)
    # Hold the final position for the steps after the episode ended.
    steps = jnp.arange(settings.max_steps + 1)
    path = jnp.where((steps > t)[:, None], pos, path)
    # path[i] is the position after i env steps, so the first index within the radius is the
    # first arrival (the agent may leave again when it runs the whole budget).
    first = jnp.argmax(jax.vmap(arrived)(path))
    return {
        "success": done,
        "success_final": arrived(pos),
        "steps": jnp.where(done, first, settings.max_steps),
        "path": path,
        "replans": replans,
    }
