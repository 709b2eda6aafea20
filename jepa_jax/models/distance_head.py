"""A learned planning energy that knows the way round: features whose Euclidean distance
counts the model steps between two frames of the same scene (a quasimetric-RL-style objective).

Why: a planner following the latent distance to the goal, which like the straight-line distance
is blind to walls, gets stuck pressed against a wall whenever every step towards the door moves
away from the goal. On Two Rooms even the true simulator planned with the straight-line distance
fails 12-16% of the episodes (more samples and iterations do not help), and 0% with the
geodesic distance. This head learns a distance of that kind from the exploration data alone:

  * every observed transition (frame t -> t+1, one model step) must stay within distance 1;
  * pairs of frames of the same scene are pushed apart (up to `CAP` steps).

The largest distances that respect every transition are the shortest-path distances in model
steps (the linear-programming dual of shortest paths; Wang et al., "Optimal goal-reaching
reinforcement learning via quasimetric learning", 2023): two positions on either side of a wall
are as far apart as the way through the door, which is what the planner needs. The head reads
the world model's latent (stop-gradient: it does not change the latent) and a code of the static
scene (the frame's wall channel: the latent knows the door's position to a few px only), so the
same head serves every layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

# Pairs are pushed apart up to this many model steps: more than the longest shortest path of the
# arena (~150 px, 15 model steps at full speed), so the cap never binds a real distance.
CAP = 32.0
# How much more a transition stretched beyond one step costs than a pair's missing distance;
# the far term's pull on every pair is constant, so a large weight keeps transitions near 1.
LOCAL_WEIGHT = 10.0


class DistanceHead(nn.Module):
    """Latents [..., P, D] of frames of a scene -> features [..., features]; the scene is coded
    once by `scene_code` from its wall channel."""

    features: int = 32
    hidden: int = 256
    scene_features: int = 64
    scene_channels: tuple[int, ...] = (16, 32, 32)

    def setup(self):
        self.scene_convs = [
            nn.Conv(c, (3, 3), strides=(2, 2), name=f"scene_conv{i}")
            for i, c in enumerate(self.scene_channels)
        ]
        self.scene_out = nn.Dense(self.scene_features, name="scene_out")
        self.hidden0 = nn.Dense(self.hidden, name="hidden0")
        self.hidden1 = nn.Dense(self.hidden, name="hidden1")
        self.out = nn.Dense(self.features, name="out")

    def __call__(self, z: jax.Array, wall: jax.Array) -> jax.Array:
        """z [B, ..., P, D], wall [B, H, W] (one scene per row of z) -> [B, ..., features]."""
        return self.features_of(z, self.scene_code(wall))

    def scene_code(self, wall: jax.Array) -> jax.Array:
        """Wall channels [N, H, W] -> scene codes [N, scene_features]."""
        x = wall[..., None].astype(jnp.float32)
        for conv in self.scene_convs:
            x = nn.gelu(conv(x))
        return nn.gelu(self.scene_out(x.reshape(x.shape[0], -1)))

    def features_of(self, z: jax.Array, code: jax.Array) -> jax.Array:
        """z [B, ..., P, D] and codes [B, scene_features] -> features [B, ..., features]."""
        x = z.reshape(z.shape[:-2] + (-1,)).astype(jnp.float32)
        code = code.reshape(code.shape[:1] + (1,) * (x.ndim - 2) + code.shape[1:])
        x = jnp.concatenate([x, jnp.broadcast_to(code, x.shape[:-1] + code.shape[-1:])], -1)
        x = nn.gelu(self.hidden0(x))
        x = nn.gelu(self.hidden1(x))
        return self.out(x)


def feature_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    """Euclidean distance over the last axis (model steps): [..., F], [..., F] -> [...]."""
    return jnp.sqrt(jnp.sum(jnp.square(a - b), axis=-1) + 1e-12)


def distance_loss(frames: jax.Array, goals: jax.Array) -> jax.Array:
    """The head's objective from features of a sequence's frames [B, T+1, F] and of frames of
    random positions in the same scenes [B, K, F] -> scalar. It is divided by CAP (so <= 1 plus
    the stretch term), so that its gradient does not dominate a gradient clip shared with the
    world model."""
    local = feature_distance(frames[:, 1:], frames[:, :-1])  # [B, T]
    far = feature_distance(frames[:, :, None], goals[:, None])  # [B, T+1, K]
    stretch = jax.nn.relu(local - 1.0)
    loss = jnp.mean(jax.nn.relu(CAP - far)) + LOCAL_WEIGHT * jnp.mean(jnp.square(stretch))
    return loss / CAP
