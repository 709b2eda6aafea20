"""Two Rooms environment: physics (walls block, the door lets through, actions are clipped),
rendering, tasks and the deterministic trajectory generator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.envs import trajectories, two_rooms
from jepa_jax.errors import ConfigError
from jepa_jax.world_model import data

ENV = two_rooms.TwoRooms()  # 64 px, wall 3 px thick, door 9 px tall, max_norm 2.5
LAYOUT = {"wall_x": jnp.float32(32.0), "door_y": jnp.float32(18.0)}
LEFT_FACE = 32.0 - ENV.wall_half_width
RIGHT_FACE = 32.0 + ENV.wall_half_width


def walk(start, action, steps=30):
    return np.asarray(
        two_rooms.rollout(
            ENV, LAYOUT, jnp.asarray(start, jnp.float32), jnp.tile(action, (steps, 1))
        )
    )


@pytest.mark.parametrize("start,action", [((20.0, 50.0), (2.5, 0.0)), ((45.0, 40.0), (-2.5, 0.5))])
def test_wall_blocks_and_agent_slides_along_it(start, action):
    path = walk(start, jnp.asarray(action))
    x = path[:, 0]
    if action[0] > 0:
        assert x.max() == pytest.approx(LEFT_FACE)  # stopped at the face, never inside
    else:
        assert x.min() == pytest.approx(RIGHT_FACE)
    assert path[-1, 1] != start[1] or action[1] == 0  # the y part of the motion still happens


def test_door_lets_the_agent_through():
    path = walk((20.0, 18.0), jnp.asarray([2.5, 0.0]))
    assert path[-1, 0] == pytest.approx(ENV.hi)  # crossed the wall, stopped at the far border
    # Just above the door opening the same push is blocked.
    blocked = walk((20.0, 18.0 - ENV.door_half_height - 0.5), jnp.asarray([2.5, 0.0]))
    assert blocked[-1, 0] == pytest.approx(LEFT_FACE)


def test_doorway_walls_stop_vertical_motion():
    # Inside the doorway (within the wall's thickness) moving up stops at the door's edge.
    path = walk((32.0, 18.0), jnp.asarray([0.0, -2.5]), steps=10)
    assert path[-1, 1] == pytest.approx(18.0 - ENV.door_half_height)
    assert path[-1, 0] == pytest.approx(32.0)


def test_actions_are_clipped_to_max_norm():
    start = jnp.asarray([10.0, 40.0])
    big = two_rooms.step(ENV, LAYOUT, start, jnp.asarray([30.0, 40.0]))
    assert float(jnp.linalg.norm(big - start)) == pytest.approx(ENV.max_norm, rel=1e-5)
    np.testing.assert_allclose(big - start, np.array([0.6, 0.8]) * ENV.max_norm, rtol=1e-5)
    small = two_rooms.step(ENV, LAYOUT, start, jnp.asarray([0.3, -0.4]))
    np.testing.assert_allclose(small - start, [0.3, -0.4], atol=1e-5)
    # The arena border stops the agent too.
    corner = walk((5.0, 5.0), jnp.asarray([-2.5, -2.5]), steps=5)[-1]
    np.testing.assert_allclose(corner, [ENV.lo, ENV.lo])


def test_random_motion_never_enters_walls():
    policy = trajectories.ExplorationPolicy(heading_std=1.0)
    batch = jax.jit(lambda k: trajectories.generate_batch(ENV, policy, k, 256, 64))(
        jax.random.key(0)
    )
    free = jax.vmap(lambda pos, layout: two_rooms.is_free(ENV, layout, pos))(
        batch["positions"], batch["layout"]
    )
    assert bool(free.all())
    norms = np.linalg.norm(np.asarray(batch["actions"]), axis=-1)
    assert norms.max() <= ENV.max_norm + 1e-5
    # The door-aimed starts make crossings common (eb_jepa aims 35% of trajectories).
    side = np.asarray(batch["positions"][..., 0]) > np.asarray(batch["layout"]["wall_x"])[:, None]
    crossed = (side[:, 1:] != side[:, :-1]).any(axis=1)
    assert 0.15 < crossed.mean() < 0.8


def test_generator_is_deterministic_and_keyed():
    policy = trajectories.ExplorationPolicy()
    make = jax.jit(lambda k: data.batch(ENV, policy, k, 4, 3, 2))
    a, b, c = make(jax.random.key(7)), make(jax.random.key(7)), make(jax.random.key(8))
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    assert not np.array_equal(a["positions"], c["positions"])
    assert a["frames"].shape == (4, 4, 64, 64, 2)
    assert a["actions"].shape == (4, 3, 4)  # 3 model steps of 2 env actions (x, y)
    assert a["positions"].shape == (4, 4, 2)
    # Frames show the agent where the positions say (brightest pixel = rounded position).
    frame, pos = np.asarray(a["frames"][0, 2, ..., 0]), np.asarray(a["positions"][0, 2])
    row, col = np.unravel_index(frame.argmax(), frame.shape)
    assert abs(col - pos[0]) <= 0.5 and abs(row - pos[1]) <= 0.5


def test_render_walls_and_door():
    walls = np.asarray(two_rooms.wall_image(ENV, LAYOUT))
    assert walls[40, 31:34].tolist() == [1.0, 1.0, 1.0]  # the 3-px middle wall
    assert walls[18, 31:34].tolist() == [0.0, 0.0, 0.0]  # the door
    assert walls[0].all() and walls[:, -1].all()  # border
    assert walls[40, 30] == 0.0 and walls[40, 34] == 0.0


def test_tasks_put_start_and_goal_in_different_rooms():
    keys = jax.random.split(jax.random.key(3), 200)
    tasks = jax.vmap(lambda k: two_rooms.sample_task(ENV, k))(keys)
    rooms = jax.vmap(two_rooms.room_of)(tasks["layout"], tasks["start"])
    goal_rooms = jax.vmap(two_rooms.room_of)(tasks["layout"], tasks["goal"])
    assert bool((rooms != goal_rooms).all())
    assert 0.3 < float(rooms.mean()) < 0.7  # either room holds the start
    for name in ("start", "goal"):
        free = jax.vmap(lambda p, lay: two_rooms.is_free(ENV, lay, p))(tasks[name], tasks["layout"])
        assert bool(free.all())


def test_bad_env_config_is_a_config_error():
    from jepa_jax import config_lib

    env = config_lib.env_config()
    env.max_norm = -1.0
    with pytest.raises(ConfigError, match="max_norm"):
        two_rooms.from_config(env)
    env = config_lib.env_config()
    env.wall_x_range = (2.0, 60.0)
    with pytest.raises(ConfigError, match="wall_x_range"):
        two_rooms.from_config(env)


def test_policy_config_errors_name_the_world_model_key():
    keys = {"heading_std": 0.3, "step_min": 0.2, "door_rate": 1.5}
    with pytest.raises(ConfigError, match=r"config.world_model.door_rate=1.5 is invalid"):
        trajectories.policy_from_config(keys)
    keys["door_rate"] = 0.35
    assert trajectories.policy_from_config(keys).door_rate == 0.35


def test_channel_statistics_are_the_pixels_mean_and_std():
    # Every layout has the same number of wall pixels, and a blob well inside the image sums to
    # its analytic mass (the discretisation error of a Gaussian of std 1.5 is ~exp(-2 pi^2 s^2),
    # negligible), so the analytic statistics equal the empirical ones to float32 rounding.
    keys = jax.random.split(jax.random.key(0), 16)
    layouts = jax.vmap(lambda k: two_rooms.sample_layout(ENV, k))(keys)
    pos = jax.random.uniform(jax.random.key(1), (16, 2), minval=12.0, maxval=52.0)
    frames = jax.vmap(lambda lay, p: two_rooms.render(ENV, lay, p))(layouts, pos)
    mean, std = two_rooms.channel_statistics(ENV)
    pixels = np.asarray(frames, np.float64).reshape(16, -1, 2)
    np.testing.assert_allclose(pixels.mean(1), np.broadcast_to(mean, (16, 2)), rtol=1e-4)
    np.testing.assert_allclose(pixels.std(1), np.broadcast_to(std, (16, 2)), rtol=1e-4)
