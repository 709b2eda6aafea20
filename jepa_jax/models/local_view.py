"""An egocentric view for the world model's predictor: the static scene around the agent.

Whether a move is blocked is a *local* rule (is there wall within one move of the agent, in the
direction of the action?). A cell that sees only a global latent learns that narrow rule slowly
(measured on Two Rooms: a GRU or MLP fed the exact global state still predicted moves into the
wall after 1000 steps), while the same rule read from a crop of the wall around the agent is a
small convolution (learned in the same 1000 steps to 0.07 px^2 one-step error). So the predictor
may look at the start frame's static channel (the walls do not move) around the agent's current,
possibly predicted, position.

What the predictor sees is defined by `crop_around` (a size x size window, outside = wall) read
by two stride-2 VALID 3x3 convolutions. A planner evaluates that for every candidate at every
step of every rollout (~50k windows per replan), but the scene is the same for all of them: so
`LocalViewEncoder.scene_map` runs the convolutions once over the whole padded scene at full
resolution (the second one dilated by 2), and `read` gathers each window's outputs from it (every
4th pixel from the window's corner). A planner goes one step further: `projected_map` also
applies the output layer at every pixel (a dilated convolution), so that `read_projected` is a
single gather per window (2.9x less planning time than `read`). All give the same numbers
(tests/test_world_model.py).

The agent's next position is free-space kinematics with a learned brake (`Passability`): each
env action of a chunk moves the agent by passability(view at its current position, action) x the
action, per axis in (0, 1), starting near 1 ("nothing blocks"). Blocking is then one local
yes/no per sub-step, which a free-form head that regresses the chunk's whole move learned only
halfway in 1000 steps (a move into the wall predicted at 4.8 px against 2.5 true, 10 in free
space).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def crop_around(scene: jax.Array, center: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """A size x size window of scene [H, W] centred on center [2] = (x, y) in pixels: window
    pixel (size/2, size/2) is the scene pixel (round(y), round(x)); pixels outside the scene read
    as 1 (wall: the world ends there). Centers are clipped to the scene.

    Returns:
      (window float32 [size, size], offset float32 [2] = center - the rounded centre, in
      [-0.5, 0.5] px).
    """
    half = size // 2
    padded = jnp.pad(scene.astype(jnp.float32), half, constant_values=1.0)
    whole, offset = _round_center(scene.shape, center)
    # Scene pixel (x, y) is padded pixel (x + half, y + half): the window starts at (x, y).
    window = jax.lax.dynamic_slice(padded, (whole[1], whole[0]), (size, size))
    return window, offset


def _round_center(shape: tuple[int, ...], center: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Clip center [2] (x, y) to a scene of shape (H, W), round it: (int32 [2], offset [2])."""
    hi = jnp.array([shape[1] - 1, shape[0] - 1], jnp.float32)
    c = jnp.clip(center.astype(jnp.float32), 0.0, hi)
    whole = jnp.round(c)
    return whole.astype(jnp.int32), c - whole


def _scene_shape(scene_map: jax.Array, margin: int) -> tuple[int, int]:
    """(H, W) of the scenes behind maps [N, H + margin, W + margin, C]."""
    return (scene_map.shape[1] - margin, scene_map.shape[2] - margin)


def _conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, dilation: int):
    """VALID 2-D convolution of x [N, H, W, Cin] with kernel [3, 3, Cin, Cout], then gelu."""
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding="VALID",
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return nn.gelu(y + bias)


class LocalViewEncoder(nn.Module):
    """Features [..., features] of the size x size window of a scene around a position."""

    size: int  # window side, px (even)
    channels: int = 16
    features: int = 64

    def setup(self):
        init = nn.initializers.lecun_normal()
        self.kernel0 = self.param("conv0_kernel", init, (3, 3, 1, self.channels))
        self.bias0 = self.param("conv0_bias", nn.initializers.zeros, (self.channels,))
        self.kernel1 = self.param("conv1_kernel", init, (3, 3, self.channels, self.channels))
        self.bias1 = self.param("conv1_bias", nn.initializers.zeros, (self.channels,))
        self.out = nn.Dense(self.features, name="out")

    @property
    def grid(self) -> int:
        """Side of the second convolution's output on one window (5 for a 24-px window)."""
        return ((self.size - 3) // 2 + 1 - 3) // 2 + 1

    def scene_map(self, scene: jax.Array) -> jax.Array:
        """Scenes [N, H, W] -> full-resolution maps [N, H + size - 6, W + size - 6, channels]:
        map pixel (y, x) holds the second convolution's output at the corner of the window
        centred on scene pixel (y, x)."""
        half = self.size // 2
        x = jnp.pad(
            scene.astype(jnp.float32), ((0, 0), (half, half), (half, half)), constant_values=1.0
        )
        x = _conv(x[..., None], self.kernel0, self.bias0, stride=1, dilation=1)
        return _conv(x, self.kernel1, self.bias1, stride=1, dilation=2)

    def projected_map(self, scene: jax.Array) -> jax.Array:
        """Scenes [N, H, W] -> [N, H', W', features] (H', W' >= H, W): the output layer's
        pre-activation, without the offset's part, for the window centred on every scene pixel.

        The output layer is linear in the gathered block, so applying it to every pixel of the
        scene map is one dilated g x g convolution (dilation 4, the gather's stride); a read is
        then a single gather (`read_projected`). That is worth it when one scene serves many
        reads (a planner: ~50k per replan), not when each sequence has its own scene (training:
        one scene per 8 steps)."""
        g, c = self.grid, self.channels
        kernel = self.out.variables["params"]["kernel"]
        window_part = kernel[: g * g * c].reshape(g, g, c, self.features)
        y = jax.lax.conv_general_dilated(
            self.scene_map(scene),
            window_part,
            window_strides=(1, 1),
            padding="VALID",
            rhs_dilation=(4, 4),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.out.variables["params"]["bias"]

    def read_projected(self, projected: jax.Array, centers: jax.Array) -> jax.Array:
        """`read` from a `projected_map` [1, ...] shared by all sequences: centers [B, T, 2]
        (x, y px) -> [B, T, features], the same numbers."""
        shape = _scene_shape(projected, self.size - 6 - 4 * (self.grid - 1))
        kernel = self.out.variables["params"]["kernel"]
        offset_part = kernel[-2:]  # [2, features]

        def one(center):  # [2] -> [features]
            whole, offset = _round_center(shape, center)
            return projected[0, whole[1], whole[0]] + offset @ offset_part

        return nn.gelu(jax.vmap(jax.vmap(one))(centers))

    def read(self, scene_map: jax.Array, centers: jax.Array) -> jax.Array:
        """The window features at centers [B, T, 2] (x, y px) from scene_map [B, ...] (one map
        per sequence) or [1, ...] (one map for all): -> [B, T, features]."""
        g = self.grid
        span = 4 * (g - 1) + 1
        shape = _scene_shape(scene_map, self.size - 6)

        def one(m, center):  # [h, w, C], [2] -> [g * g * C + 2]
            whole, offset = _round_center(shape, center)
            block = jax.lax.dynamic_slice(m, (whole[1], whole[0], 0), (span, span, m.shape[-1]))
            return jnp.concatenate([block[::4, ::4].reshape(-1), offset])

        per_step = jax.vmap(one, in_axes=(None, 0))
        if scene_map.shape[0] == 1:
            x = jax.vmap(per_step, in_axes=(None, 0))(scene_map[0], centers)
        else:
            x = jax.vmap(per_step)(scene_map, centers)
        return nn.gelu(self.out(x))

    def window_features(self, windows: jax.Array, offsets: jax.Array) -> jax.Array:
        """The same features computed window by window (the definition `read` must match):
        windows [M, size, size] from crop_around, offsets [M, 2] -> [M, features]."""
        x = _conv(windows[..., None], self.kernel0, self.bias0, stride=2, dilation=1)
        x = _conv(x, self.kernel1, self.bias1, stride=2, dilation=1)
        x = jnp.concatenate([x.reshape(x.shape[0], -1), offsets], axis=-1)
        return nn.gelu(self.out(x))

    def __call__(self, scene: jax.Array, centers: jax.Array) -> jax.Array:
        """scene [B, H, W], centers [B, T, 2] -> [B, T, features] (for init)."""
        return self.read(self.scene_map(scene), centers)


class Passability(nn.Module):
    """How much of a move the scene lets through: view features [..., F] and the move [..., 2]
    (units of max_norm) -> per-axis factors [..., 2] in (0, 1)."""

    hidden: int = 64

    @nn.compact
    def __call__(self, features: jax.Array, move: jax.Array) -> jax.Array:
        h = nn.gelu(nn.Dense(self.hidden, name="hidden")(jnp.concatenate([features, move], -1)))
        # Bias 3: sigmoid(3) = 0.95, so an untrained model moves (almost) freely.
        out = nn.Dense(2, bias_init=nn.initializers.constant(3.0), name="out")(h)
        return nn.sigmoid(out)
