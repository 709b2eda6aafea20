"""CEM and MPPI find the optimum of known energies; the MPC loop reaches goals with the true
simulator; planner settings are validated."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import config_lib
from jepa_jax.envs import two_rooms
from jepa_jax.errors import ConfigError
from jepa_jax.planning import agents, evaluate, mpc, planners, search
from jepa_jax.world_model.model import WorldModel

H, A = 6, 4
TARGET = jnp.asarray(np.random.default_rng(0).uniform(-0.6, 0.6, (H, A)), jnp.float32)
SCALES = jnp.asarray(np.random.default_rng(1).uniform(0.5, 3.0, (H, A)), jnp.float32)


def quadratic(actions):  # [N, H, A] -> [N], minimum 0 at TARGET
    return jnp.sum(SCALES * jnp.square(actions - TARGET), axis=(1, 2))


@pytest.mark.parametrize("kind", planners.PLANNERS)
def test_planner_finds_quadratic_optimum(kind):
    settings = planners.PlannerSettings(kind=kind, samples=256, elites=24, iterations=25)
    run = jax.jit(lambda key: planners.optimize(settings, quadratic, key, jnp.zeros((H, A)), 1.0))
    plan, info = run(jax.random.key(0))
    np.testing.assert_allclose(plan, TARGET, atol=0.05)
    costs = np.asarray(info["best_cost"])
    assert costs[-1] < 1e-2 < costs[0]  # the search improved on the first iteration


@pytest.mark.parametrize("kind", planners.PLANNERS)
def test_planner_respects_projection(kind):
    # The unconstrained optimum (2, 0) per 2-D action is outside the unit disc: the best
    # feasible plan is (1, 0), on the boundary.
    target = jnp.tile(jnp.asarray([2.0, 0.0]), (H, A // 2))
    cost = lambda a: jnp.sum(jnp.square(a - target), axis=(1, 2))
    settings = planners.PlannerSettings(kind=kind, samples=256, elites=24, iterations=20)
    plan, _ = planners.optimize(
        settings, cost, jax.random.key(1), jnp.zeros((H, A)), 1.0, agents.clip_tokens
    )
    pairs = np.asarray(plan).reshape(H, A // 2, 2)
    assert np.linalg.norm(pairs, axis=-1).max() <= 1.0 + 1e-5
    np.testing.assert_allclose(pairs[..., 0], 1.0, atol=0.05)
    np.testing.assert_allclose(pairs[..., 1], 0.0, atol=0.1)


def small_mpc(max_steps: int) -> mpc.MpcSettings:
    """MPPI 64 x 3, horizon 8: enough for the true simulator on the tasks below."""
    planner = planners.PlannerSettings(kind="mppi", samples=64, elites=8, iterations=3)
    return mpc.MpcSettings(planner=planner, horizon=8, max_steps=max_steps)


def door_task(door_y: float, start: tuple, goal: tuple) -> dict:
    """A task in the layout with the wall at x = 32 and the door centred at door_y."""
    layout = {"wall_x": jnp.float32(32.0), "door_y": jnp.float32(door_y)}
    return {"layout": layout, "start": jnp.asarray(start), "goal": jnp.asarray(goal)}


def test_mpc_with_true_simulator_reaches_goals_through_the_door():
    env = two_rooms.TwoRooms()
    settings = small_mpc(max_steps=120)
    # Start and goal in different rooms, the door on the straight line between them.
    task = door_task(30.0, (12.0, 28.0), (52.0, 33.0))
    agent = agents.SimulatorAgent(env, action_chunk=4)
    out = jax.jit(lambda t, k: mpc.run_episode(settings, agent, {}, t, k))(task, jax.random.key(0))
    assert bool(out["success"])
    steps = int(out["steps"])
    assert 16 <= steps < 120  # 40+ px at <= 2.5 px per step
    path = np.asarray(out["path"])
    assert np.linalg.norm(path[steps] - np.asarray(task["goal"])) <= settings.success_radius
    assert path[0, 0] < 32.0 < path[steps, 0]
    np.testing.assert_array_equal(path[steps:], np.broadcast_to(path[steps], path[steps:].shape))
    assert bool(out["success_final"])  # it stopped on arrival: both rules agree
    # Run the whole budget instead (eb_jepa's evaluation): the first arrival is the same, the
    # agent keeps replanning at the goal, and the final-step rule is scored where it ends.
    full = dataclasses.replace(settings, stop_at_goal=False)
    again = jax.jit(lambda t, k: mpc.run_episode(full, agent, {}, t, k))(task, jax.random.key(0))
    assert bool(again["success"]) and int(again["steps"]) == steps
    end = np.asarray(again["path"])[-1]
    assert not np.allclose(np.asarray(again["path"])[steps:], path[steps])  # it kept moving
    near = np.linalg.norm(end - np.asarray(task["goal"])) <= settings.success_radius
    assert bool(again["success_final"]) == near


def brute_force_geodesic(env, wall_x, door_y, a, b, n=801):
    """Shortest path through the doorway by dense search over where it crosses the wall's two
    faces (each room is convex, so the legs inside the rooms are straight)."""
    lo, hi = wall_x - env.wall_half_width, wall_x + env.wall_half_width
    ys = np.linspace(door_y - env.door_half_height, door_y + env.door_half_height, n)
    if (a[0] < wall_x) == (b[0] < wall_x):
        return float(np.linalg.norm(a - b))
    left, right = (a, b) if a[0] < wall_x else (b, a)
    to_left = np.hypot(left[0] - lo, left[1] - ys)  # [n] legs to the left face
    to_right = np.hypot(right[0] - hi, right[1] - ys)
    across = np.hypot(hi - lo, ys[:, None] - ys[None, :])  # [n, n] inside the doorway
    return float((to_left[:, None] + across + to_right[None, :]).min())


def test_geodesic_distance_goes_through_the_door():
    env = two_rooms.TwoRooms()
    tasks = evaluate.make_tasks(env, seed=3, num=24, margin=2.6)
    fn = jax.jit(jax.vmap(lambda t, a, b: two_rooms.geodesic_distance(env, t["layout"], a, b)))
    got = np.asarray(fn(tasks, tasks["start"], tasks["goal"]))
    for i in range(24):
        wall_x, door_y = float(tasks["layout"]["wall_x"][i]), float(tasks["layout"]["door_y"][i])
        a, b = np.asarray(tasks["start"][i]), np.asarray(tasks["goal"][i])
        want = brute_force_geodesic(env, wall_x, door_y, a, b)
        assert got[i] >= np.linalg.norm(a - b) - 1e-4  # never shorter than the straight line
        np.testing.assert_allclose(got[i], want, atol=0.02)
    # Within one room it is the straight line; it is symmetric.
    layout = {"wall_x": jnp.float32(32.0), "door_y": jnp.float32(18.0)}
    a, b = jnp.asarray([5.0, 50.0]), jnp.asarray([25.0, 10.0])
    d = two_rooms.geodesic_distance(env, layout, a, b)
    np.testing.assert_allclose(d, np.hypot(20.0, 40.0), rtol=1e-6)
    c = jnp.asarray([55.0, 50.0])
    np.testing.assert_allclose(
        two_rooms.geodesic_distance(env, layout, a, c),
        two_rooms.geodesic_distance(env, layout, c, a),
        rtol=1e-6,
    )


def test_geodesic_energy_leads_the_planner_around_the_wall():
    # The door is far from the straight line between start and goal: the straight-line energy
    # pushes the agent into the wall, the geodesic one leads it through the door.
    env = two_rooms.TwoRooms()
    settings = small_mpc(max_steps=150)
    task = door_task(12.0, (20.0, 52.0), (44.0, 52.0))
    outcomes = {}
    for metric in ("euclidean", "geodesic"):
        agent = agents.SimulatorAgent(env, action_chunk=4, distance=metric)
        run = jax.jit(lambda t, k, agent=agent: mpc.run_episode(settings, agent, {}, t, k))
        outcomes[metric] = bool(run(task, jax.random.key(0))["success"])
    assert outcomes == {"euclidean": False, "geodesic": True}


class PositionEncoder:
    """A stand-in world model whose 'latent' is the agent's true position (the blob's centroid):
    its latent distance is the straight-line distance, blind to the wall."""

    def encode(self, params, frames):  # [..., S, S, 2] -> [..., 1, 2]
        lead = frames.shape[:-3]
        blob = frames.reshape((-1,) + frames.shape[-3:])[..., 0]
        c = jnp.arange(blob.shape[-1], dtype=jnp.float32)
        mass = blob.sum(axis=(1, 2))
        x = (blob.sum(axis=1) * c).sum(-1) / mass
        y = (blob.sum(axis=2) * c).sum(-1) / mass
        return jnp.stack([x, y], axis=-1).reshape(lead + (1, 2))

    # The world model's goal comparison (l1 | l2: encode, then the latent distance).
    goal_target = WorldModel.goal_target
    distance_to_goal = WorldModel.distance_to_goal


def test_energy_quality_tells_a_wall_blind_energy_from_the_true_one():
    env = two_rooms.TwoRooms()
    q = evaluate.energy_quality(PositionEncoder(), {"encoder": {}}, env, "l2", seed=0,
                                num_tasks=8, positions_per_task=24)  # fmt: skip
    assert q["latent"].shape == q["geodesic"].shape == (8, 24)
    assert q["spearman_euclidean"] > 0.99  # it *is* the straight-line distance (squared)
    assert q["spearman_geodesic"] < q["spearman_euclidean"] - 0.02  # the wall's detours


def test_distance_field_maps_a_wall_blind_energy_beside_the_geodesic():
    env = two_rooms.TwoRooms()
    layout = {"wall_x": jnp.float32(32.0), "door_y": jnp.float32(14.0)}
    goal = np.asarray([22.0, 50.0], np.float32)  # left room, far from the door
    f = evaluate.distance_field(PositionEncoder(), {"encoder": {}}, env, "l2", layout, goal, 24)
    c = f["coords"]
    assert f["planning"].shape == f["geodesic"].shape == f["free"].shape == (24, 24)
    assert c[0] == env.lo and c[-1] == env.hi
    xs, ys = np.meshgrid(c, c, indexing="xy")  # [row = y, column = x]
    # Free: outside the 3-px wall band (|x - 32| < 1.5) or within the 9-px door (|y - 14| <= 4.5).
    np.testing.assert_array_equal(f["free"], (np.abs(xs - 32.0) >= 1.5) | (np.abs(ys - 14) <= 4.5))
    euclid = np.hypot(xs - goal[0], ys - goal[1])
    # The stand-in's l2 latent distance is the squared straight line / 2 (mean over x, y); its
    # minimum is at the grid point nearest the goal.
    nearest = np.unravel_index(np.argmin(euclid), euclid.shape)
    assert np.unravel_index(np.argmin(f["planning"]), euclid.shape) == nearest
    free = f["free"]
    rank = lambda v: np.argsort(np.argsort(v[free]))
    assert np.corrcoef(rank(f["planning"]), rank(euclid))[0, 1] > 0.99
    # The geodesic is never shorter than the straight line, and goes round the wall on the right.
    assert np.all(f["geodesic"][free] >= euclid[free] - 1e-3)
    right_top = free & (xs > 34) & (ys > 40)
    assert np.all(f["geodesic"][right_top] > euclid[right_top] + 20)


def test_random_policy_floor_is_scored_on_the_same_tasks():
    env = two_rooms.TwoRooms()
    tasks = evaluate.make_tasks(env, seed=0, num=8, margin=2.6)
    again = evaluate.make_tasks(env, seed=0, num=4, margin=2.6)  # task i independent of num
    np.testing.assert_array_equal(tasks["start"][:4], again["start"])
    from jepa_jax.envs.trajectories import ExplorationPolicy

    out = evaluate.random_policy(env, ExplorationPolicy(), tasks, 0, 200, 4.5)
    summary = evaluate.summarize(out)
    assert summary["episodes"] == 8 and 0.0 <= summary["success_rate"] <= 1.0
    assert summary["final_success_rate"] <= summary["success_rate"]  # ending there implies passing
    assert np.all((np.asarray(out["steps"]) >= 1) & (np.asarray(out["steps"]) <= 200))


def test_search_finds_the_door_with_a_wall_blind_distance():
    # The task where MPPI with the straight-line distance presses against the wall (above): the
    # wavefront search trusts that distance only within a step of the goal, so it goes round.
    env = two_rooms.TwoRooms()
    settings = dataclasses.replace(
        small_mpc(max_steps=150), planner=search.SearchSettings(width=64), horizon=12
    )
    task = door_task(12.0, (20.0, 52.0), (44.0, 52.0))
    agent = agents.SimulatorAgent(env, action_chunk=4, distance="euclidean")
    out = jax.jit(lambda t, k: mpc.run_episode(settings, agent, {}, t, k))(task, jax.random.key(0))
    assert bool(out["success"])
    path = np.asarray(out["path"])[: int(out["steps"]) + 1]
    assert path[:, 1].min() < 12.0 + env.door_half_height  # it went through the door
    # The shortest way is ~84 px; 2.5 px per env step: 34 steps at best.
    assert 34 <= int(out["steps"]) <= 60


def simulated_space(env, layout, pos, goal):
    """The true simulator as a SearchSpace, scored by the geodesic distance in model steps."""
    agent = agents.SimulatorAgent(env, action_chunk=4, distance="geodesic")
    return agent.search_space({}, goal, {"layout": layout}, pos)


def test_search_plan_leads_to_what_it_found_and_keeps_states_apart():
    env = two_rooms.TwoRooms()
    task = door_task(40.0, (10.0, 10.0), (50.0, 12.0))
    settings = search.SearchSettings(width=32, merge_px=5.0, goal_steps=0.5)
    space = simulated_space(env, task["layout"], task["start"], task["goal"])
    out = jax.jit(lambda: search.search(settings, space, depth=14))()
    assert bool(out["found"])
    plan = np.asarray(out["plan"])
    moves = np.linalg.norm(plan, axis=-1)
    length = int((moves > 0).sum())
    assert np.all(moves[length:] == 0) and np.all(moves[:length] > 0)  # zeros after the goal
    # The plan, executed in the simulator, ends where the search saw the goal: within
    # goal_steps model steps (10 px each) of it by the true distance.
    held = np.repeat(plan[:length] * env.max_norm, 4, axis=0)
    end = two_rooms.rollout(env, task["layout"], task["start"], jnp.asarray(held))[-1]
    geodesic = two_rooms.geodesic_distance(env, task["layout"], end, task["goal"])
    assert float(geodesic) / (env.max_norm * 4) < settings.goal_steps
    assert length >= 7  # ~80 px round the wall at <= 10 px per model step
    # Every state kept, at any depth, is more than merge_px from every other; all are free.
    kept = np.asarray(out["visited"])[np.asarray(out["visited_mask"])]
    assert 20 < len(kept) <= 1 + 32 * 14
    gaps = np.linalg.norm(kept[:, None] - kept[None], axis=-1)
    assert gaps[~np.eye(len(kept), dtype=bool)].min() > settings.merge_px
    free = jax.vmap(lambda p: two_rooms.project_to_free(env, task["layout"], p))(kept)
    np.testing.assert_allclose(free, kept, atol=1e-4)


def test_search_that_can_go_nowhere_plans_to_stand_still():
    space = search.SearchSpace(
        root=jnp.zeros((2,)),
        expand=lambda nodes, actions: nodes,  # every action leaves the state where it is
        position=lambda nodes: nodes,
        steps_to_goal=lambda nodes: jnp.full(nodes.shape[:1], 5.0),
    )
    out = search.search(search.SearchSettings(width=8), space, depth=4)
    assert not bool(out["found"]) and int(np.asarray(out["visited_mask"]).sum()) == 1
    np.testing.assert_array_equal(out["plan"], np.zeros((4, 2)))


def test_first_search_of_an_episode_starts_at_its_start():
    env = two_rooms.TwoRooms()
    task = door_task(40.0, (10.0, 10.0), (50.0, 12.0))
    agent = agents.SimulatorAgent(env, action_chunk=4, distance="geodesic")
    settings = dataclasses.replace(
        small_mpc(max_steps=50), planner=search.SearchSettings(width=16), horizon=10
    )
    out = evaluate.first_search(settings, agent, {}, task)
    assert bool(out["found"]) and out["visited"].shape == (11, 16, 2)
    np.testing.assert_allclose(out["visited"][0, 0], task["start"])
    assert out["visited_mask"][0].sum() == 1 and out["visited_mask"][1:].sum() > 10
    with pytest.raises(ValueError, match="plan.planner='search'"):
        evaluate.first_search(small_mpc(max_steps=50), agent, {}, task)


def test_search_settings_are_validated():
    plan = config_lib.plan_config()
    plan.update(planner="search", distance="head")
    assert isinstance(mpc.settings_from_config(plan).planner, search.SearchSettings)
    for key, value, message in [
        ("distance", "l1", "plan.distance='l1' is invalid: expected 'head'"),
        ("search_speeds", (1.5,), "plan.search_speeds=(1.5,)"),
        ("search_width", 0, "plan.search_width=0"),
        ("search_merge_px", 0.0, "plan.search_merge_px=0.0"),
        ("action_repeat", 2, "plan.action_repeat=2"),
    ]:
        bad = config_lib.plan_config()
        bad.update(planner="search", distance="head")
        bad[key] = value
        with pytest.raises(ConfigError, match=re.escape(message)):
            mpc.settings_from_config(bad)


def test_bad_plan_settings_are_config_errors():
    plan = config_lib.plan_config()
    plan.planner = "ilqr"
    with pytest.raises(ConfigError, match="plan.planner='ilqr'"):
        mpc.settings_from_config(plan)
    plan = config_lib.plan_config()
    plan.elites = plan.samples + 1
    with pytest.raises(ConfigError, match="plan.elites"):
        mpc.settings_from_config(plan)
    plan = config_lib.plan_config()
    plan.replan_every = plan.horizon + 1
    with pytest.raises(ConfigError, match="plan.replan_every"):
        mpc.settings_from_config(plan)
    plan = config_lib.plan_config()
    plan.action_repeat = 3  # does not divide the horizon of 16
    with pytest.raises(ConfigError, match="plan.action_repeat=3 is invalid"):
        mpc.settings_from_config(plan)


def test_held_actions_reach_the_goal_and_are_held():
    # action_repeat=2: the planner searches 4 actions for a horizon of 8 model steps, each held
    # for 2 model steps (8 env steps); executing 2 model steps per plan runs one action 8 times.
    env = two_rooms.TwoRooms()
    settings = dataclasses.replace(small_mpc(max_steps=120), action_repeat=2, replan_every=2)
    task = door_task(30.0, (12.0, 28.0), (52.0, 33.0))
    agent = agents.SimulatorAgent(env, action_chunk=4)
    out = jax.jit(lambda t, k: mpc.run_episode(settings, agent, {}, t, k))(task, jax.random.key(0))
    assert bool(out["success"])
    path = np.asarray(out["path"])
    moves = np.diff(path[:9], axis=0)  # the first plan's 8 env steps, in the free left room
    np.testing.assert_allclose(moves, np.broadcast_to(moves[0], moves.shape), atol=1e-5)


@dataclasses.dataclass(frozen=True)
class PositionWorldModel:
    """Stand-in world model: the latent is the blob's centroid (the true position), and the
    predictor either moves it by the chunk's summed actions, ignoring walls ("free"), or keeps
    it where it is ("frozen")."""

    env: two_rooms.TwoRooms
    action_chunk: int
    predictor: str

    def encode(self, params, frames):  # [..., S, S, 2] -> [..., 1, 2]
        flat = frames.reshape((-1,) + frames.shape[-3:])
        return PositionEncoder().encode(params, flat).reshape(frames.shape[:-3] + (1, 2))

    def conditioning(self, predictor_params, frame, position):  # no state, no egocentric view
        return None, None

    def rollout(self, params, z0, tokens, context, state0=None, scene_map=None):
        """[N, 1, 2], [N, H, A] -> [N, H, 1, 2]."""
        moves = agents.env_actions(self.env, tokens).sum(axis=-2)  # [N, H, 2] pixels
        if self.predictor == "frozen":
            moves = jnp.zeros_like(moves)
        return (z0[:, None] + jnp.cumsum(moves, axis=1)[:, :, None]).clip(self.env.lo, self.env.hi)


def test_rollout_accuracy_measures_drift_in_pixels():
    from jepa_jax.envs import trajectories
    from jepa_jax.world_model import data as world_model_data

    env, policy, horizon, n = two_rooms.TwoRooms(), trajectories.ExplorationPolicy(), 6, 64
    out = {}
    for kind in ("frozen", "free"):
        model = PositionWorldModel(env, 4, kind)
        out[kind] = evaluate.rollout_accuracy(model, {"encoder": {}, "predictor": {}}, policy,
                                              seed=0, horizon=horizon, num_sequences=n)  # fmt: skip
    frozen, free = out["frozen"], out["free"]
    assert frozen["predicted_px"].shape == frozen["true_px"].shape == (horizon,)
    # The latent is the position, so the linear read-out is near exact (the blob's centroid is
    # off only where the border clips the blob).
    assert frozen["probe_fit_px"] < 0.5 and np.all(frozen["true_px"] < 0.5)
    # A predictor that never moves drifts by exactly how far the agent went, recomputed here
    # from the same sequences (the read-out error bounds the difference).
    key = jax.random.fold_in(jax.random.key(0), evaluate.ROLLOUT_ACCURACY_SEED_OFFSET)
    positions = np.asarray(world_model_data.batch(env, policy, key, n, horizon, 4)["positions"])
    went = np.linalg.norm(positions[:, 1:] - positions[:, :1], axis=-1).mean(axis=0)
    np.testing.assert_allclose(frozen["predicted_px"], went, atol=2 * frozen["probe_fit_px"] + 0.1)
    assert np.all(np.diff(frozen["predicted_px"]) > 0)
    # Free-space dynamics are wrong only at walls: far less drift than not moving at all.
    assert np.all(free["predicted_px"] < 0.5 * frozen["predicted_px"])


def test_collision_awareness_reads_predicted_moves_at_the_wall_and_the_door():
    env = two_rooms.TwoRooms()
    params = {"encoder": {}, "predictor": {}}
    blind = evaluate.collision_awareness(PositionWorldModel(env, 4, "free"), params, 0, 32)
    still = evaluate.collision_awareness(PositionWorldModel(env, 4, "frozen"), params, 0, 32)
    full = 4 * env.max_norm
    # The cases' true moves: free space and the door let the full push through, the wall stops
    # the agent at its face (4 px away, 1.5 px of it is wall).
    assert blind["free"]["true_px"] == pytest.approx(full, abs=0.2)
    assert blind["door"]["true_px"] == pytest.approx(full, abs=0.2)
    assert blind["wall"]["true_px"] == pytest.approx(4.0 - env.wall_half_width, abs=0.2)
    # A wall-blind predictor moves the full push everywhere; a frozen one nowhere.
    for name in evaluate.COLLISION_CASES:
        assert blind[name]["predicted_px"] == pytest.approx(full, abs=0.5)
        assert still[name]["predicted_px"] == pytest.approx(0.0, abs=0.5)


def test_planning_benchmark_maps_the_failed_episodes(tmp_path):
    """`benchmarks/planning.py --failure_plot` trains a seconds-long model, plans, and draws the
    distance maps; asking for the map without the model agent is a one-line error, before any
    training."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(repo, "benchmarks", "planning.py")
    config = os.path.join(repo, "configs", "ac_two_rooms.py") + ":runlocal"
    png, workdir = tmp_path / "failures.png", tmp_path / "run"
    args = [sys.executable, script, f"--config={config}", f"--workdir={workdir}"]
    bad = subprocess.run(args + ["--agents=random", f"--failure_plot={png}"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0
    assert "--failure_plot needs the 'model' agent; --agents=random" in bad.stderr
    assert not workdir.exists() and not png.exists()
    ok = subprocess.run(args + ["--agents=model", "--episodes=2", f"--failure_plot={png}"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    # The seconds-long model fails both episodes: both are drawn.
    assert f"wrote {png} (2 episodes: 0, 1)" in ok.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_planning_agent_builds_each_planner_and_names_the_choices_otherwise():
    config = config_lib.base_config("world_model")
    assert isinstance(evaluate.planning_agent("simulator", config, None), agents.SimulatorAgent)
    expected = "'model', 'simulator', 'simulator_geodesic', 'simulator_latent'"
    for bad in ("random", "oracle"):
        with pytest.raises(ValueError, match=f"no planning agent '{bad}'; .*{re.escape(expected)}"):
            evaluate.planning_agent(bad, config, None)
