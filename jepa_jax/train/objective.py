"""The JEPA objective: predict layer-normed target-encoder features at masked positions.

For each mask config m (one for I-JEPA, two for V-JEPA):
  z   = context_encoder(x restricted to context[m])          [B, Kc, D]
  p   = predictor(z, context[m], target[m], mask token m)   [B*G, Kt, D]
  h   = LN(target_encoder(x)) at target[m]                   (stop-gradient, non-affine LN)
  L_m = mean |p - h|^e / e     (e = 1 for L1; L2 and smooth-L1 also available)
and the loss is the mean over mask configs. The target encoder runs once, on the full input.

Options (config.target, config.regularizer): without EMA the target encoder is the online one
(and, without stop-gradient, differentiated too); a collapse regularizer (train/regularizers.py)
on the context encoder's output tokens adds weight * R(z) to the loss.
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
    ema_target: bool = True  # False: the target is the online encoder (params["encoder"])
    stop_gradient: bool = True  # False (only with ema_target False): gradient through targets
    regularizer: Any = None  # train.regularizers.Regularizer or None
    regularizer_seed: int = 0  # slice directions: key(seed) folded with the step

    def target_features(self, target_params: Any, x: jax.Array) -> jax.Array:
        """Target-encoder features of the full input, [B, N, D], with no gradient."""
        h = self.encoder.apply({"params": target_params["encoder"]}, x)
        return jax.lax.stop_gradient(h)

    def __call__(
        self, params: Any, target_params: Any, batch: dict, step: jax.Array | int = 0
    ) -> tuple[jax.Array, dict]:
        """Loss of one batch.

        Args:
          params: {"encoder", "predictor"} trainable params.
          target_params: {"encoder"} EMA params (no gradient flows into them); unused when
            `ema_target` is False.
          batch: {"pixels": uint8 [B, (T,) H, W, 3],
                  "masks": tuple of {"context": int32 [B, Kc], "target": int32 [B, G, Kt]}}.
          step: the optimizer step (seeds the regularizer's random directions).

        Returns:
          (scalar loss, aux) with aux["loss_per_mask"] [M], aux["target_features"] [B, N, D] and
          aux["metrics"] (scalars for logging: the regularizer's terms, when one is set).
        """
        x = normalize_pixels(batch["pixels"], self.compute_dtype)
        grid = token_grid(x.shape, self.patch_size, self.tubelet_size)
        if self.ema_target:
            h = self.target_features(target_params, x)
        else:
            h = self.encoder.apply({"params": params["encoder"]}, x)
            if self.stop_gradient:
                h = jax.lax.stop_gradient(h)
        h_normed = layer_norm_nonaffine(h)
        losses, contexts = [], []
        for mask_id, mask in enumerate(batch["masks"]):
            ctx_idx, tgt_idx = mask["context"], mask["target"]
            b, groups, kt = tgt_idx.shape
            z = self.encoder.apply({"params": params["encoder"]}, x, ctx_idx)
            contexts.append(z)
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
        loss = loss_per_mask.mean()
        metrics = {}
        if self.regularizer is not None:
            key = jax.random.fold_in(jax.random.key(self.regularizer_seed), step)
            terms = []
            for mask_id, z in enumerate(contexts):
                value, parts = self.regularizer(
                    z.reshape(-1, z.shape[-1]), jax.random.fold_in(key, mask_id)
                )
                terms.append(value)
                for name, v in parts.items():
                    metrics[name] = metrics.get(name, 0.0) + v / len(contexts)
            metrics["loss_prediction"] = loss
            metrics["loss_regularizer"] = sum(terms) / len(terms)
            loss = loss + metrics["loss_regularizer"]
        aux = {"loss_per_mask": loss_per_mask, "target_features": h, "metrics": metrics}
        return loss, aux
