"""The JEPA predictor: a narrow ViT that fills learned mask tokens at target positions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jepa_jax.models.layers import (
    ModalityEmbedding,
    TransformerModel,
    dense,
    gelu,
    layer_norm,
    norm_and_project_out,
    transformer_like,
    trunc_normal,
)
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.rope import ROPE_EMBEDS, token_rope


class Predictor(TransformerModel):
    """Predicts target-token representations from context-token features.

    Context features are projected to the predictor width and given their (fixed sin-cos)
    positions; one learned mask token per mask config, plus its position, stands at each target
    index. After the blocks, only the mask-token outputs are normed and projected back to the
    encoder width. Attention is bidirectional over [context | targets].

    With `context_head` (V-JEPA 2.1's dense predictive loss) the context tokens' outputs go
    through a second projection of their own ("context_proj", after the shared final norm), and
    the call returns (targets, context) predictions.

    `pos_embed` follows the encoder's: "sincos_wh" selects the I-JEPA 2D channel order; under
    RoPE ("rope" for V-JEPA 2, "rope_interleaved" for 2.1, with `rope_reference_grid`) there is
    no absolute table: every attention layer rotates queries and keys by the context and target
    tokens' grid positions at the predictor's head width, as the reference's RoPE predictor.
    The reference also sorts [context | targets] by position before its blocks and unsorts
    after; attention without a causal mask is permutation-equivariant and RoPE reads positions,
    not sequence order, so that sort changes nothing and is left out.

    With `modality_embedding` (V-JEPA 2.1's joint image + video training) a learned image or
    video vector of the predictor's own is added to every token, mask tokens included.
    """

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    out_width: int
    num_mask_tokens: int = 1
    zero_init_mask_tokens: bool = True
    uniform_power: bool = True
    pos_embed: str = "sincos"
    context_head: bool = False
    # V-JEPA 2.1 deep self-supervision: the context features are `in_levels` encoder levels
    # concatenated (out_width = in_levels * D); a fusion MLP, Dense(D) - GELU - Dense(width),
    # replaces the input Dense.
    in_levels: int = 1
    rope_reference_grid: int = 0
    modality_embedding: bool = False

    @nn.compact
    def __call__(
        self,
        ctx: jax.Array,
        ctx_idx: jax.Array,
        tgt_idx: jax.Array,
        grid: tuple[int, ...],
        mask_id: int = 0,
        image: bool = False,
    ) -> jax.Array:
        """Predict target tokens.

        Args:
          ctx: [B, Kc, D_enc] context-encoder outputs.
          ctx_idx: int [B, Kc] flat token indices of the context.
          tgt_idx: int [B, Kt] flat token indices to predict.
          grid: the token grid, (h, w) or (t, h, w), that the indices refer to.
          mask_id: static index of the mask token to use (one per mask config).
          image: the tokens are an image's (selects the modality vector).

        Returns:
          [B, Kt, out_width] predictions; with `context_head`, also [B, Kc, out_width]
          predictions of the context tokens' own (target-encoder) features.
        """
        if not 0 <= mask_id < self.num_mask_tokens:
            raise ValueError(f"mask_id {mask_id} out of range for {self.num_mask_tokens} tokens")
        rope = None
        if self.pos_embed in ROPE_EMBEDS:
            rope = token_rope(
                grid,
                self.width // self.num_heads,
                jnp.concatenate([ctx_idx, tgt_idx], axis=1),
                interleaved=self.pos_embed == "rope_interleaved",
                reference_grid=self.rope_reference_grid,
            )
            ctx_pos = tgt_pos = jnp.zeros((), jnp.float32)  # no absolute positions under RoPE
        else:
            w_first = self.pos_embed == "sincos_wh"
            pos = jnp.asarray(sincos_table(self.width, grid, self.uniform_power, w_first))
            ctx_pos, tgt_pos = pos[ctx_idx], pos[tgt_idx]
        if self.in_levels > 1:
            if self.out_width % self.in_levels:
                raise ValueError(f"out_width {self.out_width} is not {self.in_levels} levels")
            ctx = dense(
                self.out_width // self.in_levels, ("embed_in", "embed_fusion"), self.dtype, "fusion"
            )(ctx)
            ctx = gelu(ctx, self.gelu_approximate)
        x = dense(self.width, ("embed_in", "embed"), self.dtype, "embed")(ctx)
        x = x + ctx_pos.astype(x.dtype)
        token_init = nn.initializers.zeros_init() if self.zero_init_mask_tokens else trunc_normal()
        mask_tokens = self.param(
            "mask_tokens",
            nn.with_logical_partitioning(token_init, ("mask_tokens", "embed")),
            (self.num_mask_tokens, self.width),
        )
        targets = mask_tokens[mask_id].astype(x.dtype) + tgt_pos.astype(x.dtype)
        targets = jnp.broadcast_to(targets, tgt_idx.shape + (self.width,))
        h = jnp.concatenate([x, targets], axis=1)
        if self.modality_embedding:
            h = ModalityEmbedding(self.width, name="modality")(h, image)
        h = transformer_like(self)(h, None, rope)
        kc = ctx.shape[1]
        if not self.context_head:
            # LayerNorm is per token, so norming only the target slice equals the reference's
            # norm-then-slice and skips the context tokens' work.
            return norm_and_project_out(h[:, kc:], self.out_width, self.dtype)
        # Both heads read one shared final norm, as the reference's predictor_norm.
        h = layer_norm("norm", self.dtype)(h)
        targets_out = dense(self.out_width, ("embed", "embed_out"), self.dtype, "proj")(h[:, kc:])
        context_out = dense(self.out_width, ("embed", "embed_out"), self.dtype, "context_proj")(
            h[:, :kc]
        )
        return targets_out, context_out
