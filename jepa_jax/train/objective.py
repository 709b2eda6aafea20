"""The JEPA objective: predict layer-normed target-encoder features at masked positions.

For each mask config m (one for I-JEPA, two for V-JEPA):
  z   = context_encoder(x restricted to context[m])          [B, Kc, D]
  p   = predictor(z, context[m], target[m], mask token m)   [B*G, Kt, D]
  h   = LN(target_encoder(x)) at target[m]                   (stop-gradient, non-affine LN)
  L_m = mean |p - h|^e / e     (e = 1 for L1; L2 and smooth-L1 also available)
and the loss is the mean over mask configs. The target encoder runs once, on the full input.

Dense predictive loss (V-JEPA 2.1, `context_weight` > 0): the predictor's second head also
predicts the *context* tokens' target features, c = predictor_ctx(...) [B*G, Kc, D], and

  L_ctx,m = mean_(i, d) w_i |c_id - h_id|^e / e,   w_i = 1 / sqrt(d_i) or 1,
  L       = mean_m L_m + lambda(step) * mean_m L_ctx,m

where d_i is the grid distance (in tokens, over (t,) h, w) from context token i to the nearest
target token of its sample, and lambda ramps linearly from 0 to `context_weight` over the steps
`context_ramp` = (start, end) (a constant weight when end <= start). The context term makes every
visible output token carry its own local content instead of only what the masked positions need.

Deep self-supervision (V-JEPA 2.1, encoder `output_levels`): the encoders return L normed
levels concatenated on channels ([.., L*D]); the target is each D-channel level layer-normed on
its own (non-affine), the predictor fuses the L levels at its input and predicts all of them,
and the means above run over all L*D channels, so every level weighs the same.

Options (config.target, config.regularizer): without EMA the target encoder is the online one
(and, without stop-gradient, differentiated too); a collapse regularizer (train/regularizers.py)
on the context encoder's output tokens adds weight * R(z) to the loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.models.inputs import layer_norm_nonaffine, normalize_pixels
from jepa_jax.models.vit import gather_tokens, patchify, token_grid
from jepa_jax.train.regularizers import pixel_deviation_weights


def per_level_layer_norm(h: jax.Array, levels: int) -> jax.Array:
    """Non-affine LayerNorm of each of the `levels` equal channel groups of h [..., L*D]."""
    grouped = h.reshape(h.shape[:-1] + (levels, h.shape[-1] // levels))
    return layer_norm_nonaffine(grouped).reshape(h.shape)


LOSS_TYPES = ("l1", "l2", "smooth_l1")  # config.loss.type


def latent_loss(
    pred: jax.Array, target: jax.Array, kind: str, token_weights: jax.Array | None = None
) -> jax.Array:
    """Mean elementwise loss between predictions and targets [B, K, D] (float32 scalar);
    `token_weights` [B, K] multiply each token's elementwise losses before the mean."""
    diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
    if kind == "l1":
        elementwise = jnp.abs(diff)
    elif kind == "l2":
        elementwise = 0.5 * jnp.square(diff)
    elif kind == "smooth_l1":  # Huber with beta 1 (the I-JEPA code)
        a = jnp.abs(diff)
        elementwise = jnp.where(a < 1.0, 0.5 * a * a, a - 0.5)
    else:
        raise ValueError(f"unknown loss type {kind!r}; expected one of {LOSS_TYPES}")
    if token_weights is not None:
        elementwise = elementwise * token_weights[..., None].astype(jnp.float32)
    return elementwise.mean()


def token_coordinates(idx: jax.Array, grid: tuple[int, ...]) -> jax.Array:
    """Flat raster token indices [...] -> float32 grid coordinates [..., len(grid)]."""
    coords, rest = [], idx
    for extent in reversed(grid):
        coords.append(rest % extent)
        rest = rest // extent
    return jnp.stack(coords[::-1], axis=-1).astype(jnp.float32)


def context_distance_weights(
    ctx_idx: jax.Array, tgt_idx: jax.Array, grid: tuple[int, ...]
) -> jax.Array:
    """V-JEPA 2.1's weights 1 / sqrt(d) [B, Kc], d the Euclidean grid distance (tokens) from each
    context token to the nearest target token of the same sample (d >= 1: the sets are
    disjoint). ctx_idx [B, Kc], tgt_idx [B, Kt]; data only, so no gradient."""
    c = token_coordinates(ctx_idx, grid)[:, :, None]  # [B, Kc, 1, n]
    t = token_coordinates(tgt_idx, grid)[:, None]  # [B, 1, Kt, n]
    nearest = jnp.square(c - t).sum(-1).min(-1)  # squared distance [B, Kc]
    return jax.lax.stop_gradient(jax.lax.rsqrt(jnp.sqrt(jnp.maximum(nearest, 1.0))))


def context_loss_weight(weight: float, ramp: tuple[int, int], step: jax.Array | int) -> jax.Array:
    """lambda(step): 0 before ramp[0], linear up to `weight` at ramp[1], then constant; a
    constant `weight` from ramp[0] on when ramp[1] <= ramp[0]."""
    start, end = ramp
    step = jnp.asarray(step, jnp.float32)
    if end <= start:
        return jnp.where(step >= start, weight, 0.0).astype(jnp.float32)
    return weight * jnp.clip((step - start) / (end - start), 0.0, 1.0)


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
    # Dense predictive loss (module docstring); the predictor needs `context_head` when > 0.
    context_weight: float = 0.0
    context_ramp: tuple[int, int] = (0, 0)
    context_distance_weighting: bool = False
    # Joint image + video training: the image stream's weight in the loss (0: no image stream).
    image_loss_share: float = 0.0
    # The regularizer's token projector (models/projector.py; params["projector"]), or None:
    # the regularizer then acts on the context tokens themselves.
    projector: Any = None

    @property
    def levels(self) -> int:
        """Encoder output levels in the targets (1 without deep self-supervision)."""
        return self.encoder.num_levels

    def encode(self, encoder_params: Any, x: jax.Array, token_idx=None) -> jax.Array:
        """Every output level of the encoder, [B, K or N, levels * D]."""
        return self.encoder.apply(
            {"params": encoder_params}, x, token_idx, all_levels=self.levels > 1
        )

    def target_features(self, target_params: Any, x: jax.Array) -> jax.Array:
        """Target-encoder features of the full input, [B, N, levels * D], with no gradient."""
        return jax.lax.stop_gradient(self.encode(target_params["encoder"], x))

    def __call__(
        self, params: Any, target_params: Any, batch: dict, step: jax.Array | int = 0
    ) -> tuple[jax.Array, dict]:
        """Loss of one batch.

        Args:
          params: {"encoder", "predictor"} trainable params (and "projector" with one).
          target_params: {"encoder"} EMA params (no gradient flows into them); unused when
            `ema_target` is False.
          batch: {"pixels": uint8 [B, (T,) H, W, 3],
                  "masks": tuple of {"context": int32 [B, Kc], "target": int32 [B, G, Kt]}},
            and with joint image + video training "image": the same for images as one-frame
            clips [Bi, 1, H, W, 3].
          step: the optimizer step (seeds the regularizer's random directions).

        Returns:
          (scalar loss, aux) with aux["loss_per_mask"] [M] (the image stream's masks after the
          video ones), aux["target_features"] [B, N, D] (the last level, of the main stream),
          aux["metrics"] (scalars for logging: the regularizer's and dense loss's terms;
          with an image stream also each stream's loss and the image stream's terms prefixed
          "image_") and aux["terms"]: the loss split into its summands, "prediction" and, where
          the objective has them, "dense" (weighted) and "regularizer" (train/loss_balance.py).
        """
        loss, aux = self.stream_loss(params, target_params, batch, step)
        if "image" not in batch:
            return loss, aux
        # V-JEPA 2.1 averages the gradients of its image and video ranks: a weighted sum.
        image_loss, image_aux = self.stream_loss(params, target_params, batch["image"], step, True)
        share = self.image_loss_share
        metrics = {**aux["metrics"], **{f"image_{k}": v for k, v in image_aux["metrics"].items()}}
        metrics.update(loss_video=loss, loss_image=image_loss)
        terms = {
            t: (1.0 - share) * v + share * image_aux["terms"][t] for t, v in aux["terms"].items()
        }
        aux = {
            "loss_per_mask": jnp.concatenate([aux["loss_per_mask"], image_aux["loss_per_mask"]]),
            "target_features": aux["target_features"],
            "metrics": metrics,
            "terms": terms,
        }
        return (1.0 - share) * loss + share * image_loss, aux

    def stream_loss(
        self,
        params: Any,
        target_params: Any,
        batch: dict,
        step: jax.Array | int = 0,
        image: bool = False,
    ) -> tuple[jax.Array, dict]:
        """The loss of one stream's {"pixels", "masks"} (`image`: one-frame clips through the
        image tokenizer, the image modality vectors, mask tokens in order); as `__call__`."""
        x = normalize_pixels(batch["pixels"], self.compute_dtype)
        tubelet = self.encoder.tubelet_for(x.shape)
        grid = token_grid(x.shape, self.patch_size, tubelet)
        if self.ema_target:
            h = self.target_features(target_params, x)
        else:
            h = self.encode(params["encoder"], x)
            if self.stop_gradient:
                h = jax.lax.stop_gradient(h)
        h_normed = per_level_layer_norm(h, self.levels)
        dense = self.context_weight > 0
        losses, context_losses, contexts, context_weights = [], [], [], []
        token_weights = None
        if self.regularizer is not None and self.regularizer.token_weighting != "uniform":
            token_weights = pixel_deviation_weights(patchify(x, self.patch_size, tubelet))  # [B, N]
        for mask_id, mask in enumerate(batch["masks"]):
            ctx_idx, tgt_idx = mask["context"], mask["target"]
            b, groups, kt = tgt_idx.shape
            z = self.encode(params["encoder"], x, ctx_idx)
            contexts.append(z)
            if token_weights is not None:
                context_weights.append(gather_tokens(token_weights[..., None], ctx_idx)[..., 0])
            ctx_target = gather_tokens(h_normed, ctx_idx) if dense else None
            if groups > 1:  # I-JEPA: context repeated once per target block, b-major.
                z = jnp.repeat(z, groups, axis=0)
                ctx_idx = jnp.repeat(ctx_idx, groups, axis=0)
                ctx_target = jnp.repeat(ctx_target, groups, axis=0) if dense else None
            pred = self.predictor.apply(
                {"params": params["predictor"]},
                z,
                ctx_idx,
                tgt_idx.reshape(b * groups, kt),
                grid,
                mask_id,
                image,
            )
            if dense:
                pred, ctx_pred = pred
                weights = None
                if self.context_distance_weighting:
                    weights = context_distance_weights(
                        ctx_idx, tgt_idx.reshape(b * groups, kt), grid
                    )
                context_losses.append(latent_loss(ctx_pred, ctx_target, self.loss_type, weights))
            target = gather_tokens(h_normed, tgt_idx.reshape(b, groups * kt))
            target = target.reshape(b * groups, kt, -1)
            losses.append(latent_loss(pred, target, self.loss_type))
        loss_per_mask = jnp.stack(losses)
        loss = loss_per_mask.mean()
        metrics = {}
        terms = {"prediction": loss}
        if dense:
            lam = context_loss_weight(self.context_weight, self.context_ramp, step)
            metrics["loss_masked"] = loss
            metrics["loss_context"] = jnp.stack(context_losses).mean()
            metrics["context_weight"] = lam
            terms["dense"] = lam * metrics["loss_context"]
            loss = loss + terms["dense"]
        if self.regularizer is not None:
            key = jax.random.fold_in(jax.random.key(self.regularizer_seed), step)
            values = []
            for mask_id, z in enumerate(contexts):
                weights = context_weights[mask_id].reshape(-1) if context_weights else None
                if self.projector is not None:
                    z = self.projector.apply({"params": params["projector"]}, z)
                value, parts = self.regularizer(
                    z.reshape(-1, z.shape[-1]), jax.random.fold_in(key, mask_id), weights
                )
                values.append(value)
                for name, v in parts.items():
                    metrics[name] = metrics.get(name, 0.0) + v / len(contexts)
            metrics["loss_prediction"] = loss
            metrics["loss_regularizer"] = sum(values) / len(values)
            terms["regularizer"] = metrics["loss_regularizer"]
            loss = loss + metrics["loss_regularizer"]
        # Monitors read the features probes and exports use: the last level.
        features = h[..., -(h.shape[-1] // self.levels) :]
        aux = {
            "loss_per_mask": loss_per_mask,
            "target_features": features,
            "metrics": metrics,
            "terms": terms,
        }
        return loss, aux
