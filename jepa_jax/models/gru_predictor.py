"""A recurrent action-conditioned predictor over one latent per frame (after eb_jepa's Two Rooms
GRU, whose hidden state is the latent): z_{t+1} = z_t + W_out GRU(hidden = z_t, input = MLP(a_t)),
or, with a cell wider than the latent (`hidden`), hidden = W_in z_t.

The prediction depends on the current latent and action only (Markov in the latent), so a
planning rollout is one cheap cell application per step. Unlike eb_jepa's plain GRU it predicts a
*residual* with a zero-initialised output projection: the model starts as "nothing changes",
which a plain GRU has to learn by saturating its update gate; on a 2-core CPU budget the plain
GRU's predictions stayed worse than that for hundreds of steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

# The predictor's cells (world_model.predictor_cell).
PREDICTOR_CELLS = ("gru", "mlp")


class GRUPredictor(nn.Module):
    """Next-step latents from (latent, action[, state]) per step, all steps independently.

    Same call as ActionConditionedPredictor, so the world model's teacher forcing, rollout and
    planning code serve both: the block-causal "history" is just the current step here.
    """

    width: int  # latent size D
    # The GRU's hidden size; 0 = D, the latent itself is the hidden state (eb_jepa). A wider
    # cell starts from a projection of the latent, h = W_in z, and its output is projected back.
    hidden: int = 0
    # "gru", or "mlp": delta = W_out MLP([z_t, MLP(a_t)]) (two gelu layers of `hidden` units),
    # where position and action interact through every layer rather than through gates only.
    cell: str = "gru"
    action_hidden: int = 64  # width of the action MLP feeding the cell
    grid: tuple[int, int] = (1, 1)  # one token per frame
    use_state: bool = False
    # Egocentric view (models.local_view): the cell also reads features of the scene around the
    # agent and of its predicted move (world_model.model.WorldModel.predict). Needs use_state.
    local_view: bool = False

    @nn.compact
    def __call__(
        self,
        latents: jax.Array,
        actions: jax.Array,
        states: jax.Array | None = None,
        views: jax.Array | None = None,
    ) -> jax.Array:
        """latents [B, T, 1, D] (z_0..z_{T-1}), actions [B, T, A], states [B, T, S] or None,
        views [B, T, F] (features of the egocentric view and the predicted move) iff local_view
        -> [B, T, 1, D]: output t predicts z_{t+1} (before the world model's LayerNorm)."""
        if latents.shape[2] != 1:
            raise ValueError(f"the GRU predictor takes one latent per frame, got {latents.shape}")
        if self.use_state != (states is not None):
            raise ValueError("states must be given exactly when use_state is True")
        if self.local_view != (views is not None):
            raise ValueError("views must be given exactly when local_view is True")
        x = actions if states is None else jnp.concatenate([actions, states], axis=-1)
        x = nn.gelu(nn.Dense(self.action_hidden, name="action_in")(x))
        x = nn.gelu(nn.Dense(self.action_hidden, name="action_mid")(x))
        if views is not None:
            x = jnp.concatenate([x, views.astype(x.dtype)], axis=-1)
        z = latents[:, :, 0]
        hidden = self.hidden or self.width
        if self.cell == "mlp":
            h = nn.gelu(nn.Dense(hidden, name="mlp_in")(jnp.concatenate([z, x], axis=-1)))
            h = nn.gelu(nn.Dense(hidden, name="mlp_mid")(h))
        elif self.cell == "gru":
            h0 = z if hidden == self.width else nn.Dense(hidden, name="hidden_in")(z)
            h, _ = nn.GRUCell(features=hidden, name="gru")(h0, x)
        else:
            raise ValueError(
                f"unknown predictor cell {self.cell!r}; expected one of {PREDICTOR_CELLS}"
            )
        delta = nn.Dense(self.width, kernel_init=nn.initializers.zeros, name="out")(h)
        return (z + delta)[:, :, None]
