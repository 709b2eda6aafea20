"""The JEPA objective: predict layer-normed target-encoder features at masked positions.

For each mask config m (one for I-JEPA, two for V-JEPA):
  z   = context_encoder(x restricted to context[m])          [B, Kc, D]
  p   = predictor(z, context[m], target[m], mask token m)   [B*G, Kt, D]
  h   = LN(target_encoder(x)) at target[m]                   (stop-gradient, non-affine LN)
  L_m = mean |p - h|^e / e     (e = 1 for L1; L2 and smooth-L1 also available)
and the loss is the mean over mask configs. The target encoder runs once, on the full input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax.models.vit import gather_tokens, token_grid

# ImageNet statistics, as the reference's normalisation (numpy: importing this module must not
# start a JAX backend).
PIXEL_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
PIXEL_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def normalize_pixels(pixels: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 (or float 0..255) pixels [..., 3] -> normalised floats. Done on device, so the host
    ships uint8 (4x less transfer)."""
    x = (pixels.astype(jnp.float32) - PIXEL_MEAN) / PIXEL_STD
    return x.astype(dtype)


def layer_norm_nonaffine(h: jax.Array, eps: float = 1e-6) -> jax.Array:
    """LayerNorm over the last axis without scale or bias (the reference's target normalisation)."""
    h = h.astype(jnp.float32)
    mean = h.mean(-1, keepdims=True)
    var = jnp.square(h - mean).mean(-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + eps)


def latent_loss(pred: jax.Array, target: jax.Array, kind: str) -> jax.Array:
    """Mean elementwise loss between predictions and targets (float32 scalar)."""
    diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
    if kind == "l1":
        return jnp.abs(diff).mean()
    if kind == "l2":
        return 0.5 * jnp.square(diff).mean()
    if kind == "smooth_l1":  # Huber with beta 1 (the I-JEPA code)
        a = jnp.abs(diff)
        return jnp.where(a < 1.0, 0.5 * a * a, a - 0.5).mean()
    raise ValueError(f"unknown loss type {kind!r}; expected 'l1', 'l2' or 'smooth_l1'")


@dataclasses.dataclass(frozen=True)
class JepaObjective:
    """Binds the modules and settings; `__call__` is the differentiable loss."""

    encoder: Any  # flax module: (x, token_idx=None) -> [B, K, D]
    predictor: Any  # flax module: (ctx, ctx_idx, tgt_idx, grid, mask_id) -> [B, Kt, D]
    patch_size: int
    tubelet_size: int
    loss_type: str = "l1"
    compute_dtype: Any = jnp.float32

    def target_features(self, target_params: Any, x: jax.Array) -> jax.Array:
        """Target-encoder features of the full input, [B, N, D], with no gradient."""
        h = self.encoder.apply({"params": target_params["encoder"]}, x)
        return jax.lax.stop_gradient(h)

    def __call__(self, params: Any, target_params: Any, batch: dict) -> tuple[jax.Array, dict]:
        """Loss of one batch.

        Args:
          params: {"encoder", "predictor"} trainable params.
          target_params: {"encoder"} EMA params (no gradient flows into them).
          batch: {"pixels": uint8 [B, (T,) H, W, 3],
                  "masks": tuple of {"context": int32 [B, Kc], "target": int32 [B, G, Kt]}}.

        Returns:
          (scalar loss, aux) with aux["loss_per_mask"] [M] and aux["target_features"] [B, N, D].
        """
        x = normalize_pixels(batch["pixels"], self.compute_dtype)
        grid = token_grid(x.shape, self.patch_size, self.tubelet_size)
        h = self.target_features(target_params, x)
        h_normed = layer_norm_nonaffine(h)
        losses = []
        for mask_id, mask in enumerate(batch["masks"]):
            ctx_idx, tgt_idx = mask["context"], mask["target"]
            b, groups, kt = tgt_idx.shape
            z = self.encoder.apply({"params": params["encoder"]}, x, ctx_idx)
            if groups > 1:  # I-JEPA: context repeated once per target block, b-major.
                z = jnp.repeat(z, groups, axis=0)
                ctx_idx = jnp.repeat(ctx_idx, groups, axis=0)
            pred = self.predictor.apply(
                {"params": params["predictor"]},
                z,
                ctx_idx,
                tgt_idx.reshape(b * groups, kt),
                grid,
                mask_id,
            )
            target = gather_tokens(h_normed, tgt_idx.reshape(b, groups * kt))
            target = target.reshape(b * groups, kt, -1)
            losses.append(latent_loss(pred, target, self.loss_type))
        loss_per_mask = jnp.stack(losses)
        return loss_per_mask.mean(), {"loss_per_mask": loss_per_mask, "target_features": h}
