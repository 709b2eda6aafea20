"""The action-conditioned predictor (V-JEPA 2-AC style): "what will the next frame's latent be if
I take this action?".

Each time step t contributes the tokens [action a_t, (optional) proprioceptive state s_t, frame
patch tokens z_t]; all steps are laid out in one sequence and attention is block-causal: every
token of step t sees every token of steps <= t and nothing later. So one forward pass over T
steps gives the T next-step predictions z_1..z_T at once (teacher forcing), and a prediction never
depends on the future, which is also what makes autoregressive rollouts exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jepa_jax.models.layers import (
    TransformerModel,
    dense,
    norm_and_project_out,
    transformer_like,
)
from jepa_jax.models.pos_embed import sincos_1d, sincos_2d


def block_causal_mask(num_steps: int, tokens_per_step: int) -> np.ndarray:
    """bool [N, N], N = num_steps * tokens_per_step: True where query token i may attend to key
    token j, i.e. step(j) <= step(i) (steps are consecutive runs of tokens_per_step tokens)."""
    step = np.arange(num_steps * tokens_per_step) // tokens_per_step
    return step[:, None] >= step[None, :]


class ActionConditionedPredictor(TransformerModel):
    """Predicts next-step frame latents from [action, state, frame] tokens per step.

    Positions: a fixed sin-cos table over the frame's patch grid for the patch tokens, and a
    sin-cos embedding of the step index added to every token of that step. The action and state
    tokens are linear maps of the raw vectors (their biases act as type embeddings).
    """

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    out_width: int  # encoder width D
    grid: tuple[int, int]  # the frame's patch grid; P = grid[0] * grid[1] tokens per frame
    use_state: bool = False

    @property
    def tokens_per_step(self) -> int:
        return 1 + int(self.use_state) + self.grid[0] * self.grid[1]

    @nn.compact
    def __call__(
        self, latents: jax.Array, actions: jax.Array, states: jax.Array | None = None
    ) -> jax.Array:
        """Next-step predictions for every step.

        Args:
          latents: [B, T, P, D] frame latents z_0..z_{T-1}.
          actions: [B, T, A] action a_t taken after frame t.
          states: [B, T, S] proprioceptive states (required iff use_state).

        Returns:
          [B, T, P, D]: output t predicts z_{t+1} from steps <= t (not yet normalised).
        """
        b, t, p, _ = latents.shape
        if p != self.grid[0] * self.grid[1]:
            raise ValueError(f"expected {self.grid[0] * self.grid[1]} patch tokens, got {p}")
        if self.use_state != (states is not None):
            raise ValueError("states must be given exactly when use_state is True")

        def embed(x, name):
            return dense(self.width, ("embed_in", "embed"), self.dtype, name)(x)

        frames = embed(latents, "frame_embed")
        frames = frames + jnp.asarray(sincos_2d(self.width, self.grid), frames.dtype)
        tokens = [embed(actions, "action_embed")[:, :, None]]
        if self.use_state:
            tokens.append(embed(states, "state_embed")[:, :, None])
        tokens.append(frames)
        x = jnp.concatenate(tokens, axis=2)  # [B, T, n, W]
        time_pos = sincos_1d(self.width, np.arange(t)).astype(np.float32)
        x = x + jnp.asarray(time_pos, x.dtype)[None, :, None, :]
        n = x.shape[2]
        x = x.reshape(b, t * n, self.width)
        mask = jnp.asarray(block_causal_mask(t, n))[None, None]
        x = transformer_like(self)(x, mask)
        x = x.reshape(b, t, n, self.width)[:, :, n - p :]  # the frame tokens' outputs
        return norm_and_project_out(x, self.out_width, self.dtype)
