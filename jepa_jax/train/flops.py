"""Analytic FLOP count of one JEPA train step (matmuls only, 2 FLOPs per multiply-add).

Why not XLA's cost analysis alone: it counts the body of a `while` loop once, so a model with
`scan_layers` is undercounted by about its depth, and with rematerialisation it counts the
recomputed forward too. MFU is defined on the model's FLOPs; this count is that, and a test
checks it against XLA's count on an unscanned, un-rematerialised step.
"""

from __future__ import annotations

from jepa_jax.models import Predictor, VisionTransformer


def encoder_forward_flops(enc: VisionTransformer, tokens: int, patch_dim: int) -> float:
    """One example through the encoder with `tokens` tokens (patch embedding + blocks)."""
    d, f, k = enc.width, enc.mlp_dim, tokens
    per_layer = 8 * k * d * d + 4 * k * d * f + 4 * k * k * d  # qkv+proj, MLP, QK^T and AV
    return 2 * k * patch_dim * d + enc.depth * per_layer


def predictor_forward_flops(pred: Predictor, num_context: int, num_target: int) -> float:
    """One row of [context | mask tokens] through the predictor."""
    w, f = pred.width, pred.mlp_dim
    t = num_context + num_target
    per_layer = 8 * t * w * w + 4 * t * w * f + 4 * t * t * w
    embed = 2 * num_context * pred.out_width * w
    if pred.in_levels > 1:  # fusion MLP: L*D -> D, then D -> w
        d = pred.out_width // pred.in_levels
        embed = 2 * num_context * (pred.out_width * d + d * w)
    heads = num_target + (num_context if pred.context_head else 0)
    return embed + pred.depth * per_layer + 2 * heads * w * pred.out_width


def jepa_step_flops(trainer) -> float:
    """Model FLOPs of one optimizer step over the global batch (both streams of joint image +
    video training).

    Target encoder: forward only. Context encoder, predictor and the regularizer's token
    projector: forward + backward (3x the forward, the usual rule). Optimizer, EMA and
    elementwise work (the regularizer's statistic included) are not counted.
    """
    enc = trainer.encoder
    shape = trainer.example_shape
    tubelet = enc.tubelet_size if len(shape) == 4 else 1
    total = _stream_flops(
        trainer, int(trainer.config.batch_size), trainer.sampler, tubelet * shape[-1]
    )
    if trainer.image_sampler is not None:  # one-frame clips through the tubelet-1 tokenizer
        total += _stream_flops(
            trainer, int(trainer.config.images.batch_size), trainer.image_sampler, shape[-1]
        )
    return total


def _stream_flops(trainer, batch: int, sampler, channels_per_token: int) -> float:
    """One stream's share of `jepa_step_flops`: `batch` examples masked by `sampler`, each
    token holding patch x patch x `channels_per_token` values."""
    enc, pred, projector = trainer.encoder, trainer.predictor, trainer.objective.projector
    patch_dim = enc.patch_size * enc.patch_size * channels_per_token
    tokens = 1
    for g in sampler.grid:
        tokens *= g
    total = batch * encoder_forward_flops(enc, tokens, patch_dim)
    for spec in sampler.specs:
        rows = batch * sampler.target_groups(spec)
        total += 3 * batch * encoder_forward_flops(enc, spec.num_context, patch_dim)
        total += 3 * rows * predictor_forward_flops(pred, spec.num_context, spec.num_target)
        if projector is not None:  # two matmuls per context token: width -> hidden -> out
            per_token = 2 * projector.hidden * (enc.width + projector.out)
            total += 3 * batch * spec.num_context * per_token
    return float(total)
