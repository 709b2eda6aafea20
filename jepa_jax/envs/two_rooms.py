"""Two Rooms: a point agent in a square arena split by a vertical wall with a door, in pure JAX.

Coordinates are continuous pixels: x is the column, y the row, pixel centres at integers
0..size-1. The agent's centre lives in the free square [lo, hi]^2 (lo = border, hi = size-1-border)
minus the wall's solid part, {|x - wall_x| < wall_half_width and |y - door_y| > door_half_height}.

An action is a 2-D displacement (pixels) whose norm is clipped to `max_norm`. A step moves the
agent in `substeps` equal parts; each part moves x then y and stops at any wall face it would
cross (so the agent slides along walls and never tunnels, whatever `max_norm` is). Every function
here is pure and works under `jit` and `vmap`: a layout is a dict of two scalars, a position a
float32 [2] array, and batches are made with `jax.vmap`.

Observations are top-down images, float32 [size, size, 2] in [0, 1]: channel 0 holds the agent
(a Gaussian blob of std `dot_std`), channel 1 the walls (border and middle wall).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.errors import need_under

Layout = dict[str, jax.Array]  # {"wall_x": float32 [], "door_y": float32 []}


@dataclasses.dataclass(frozen=True)
class TwoRooms:
    """Static parameters of the environment (hashable, so usable as a jit static argument)."""

    size: int = 64  # image side, pixels
    border: float = 2.0  # border wall thickness; the free square is [border, size-1-border]
    wall_half_width: float = 1.5  # the middle wall is 3 px thick
    door_half_height: float = 4.5  # the door is 9 px tall
    wall_x_range: tuple[float, float] = (20.0, 44.0)  # integer wall_x drawn uniformly in range
    door_y_range: tuple[float, float] = (10.0, 54.0)  # integer door_y drawn uniformly in range
    fixed_wall: bool = False  # True: always wall_x, door_y = fixed_layout
    fixed_layout: tuple[float, float] = (32.0, 18.0)
    max_norm: float = 2.5  # largest displacement per step, pixels
    substeps: int = 4  # collision sub-steps per step (each moves <= max_norm/substeps)
    dot_std: float = 1.5  # std of the agent's Gaussian blob, pixels

    @property
    def lo(self) -> float:
        return float(self.border)

    @property
    def hi(self) -> float:
        return float(self.size - 1 - self.border)


def from_config(env_config: Mapping[str, Any]) -> TwoRooms:
    """The environment of `config.env` (see config_lib.env_config); raises ConfigError."""
    env = TwoRooms(
        size=int(env_config["image_size"]),
        border=float(env_config["border"]),
        wall_half_width=float(env_config["wall_width"]) / 2.0,
        door_half_height=float(env_config["door_height"]) / 2.0,
        wall_x_range=tuple(float(v) for v in env_config["wall_x_range"]),
        door_y_range=tuple(float(v) for v in env_config["door_y_range"]),
        fixed_wall=bool(env_config["fixed_wall"]),
        fixed_layout=tuple(float(v) for v in env_config["fixed_layout"]),
        max_norm=float(env_config["max_norm"]),
        substeps=int(env_config["substeps"]),
        dot_std=float(env_config["dot_std"]),
    )
    validate(env)
    return env


def validate(env: TwoRooms) -> None:
    """Raise ConfigError if the geometry cannot hold two rooms joined by a door."""

    need = need_under("env")

    need(env.size >= 16, "image_size", env.size, "an integer >= 16")
    need(0 < env.border < env.size / 4, "border", env.border, f"in (0, {env.size / 4})")
    need(env.max_norm > 0, "max_norm", env.max_norm, "a number > 0")
    need(env.substeps >= 1, "substeps", env.substeps, "an integer >= 1")
    need(env.dot_std > 0, "dot_std", env.dot_std, "a number > 0")
    need(env.wall_half_width > 0, "wall_width", 2 * env.wall_half_width, "a number > 0")
    need(env.door_half_height > 0, "door_height", 2 * env.door_half_height, "a number > 0")
    room = 4.0  # each room at least this wide; the door inside the arena
    w, dh = env.wall_half_width, env.door_half_height
    for key, (a, b), lo, hi in (
        ("wall_x_range", env.wall_x_range, env.lo + w + room, env.hi - w - room),
        ("door_y_range", env.door_y_range, env.lo + dh, env.hi - dh),
    ):
        need(
            lo <= a <= b <= hi, key, (a, b), f"a pair (low, high) with {lo} <= low <= high <= {hi}"
        )
    wx, dy = env.fixed_layout
    need(
        env.wall_x_range[0] <= wx <= env.wall_x_range[1]
        and env.door_y_range[0] <= dy <= env.door_y_range[1],
        "fixed_layout",
        env.fixed_layout,
        "(wall_x, door_y) within wall_x_range and door_y_range",
    )


# ---------------------------------------------------------------------------------------------
# Layouts and positions.
# ---------------------------------------------------------------------------------------------


def sample_layout(env: TwoRooms, key: jax.Array) -> Layout:
    """A wall and door position: integers drawn uniformly in the ranges (or the fixed layout)."""
    if env.fixed_wall:
        wx, dy = env.fixed_layout
        return {"wall_x": jnp.float32(wx), "door_y": jnp.float32(dy)}
    kx, ky = jax.random.split(key)
    (x0, x1), (y0, y1) = env.wall_x_range, env.door_y_range
    wx = jax.random.randint(kx, (), int(x0), int(x1) + 1).astype(jnp.float32)
    dy = jax.random.randint(ky, (), int(y0), int(y1) + 1).astype(jnp.float32)
    return {"wall_x": wx, "door_y": dy}


def in_door_rows(env: TwoRooms, layout: Layout, y: jax.Array) -> jax.Array:
    """Whether row coordinate y lies in the door opening."""
    return jnp.abs(y - layout["door_y"]) <= env.door_half_height


def in_wall_band(env: TwoRooms, layout: Layout, x: jax.Array) -> jax.Array:
    """Whether column coordinate x lies strictly inside the middle wall's thickness."""
    return jnp.abs(x - layout["wall_x"]) < env.wall_half_width


def is_free(env: TwoRooms, layout: Layout, pos: jax.Array) -> jax.Array:
    """Whether a position [..., 2] is a legal agent position (inside the arena, not in the wall)."""
    x, y = pos[..., 0], pos[..., 1]
    inside = (x >= env.lo) & (x <= env.hi) & (y >= env.lo) & (y <= env.hi)
    solid = in_wall_band(env, layout, x) & ~in_door_rows(env, layout, y)
    return inside & ~solid


def project_to_free(env: TwoRooms, layout: Layout, pos: jax.Array) -> jax.Array:
    """The nearest legal position along x: clamp into the arena, then push out of the wall."""
    pos = jnp.clip(pos, env.lo, env.hi)
    x, y = pos[0], pos[1]
    wx, w = layout["wall_x"], env.wall_half_width
    solid = in_wall_band(env, layout, x) & ~in_door_rows(env, layout, y)
    x = jnp.where(solid, jnp.where(x < wx, wx - w, wx + w), x)
    return jnp.stack([x, y])


def room_of(layout: Layout, pos: jax.Array) -> jax.Array:
    """0 for the left room, 1 for the right one (by the wall's centre line), int32 [...]."""
    return (pos[..., 0] > layout["wall_x"]).astype(jnp.int32)


def _segment_clears_wall(env: TwoRooms, layout: Layout, p: jax.Array, q: jax.Array) -> jax.Array:
    """Whether the straight segment p -> q ([2] each) misses the wall's solid part: where it lies
    inside the wall's thickness, its rows stay in the door opening (tolerance 1e-3 px, so paths
    through the door's corners count as clear)."""
    lo, hi = layout["wall_x"] - env.wall_half_width, layout["wall_x"] + env.wall_half_width
    dx = q[0] - p[0]
    vertical = jnp.abs(dx) < 1e-9  # a vertical segment lies in the band wholly or not at all
    safe_dx = jnp.where(vertical, 1.0, dx)
    t_lo, t_hi = (lo - p[0]) / safe_dx, (hi - p[0]) / safe_dx
    t0 = jnp.where(vertical, 0.0, jnp.clip(jnp.minimum(t_lo, t_hi), 0.0, 1.0))
    t1 = jnp.where(vertical, 1.0, jnp.clip(jnp.maximum(t_lo, t_hi), 0.0, 1.0))
    crosses = jnp.where(vertical, (p[0] > lo) & (p[0] < hi), t1 > t0)
    y0, y1 = p[1] + t0 * (q[1] - p[1]), p[1] + t1 * (q[1] - p[1])
    tol = 1e-3
    door_lo = layout["door_y"] - env.door_half_height - tol
    door_hi = layout["door_y"] + env.door_half_height + tol
    in_door = (jnp.minimum(y0, y1) >= door_lo) & (jnp.maximum(y0, y1) <= door_hi)
    return ~crosses | in_door


def geodesic_distance(env: TwoRooms, layout: Layout, a: jax.Array, b: jax.Array) -> jax.Array:
    """Length of the shortest wall-avoiding path between free positions a and b ([2] each), pixels.

    The free space is two convex rooms joined by the doorway, whose only reflex corners are the
    doorway's four corners; a shortest path is therefore the straight segment or bends at one or
    two of those corners. Every such candidate whose segments clear the wall is measured and the
    shortest kept. Equal to the Euclidean distance within a room; through the door otherwise.
    """
    wx, w = layout["wall_x"], env.wall_half_width
    dy, dh = layout["door_y"], env.door_half_height
    corners = jnp.stack(
        [
            jnp.stack([wx - w, dy - dh]),
            jnp.stack([wx - w, dy + dh]),
            jnp.stack([wx + w, dy - dh]),
            jnp.stack([wx + w, dy + dh]),
        ]
    )  # [4, 2]

    def clear(p, q):
        return _segment_clears_wall(env, layout, p, q)

    def seg(p, q):
        return jnp.linalg.norm(q - p)

    inf = jnp.float32(jnp.inf)
    direct = jnp.where(clear(a, b), seg(a, b), inf)

    def via(c, d):  # a -> c -> d -> b; c == d is the one-corner path (a zero-length middle leg)
        ok = clear(a, c) & clear(c, d) & clear(d, b)
        return jnp.where(ok, seg(a, c) + seg(c, d) + seg(d, b), inf)

    bent = jax.vmap(lambda c: jax.vmap(lambda d: via(c, d))(corners))(corners)
    return jnp.minimum(direct, bent.min())


# ---------------------------------------------------------------------------------------------
# Dynamics.
# ---------------------------------------------------------------------------------------------


def clip_action(env: TwoRooms, action: jax.Array) -> jax.Array:
    """Rescale actions [..., 2] whose norm exceeds max_norm onto the max_norm circle."""
    norm = jnp.linalg.norm(action, axis=-1, keepdims=True)
    return action * jnp.minimum(1.0, env.max_norm / jnp.maximum(norm, 1e-12))


def _substep(env: TwoRooms, layout: Layout, pos: jax.Array, delta: jax.Array) -> jax.Array:
    # x first: outside the door rows, a move that would enter the wall stops at its face.
    wx, w = layout["wall_x"], env.wall_half_width
    x, y = pos[0], pos[1]
    nx = x + delta[0]
    blocked = ~in_door_rows(env, layout, y)
    nx = jnp.where(blocked & (x <= wx - w) & (nx > wx - w), wx - w, nx)
    nx = jnp.where(blocked & (x >= wx + w) & (nx < wx + w), wx + w, nx)
    nx = jnp.clip(nx, env.lo, env.hi)
    # then y: inside the wall's thickness (i.e. in the doorway) y stays within the door rows.
    ny = y + delta[1]
    dy, dh = layout["door_y"], env.door_half_height
    ny = jnp.where(in_wall_band(env, layout, nx), jnp.clip(ny, dy - dh, dy + dh), ny)
    ny = jnp.clip(ny, env.lo, env.hi)
    return jnp.stack([nx, ny])


def step(env: TwoRooms, layout: Layout, pos: jax.Array, action: jax.Array) -> jax.Array:
    """One environment step: float32 [2] position, [2] action (pixels) -> new [2] position.

    The action is clipped to max_norm; walls stop the motion component that would cross them.
    """
    delta = clip_action(env, action.astype(jnp.float32)) / env.substeps
    for _ in range(env.substeps):  # a handful of scalar ops: unrolled
        pos = _substep(env, layout, pos, delta)
    return pos


def rollout(env: TwoRooms, layout: Layout, pos: jax.Array, actions: jax.Array) -> jax.Array:
    """Positions after each of actions [T, 2] from pos [2]: float32 [T, 2] (start excluded)."""

    def body(p, a):
        p = step(env, layout, p, a)
        return p, p

    return jax.lax.scan(body, pos, actions)[1]


# ---------------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------------


# Observation channels (render): the agent's blob, and the walls (static within an episode).
AGENT_CHANNEL, WALL_CHANNEL = 0, 1


def wall_image(env: TwoRooms, layout: Layout) -> jax.Array:
    """Channel 1: float32 [size, size], 1 on the border and the middle wall, 0 elsewhere."""
    c = jnp.arange(env.size, dtype=jnp.float32)
    cols, rows = c[None, :], c[:, None]
    half = 0.5  # a pixel is wall when its centre is beyond the free square by half a pixel
    border = (cols < env.lo - half) | (cols > env.hi + half)
    border = border | (rows < env.lo - half) | (rows > env.hi + half)
    middle = in_wall_band(env, layout, cols) & ~in_door_rows(env, layout, rows)
    return (border | middle).astype(jnp.float32)


def agent_image(env: TwoRooms, pos: jax.Array) -> jax.Array:
    """Channel 0: float32 [size, size], a Gaussian blob exp(-d^2 / (2 dot_std^2)) at pos [2]."""
    c = jnp.arange(env.size, dtype=jnp.float32)
    gx = jnp.exp(-jnp.square(c - pos[0]) / (2 * env.dot_std**2))
    gy = jnp.exp(-jnp.square(c - pos[1]) / (2 * env.dot_std**2))
    return gy[:, None] * gx[None, :]  # separable: rows from y, columns from x


def channel_statistics(env: TwoRooms) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per-channel (mean, std) of an observation's pixels, ((agent, wall), (agent, wall)), to
    standardise frames as eb_jepa does: raw, the wall channel (~16% of the pixels at 64 px)
    outweighs the agent's small blob, and a conv encoder then learns the layout long before the
    position.

    Agent: a blob of peak 1 has sum 2 pi s^2 and sum of squares pi s^2 (s = dot_std), so over
    size^2 pixels mean = 2 pi s^2 / size^2 and E[x^2] = pi s^2 / size^2 (border truncation
    ignored). Wall: the pixel count is the same in every layout, so the fixed one's image gives
    it exactly."""
    n = float(env.size) ** 2
    s2 = float(env.dot_std) ** 2
    agent_mean, agent_sq = 2.0 * np.pi * s2 / n, np.pi * s2 / n
    wx, dy = env.fixed_layout
    walls = np.asarray(wall_image(env, {"wall_x": jnp.float32(wx), "door_y": jnp.float32(dy)}))
    wall_mean = float(walls.mean())  # binary: E[x^2] = E[x]
    mean = (agent_mean, wall_mean)
    std = (float(np.sqrt(agent_sq - agent_mean**2)), float(np.sqrt(wall_mean - wall_mean**2)))
    return mean, std


def render(env: TwoRooms, layout: Layout, pos: jax.Array) -> jax.Array:
    """Top-down observation of position [2]: float32 [size, size, 2] in [0, 1]."""
    return jnp.stack([agent_image(env, pos), wall_image(env, layout)], axis=-1)


def render_many(env: TwoRooms, layout: Layout, positions: jax.Array) -> jax.Array:
    """Observations of positions [T, 2] in one layout: float32 [T, size, size, 2]."""
    walls = wall_image(env, layout)
    agents = jax.vmap(lambda p: agent_image(env, p))(positions)
    return jnp.stack([agents, jnp.broadcast_to(walls, agents.shape)], axis=-1)


# ---------------------------------------------------------------------------------------------
# Navigation tasks.
# ---------------------------------------------------------------------------------------------


def sample_task(env: TwoRooms, key: jax.Array, margin: float = 2.6) -> dict[str, Any]:
    """A random layout with a start and a goal in different rooms.

    x is drawn at least `margin` from the border and the wall faces, y at least `margin` from the
    border; start and goal are swapped with probability 1/2, so either room can hold the start.

    Returns:
      {"layout": Layout, "start": float32 [2], "goal": float32 [2]}.
    """
    k_layout, k_left, k_right, k_y, k_swap = jax.random.split(key, 5)
    layout = sample_layout(env, k_layout)
    wx, w = layout["wall_x"], env.wall_half_width
    lx = jax.random.uniform(k_left, (), minval=env.lo + margin, maxval=wx - w - margin)
    rx = jax.random.uniform(k_right, (), minval=wx + w + margin, maxval=env.hi - margin)
    ys = jax.random.uniform(k_y, (2,), minval=env.lo + margin, maxval=env.hi - margin)
    left, right = jnp.stack([lx, ys[0]]), jnp.stack([rx, ys[1]])
    swap = jax.random.bernoulli(k_swap)
    start = jnp.where(swap, right, left)
    goal = jnp.where(swap, left, right)
    return {"layout": layout, "start": start, "goal": goal}
