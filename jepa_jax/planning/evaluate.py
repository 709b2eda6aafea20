"""Planning evaluation on random Two Rooms tasks: success rate, steps to goal, seconds/episode.

Tasks are a pure function of (seed, episode index): a random layout, and start and goal in
different rooms, so every agent (learned model, random-policy floor, simulator ceiling) is scored
on the same episodes. Episodes run `parallel_episodes` at a time (vmapped); seconds per episode is
the wall time of all batches divided by the number of episodes, compilation excluded (reported
separately).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.envs import trajectories, two_rooms
from jepa_jax.envs.trajectories import ExplorationPolicy
from jepa_jax.envs.two_rooms import TwoRooms
from jepa_jax.planning import mpc, search

TASK_SEED_OFFSET = 0
PLANNER_SEED_OFFSET = 1
RANDOM_POLICY_SEED_OFFSET = 2
ENERGY_QUALITY_SEED_OFFSET = 3


def make_tasks(env: TwoRooms, seed: int, num: int, margin: float) -> dict[str, Any]:
    """Tasks 0..num-1 of `seed` (task i does not depend on num): leaves with a leading [num]."""
    base = jax.random.fold_in(jax.random.key(seed), TASK_SEED_OFFSET)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num))
    return jax.jit(jax.vmap(lambda k: two_rooms.sample_task(env, k, margin)))(keys)


def _batched(tasks: dict, num: int, size: int) -> tuple[list[dict], list[jax.Array]]:
    """Split tasks into batches of `size` (the last one padded by repeating task 0)."""
    pad = (-num) % size
    idx = np.concatenate([np.arange(num), np.zeros(pad, np.int64)])
    chunks = [idx[i : i + size] for i in range(0, len(idx), size)]
    return [jax.tree.map(lambda x, c=c: x[c], tasks) for c in chunks], [
        jnp.asarray(c) for c in chunks
    ]


def evaluate_agent(
    settings: mpc.MpcSettings,
    agent: Any,
    params: Any,
    tasks: dict,
    seed: int,
    parallel_episodes: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run MPC episodes of `agent` on every task.

    Returns:
      {"success": bool [E], "steps": int [E], "path": float32 [E, max_steps + 1, 2],
       "seconds": wall time of the episodes, "compile_seconds": float}.
    """
    num = int(jax.tree.leaves(tasks)[0].shape[0])
    size = min(parallel_episodes, num)
    planner_key = jax.random.fold_in(jax.random.key(seed), PLANNER_SEED_OFFSET)

    def run(params, batch_tasks, indices):
        keys = jax.vmap(lambda i: jax.random.fold_in(planner_key, i))(indices)
        return jax.vmap(lambda t, k: mpc.run_episode(settings, agent, params, t, k))(
            batch_tasks, keys
        )

    batches, indices = _batched(tasks, num, size)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(params, batches[0], indices[0]).compile()
    compile_seconds = time.perf_counter() - t0
    outs = []
    t0 = time.perf_counter()
    for i, (batch_tasks, idx) in enumerate(zip(batches, indices, strict=True)):
        outs.append(jax.device_get(compiled(params, batch_tasks, idx)))
        if log is not None:
            done = min((i + 1) * size, num)
            rate = float(np.mean(np.concatenate([o["success"] for o in outs])[:done]))
            elapsed = time.perf_counter() - t0
            log(f"  {done}/{num} episodes, success {rate:.0%}, {elapsed / done:.1f} s/episode")
    seconds = time.perf_counter() - t0
    result = {k: np.concatenate([o[k] for o in outs])[:num] for k in outs[0]}
    result.update(seconds=seconds, compile_seconds=compile_seconds)
    return result


def random_policy(
    env: TwoRooms,
    policy: ExplorationPolicy,
    tasks: dict,
    seed: int,
    max_steps: int,
    success_radius: float,
) -> dict[str, Any]:
    """The floor: the exploratory random policy (smoothly turning random walk, as the training
    data) run for max_steps from each start; success on passing within the radius of the goal.
    """
    num = int(jax.tree.leaves(tasks)[0].shape[0])
    base = jax.random.fold_in(jax.random.key(seed), RANDOM_POLICY_SEED_OFFSET)

    def one(task, i):
        actions = trajectories.random_actions(env, policy, jax.random.fold_in(base, i), max_steps)
        path = two_rooms.rollout(env, task["layout"], task["start"], actions)
        near = jnp.linalg.norm(path - task["goal"], axis=-1) <= success_radius
        success = near.any()
        steps = jnp.where(success, jnp.argmax(near) + 1, max_steps)
        return {"success": success, "success_final": near[-1], "steps": steps}

    t0 = time.perf_counter()
    out = jax.device_get(jax.jit(jax.vmap(one))(tasks, jnp.arange(num)))
    return {**out, "seconds": time.perf_counter() - t0, "compile_seconds": 0.0}


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """success_rate (first arrival), final_success_rate (position after the last step, the
    reference's rule), mean_steps_to_goal (over successes; nan if none), seconds_per_episode."""
    success = np.asarray(result["success"], bool)
    steps = np.asarray(result["steps"])
    return {
        "episodes": int(success.size),
        "success_rate": float(success.mean()),
        "final_success_rate": float(np.mean(np.asarray(result["success_final"], bool))),
        "mean_steps_to_goal": float(steps[success].mean()) if success.any() else float("nan"),
        "seconds_per_episode": float(result["seconds"]) / max(success.size, 1),
        "compile_seconds": float(result.get("compile_seconds", 0.0)),
    }


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two [K] samples (no ties in continuous data)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _distances_to_goal(
    model: Any,
    params: Any,
    env: TwoRooms,
    distance: str,
    layout: dict,
    positions: jax.Array,
    goal: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The planning distance (`distance`, compared as the planners do: `model.goal_target` /
    `model.distance_to_goal`) and the true geodesic distance (px) of the agent at positions
    [N, 2] to the goal [2] in one layout: ([N], [N]). Each position is rendered and encoded."""
    frames = two_rooms.render_many(env, layout, jnp.concatenate([positions, goal[None]]))
    z = model.encode(params["encoder"], frames[:-1])  # [N, P, D]
    target = model.goal_target(params, frames[-1], distance)
    planning = model.distance_to_goal(params, z, target, distance)
    geodesic = jax.vmap(lambda p: two_rooms.geodesic_distance(env, layout, p, goal))(positions)
    return planning, geodesic


def energy_quality(
    model: Any,
    params: Any,
    env: TwoRooms,
    distance: str,
    seed: int,
    num_tasks: int = 32,
    positions_per_task: int = 32,
    margin: float = 2.6,
) -> dict[str, Any]:
    """How well the learned latent distance to a goal ranks the true distance to it.

    For each of `num_tasks` random layouts and goals, `positions_per_task` free positions are
    drawn uniformly over both rooms; each is rendered, encoded, and its distance to the goal
    (`distance`: the latent l1 | l2, or "head", the learned distance head) compared with its true
    distance-to-go: the geodesic one (through the door) and, for contrast, the straight line
    (which ignores the wall). An energy a planner can follow ranks positions as the geodesic
    distance does.

    Returns:
      {"spearman_geodesic", "spearman_euclidean": mean rank correlation over tasks,
       "latent" / "geodesic" / "euclidean": float [num_tasks, positions_per_task]}.
    """
    key = jax.random.fold_in(jax.random.key(seed), ENERGY_QUALITY_SEED_OFFSET)
    tasks = make_tasks(env, seed + ENERGY_QUALITY_SEED_OFFSET, num_tasks, margin)
    k = positions_per_task

    def one(task, key):
        raw = jax.random.uniform(key, (k, 2), minval=env.lo, maxval=env.hi)
        pos = jax.vmap(lambda p: two_rooms.project_to_free(env, task["layout"], p))(raw)
        latent, geodesic = _distances_to_goal(
            model, params, env, distance, task["layout"], pos, task["goal"]
        )
        return latent, geodesic, jnp.linalg.norm(pos - task["goal"], axis=-1)

    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_tasks))
    latent, geodesic, euclidean = map(np.asarray, jax.jit(jax.vmap(one))(tasks, keys))

    def mean_rank_correlation(true):  # per task, then averaged
        return float(np.mean([_rank_correlation(a, b) for a, b in zip(latent, true, strict=True)]))

    return {
        "spearman_geodesic": mean_rank_correlation(geodesic),
        "spearman_euclidean": mean_rank_correlation(euclidean),
        "latent": latent,
        "geodesic": geodesic,
        "euclidean": euclidean,
    }


def distance_field(
    model: Any,
    params: Any,
    env: TwoRooms,
    distance: str,
    layout: dict,
    goal: jax.Array,
    resolution: int = 40,
) -> dict[str, np.ndarray]:
    """The planning distance to `goal` [2] (px) at every point of a resolution x resolution grid
    over the free square of `layout`, beside the true geodesic distance: what a planner following
    the energy sees, as a map (a wall-blind energy dips towards the goal through the wall).

    Each grid point is rendered with the agent there, encoded, and compared with the goal image
    (`model.goal_target` / `model.distance_to_goal`, the planners' comparison).

    Returns:
      {"coords": float32 [resolution] grid coordinates (px, both axes), "planning" / "geodesic":
       float32 [resolution (y), resolution (x)] (geodesic in px), "free": bool [resolution,
       resolution] whether the agent can be there (not inside the middle wall)}.
    """
    coords = jnp.linspace(env.lo, env.hi, resolution, dtype=jnp.float32)
    xs, ys = jnp.meshgrid(coords, coords, indexing="xy")
    points = jnp.stack([xs, ys], axis=-1).reshape(-1, 2)  # rows: y, columns: x

    def field(params, layout, goal):
        planning, geodesic = _distances_to_goal(model, params, env, distance, layout, points, goal)
        return planning, geodesic, two_rooms.is_free(env, layout, points)

    out = jax.device_get(jax.jit(field)(params, layout, jnp.asarray(goal, jnp.float32)))
    shape = (resolution, resolution)
    planning, geodesic, free = (np.asarray(x).reshape(shape) for x in out)
    return {"coords": np.asarray(coords), "planning": planning, "geodesic": geodesic, "free": free}


ROLLOUT_ACCURACY_SEED_OFFSET = 4


def first_search(
    settings: mpc.MpcSettings, agent: Any, params: Any, task: dict
) -> dict[str, np.ndarray]:
    """The wavefront search of an episode's first replan, from task["start"] (settings.planner a
    SearchSettings; agent a LatentAgent or a simulator agent): search.search's output, with the
    imagined states' positions "visited" [depth + 1, width, 2] (px) and "visited_mask"."""
    if not isinstance(settings.planner, search.SearchSettings):
        raise ValueError(f"first_search needs plan.planner='search'; got {settings.planner}")
    return jax.device_get(_search_from_start(settings, agent, params, task))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _search_from_start(settings: mpc.MpcSettings, agent: Any, params: Any, task: dict):
    """first_search's work, compiled once per (settings, agent), not once per episode."""
    goal = agent.goal(params, task)
    space = agent.search_space(params, goal, task, task["start"])
    return search.search(settings.planner, space, settings.horizon)


def rollout_accuracy(
    model: Any,
    params: Any,
    policy: ExplorationPolicy,
    seed: int,
    horizon: int,
    num_sequences: int = 256,
    ridge: float = 1e-3,
) -> dict[str, Any]:
    """How far the predictor's open-loop rollouts drift, in pixels.

    `num_sequences` exploratory sequences of `horizon` model steps (the training data's
    distribution, door-aimed ones included) are encoded; a ridge regression from latent to agent
    position is fitted on the true latents of every frame, then read on the latents predicted by
    rolling the predictor out from the first frame's latent with the true actions. A position
    error that grows with the step number is the rollout's drift; the error on the true latents
    (the probe's own floor) is returned beside it.

    Returns:
      {"predicted_px", "true_px": float [horizon] mean position error after model step
       1..horizon, read on predicted / true latents; "probe_fit_px": the probe's mean error on
       the latents it was fitted on}.
    """
    from jepa_jax.world_model import data as world_model_data

    key = jax.random.fold_in(jax.random.key(seed), ROLLOUT_ACCURACY_SEED_OFFSET)
    env, chunk = model.env, model.action_chunk

    @jax.jit
    def run(key):
        batch = world_model_data.batch(env, policy, key, num_sequences, horizon, chunk)
        z = model.encode(params["encoder"], batch["frames"])  # [N, H+1, P, D]
        state0, scene_map = model.conditioning(
            params["predictor"], batch["frames"][:, 0], batch["positions"][:, 0]
        )
        pred = model.rollout(  # [N, H, P, D]
            params["predictor"], z[:, 0], batch["actions"], 1, state0, scene_map
        )
        return z, pred, batch["positions"]

    z, pred, positions = map(np.asarray, run(key))

    read = PositionReadout.fit(z, positions, ridge)
    truth = positions[:, 1:]
    return {
        "predicted_px": np.linalg.norm(read(pred) - truth, axis=-1).mean(axis=0),
        "true_px": np.linalg.norm(read(z)[:, 1:] - truth, axis=-1).mean(axis=0),
        "probe_fit_px": float(np.linalg.norm(read(z) - positions, axis=-1).mean()),
    }


class PositionReadout:
    """A ridge regression from latents [..., P, D] to agent positions [..., 2] (pixels)."""

    def __init__(self, weights: np.ndarray):
        self.weights = weights  # [P*D + 1, 2]

    @staticmethod
    def _design(latents: np.ndarray) -> np.ndarray:  # [..., P, D] -> [M, P*D + 1]
        flat = np.asarray(latents).reshape(-1, int(np.prod(latents.shape[-2:])))
        return np.concatenate([flat, np.ones((len(flat), 1))], axis=1).astype(np.float64)

    @classmethod
    def fit(cls, latents: np.ndarray, positions: np.ndarray, ridge: float) -> PositionReadout:
        x, y = cls._design(latents), np.asarray(positions).reshape(-1, 2)
        return cls(np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y))

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        return (self._design(latents) @ self.weights).reshape(latents.shape[:-2] + (2,))


COLLISION_CASES = ("free", "door", "wall")


def collision_awareness(
    model: Any, params: Any, seed: int, num_layouts: int = 200, ridge: float = 1e-3
) -> dict[str, dict[str, float]]:
    """Does the predictor know the wall? One model step pushing right at full speed, from 20 px
    left of the wall ("free"), and from 4 px left of it at the door's centre ("door": the agent
    passes) and 10 px beside the door ("wall": the agent stops at the wall), over `num_layouts`
    random layouts. The predicted move is read from the predicted latent with a ridge read-out
    fitted on true latents of random frames (as `rollout_accuracy`).

    Returns:
      {case: {"true_px", "predicted_px": mean x-move, "predicted_std_px"}}. A wall-aware model
      predicts a short move for "wall" and a full one for "door".
    """
    from jepa_jax.planning import agents  # local: agents import the world model

    env, chunk = model.env, model.action_chunk
    key = jax.random.fold_in(jax.random.key(seed), ROLLOUT_ACCURACY_SEED_OFFSET + 1)
    k_fit, k_cases = jax.random.split(key)
    push = jnp.tile(jnp.array([1.0, 0.0]), chunk)  # action token, units of max_norm
    offsets = {"free": (-20.0, 0.0), "door": (-4.0, 0.0), "wall": (-4.0, 10.0)}

    def encode(layout, pos):
        return model.encode(params["encoder"], two_rooms.render(env, layout, pos))

    def push_once(layout, pos):  # (latent [P, D] at pos, predicted latent after one push)
        frame = two_rooms.render(env, layout, pos)
        state0, scene_map = model.conditioning(params["predictor"], frame[None], pos[None])
        z0 = model.encode(params["encoder"], frame)
        pred = model.rollout(params["predictor"], z0[None], push[None, None], 1, state0, scene_map)
        return z0, pred[0, 0]

    @jax.jit
    def fit_sample(key):
        k_layout, k_pos = jax.random.split(key)
        layout = two_rooms.sample_layout(env, k_layout)
        raw = jax.random.uniform(k_pos, (2,), minval=env.lo, maxval=env.hi)
        pos = two_rooms.project_to_free(env, layout, raw)
        return encode(layout, pos), pos

    z, pos = jax.vmap(fit_sample)(jax.random.split(k_fit, 16 * num_layouts))
    read = PositionReadout.fit(np.asarray(z), np.asarray(pos), ridge)

    @jax.jit
    def case(keys, dx, dy):
        def one(key):
            layout = two_rooms.sample_layout(env, key)
            # Wall beside the door: 10 px above or below it, whichever stays inside the room.
            sign = jnp.where(layout["door_y"] + dy < env.hi - 1.0, 1.0, -1.0)
            start = jnp.stack([layout["wall_x"] + dx, layout["door_y"] + sign * dy])
            actions = agents.env_actions(env, push)  # [chunk, 2] pixels
            end = two_rooms.rollout(env, layout, start, actions)[-1]
            return (end[0] - start[0], *push_once(layout, start))

        return jax.vmap(one)(keys)

    keys = jax.random.split(k_cases, num_layouts)
    out = {}
    for name in COLLISION_CASES:
        true, z0, pred = map(np.asarray, case(keys, *offsets[name]))
        moved = read(pred)[:, 0] - read(z0)[:, 0]
        out[name] = {
            "true_px": float(true.mean()),
            "predicted_px": float(moved.mean()),
            "predicted_std_px": float(moved.std()),
        }
    return out


# Agents `evaluate_all` can run, in report order: the learned model, then the references.
AGENTS = ("model", "random", "simulator", "simulator_geodesic", "simulator_latent")
AGENT_DESCRIPTIONS = {
    "model": "the world model (images only)",
    "random": "random exploratory policy (floor)",
    "simulator": "planner + true simulator, straight-line distance (blind to the wall)",
    "simulator_geodesic": "planner + true simulator, true geodesic distance (planner ceiling)",
    "simulator_latent": "planner + true simulator, learned latent distance (predictor ceiling)",
}


def planning_agent(name: str, config: Any, model: Any) -> Any:
    """The planning agent `name` (one of AGENTS but "random") of a world-model config, with its
    energy and distance from config.plan; model: the WorldModel ("model", "simulator_latent")."""
    from jepa_jax.planning import agents  # local: agents import the world model

    plan = config.plan
    energy, distance = str(plan.energy), str(plan.distance)
    if name == "model":
        return agents.LatentAgent(model, energy, distance, int(plan.context_steps))
    if name in ("simulator", "simulator_geodesic"):
        metric = "geodesic" if name == "simulator_geodesic" else "euclidean"
        env = two_rooms.from_config(config.env)
        return agents.SimulatorAgent(env, int(config.world_model.action_chunk), energy, metric)
    if name == "simulator_latent":
        return agents.SimulatorLatentAgent(model, energy, distance)
    planners = [a for a in AGENTS if a != "random"]  # the random policy plans nothing
    raise ValueError(f"no planning agent {name!r}; expected one of {planners}")


def evaluate_all(
    config: Any,
    model: Any,
    params: Any,
    agents_to_run: tuple[str, ...] = ("model",),
    episodes: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate the agents named in `agents_to_run` (keys of AGENTS) on the same tasks.

    Args:
      config: a world-model config (uses config.env, config.plan, config.world_model).
      model: the WorldModel (needed for "model" and "simulator_latent").
      params: {"encoder", "predictor"} params of the model.
      episodes: number of tasks (default config.plan.episodes).

    Returns:
      {agent name: {"summary": summarize(...), "result": raw per-episode arrays}}; tasks under
      "tasks".
    """
    plan = config.plan
    settings = mpc.settings_from_config(plan)
    env = two_rooms.from_config(config.env)
    episodes = int(plan.episodes) if episodes is None else int(episodes)
    seed, parallel = int(plan.seed), int(plan.parallel_episodes)
    tasks = make_tasks(env, seed, episodes, float(plan.start_margin))
    out: dict[str, Any] = {"tasks": tasks}
    for name in agents_to_run:
        if name not in AGENTS:
            raise ValueError(f"unknown agent {name!r}; expected one of {AGENTS}")
        if log is not None:
            log(f"{name}: {AGENT_DESCRIPTIONS[name]}")
        if name == "random":
            policy = trajectories.policy_from_config(config.world_model)
            result = random_policy(
                env, policy, tasks, seed, settings.max_steps, settings.success_radius
            )
        else:
            agent = planning_agent(name, config, model)
            agent_params = params if name in ("model", "simulator_latent") else {}
            result = evaluate_agent(settings, agent, agent_params, tasks, seed, parallel, log)
        out[name] = {"summary": summarize(result), "result": result}
    return out


def format_summary(name: str, summary: dict[str, float]) -> str:
    """One line: 'model  success 94% (47/50) | at the goal after the last step 92% | mean steps
    to goal 38.2 | 12.30 s/episode (+9 s compile)'."""
    n = summary["episodes"]
    wins = int(round(summary["success_rate"] * n))
    return (
        f"{name:<18} success {summary['success_rate']:.0%} ({wins}/{n}) | "
        f"at the goal after the last step {summary['final_success_rate']:.0%} | "
        f"mean steps to goal {summary['mean_steps_to_goal']:.1f} | "
        f"{summary['seconds_per_episode']:.2f} s/episode "
        f"(+{summary['compile_seconds']:.0f} s compile)"
    )
