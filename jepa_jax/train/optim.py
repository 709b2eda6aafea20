"""Optimizer and schedules: AdamW with warmup+cosine lr, cosine weight decay, EMA momentum ramp.

All schedules are pure functions of the integer step, so they resume exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

Schedule = Callable[[jax.Array], jax.Array]

# Leaves that are never weight-decayed: biases and LayerNorm scales (the reference skips biases
# and 1-D params; names, not ndim, so params stacked by nn.scan are classified the same way).
NO_DECAY_NAMES = ("bias", "scale")


def schedule_steps(optim: Mapping[str, Any], total_steps: int) -> int:
    """Length of the cosine schedules: schedule_scale * total_steps (the reference's ipe_scale)."""
    return max(1, int(round(float(optim["schedule_scale"]) * total_steps)))


def _cosine(start: float, end: float, steps: float, t: jax.Array) -> jax.Array:
    progress = jnp.clip(t / steps, 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def lr_schedule(optim: Mapping[str, Any], total_steps: int) -> Schedule:
    """Linear warmup start_lr -> lr over warmup_steps, then cosine to final_lr by the schedule's
    end."""
    warmup = int(optim["warmup_steps"])
    steps = schedule_steps(optim, total_steps)
    start, peak, final = float(optim["start_lr"]), float(optim["lr"]), float(optim["final_lr"])

    def fn(step):
        t = jnp.asarray(step, jnp.float32)
        warm = start + (peak - start) * t / max(warmup, 1)
        cos = _cosine(peak, final, max(steps - warmup, 1), t - warmup)
        return jnp.where(t < warmup, warm, cos)

    return fn


def wd_schedule(optim: Mapping[str, Any], total_steps: int) -> Schedule:
    """Cosine from weight_decay to final_weight_decay over the schedule."""
    steps = schedule_steps(optim, total_steps)
    start, end = float(optim["weight_decay"]), float(optim["final_weight_decay"])
    return lambda step: _cosine(start, end, steps, jnp.asarray(step, jnp.float32))


def ema_schedule(ema: tuple[float, float], optim: Mapping[str, Any], total_steps: int) -> Schedule:
    """EMA momentum, linear from ema[0] to ema[1] over the schedule (then held)."""
    steps = schedule_steps(optim, total_steps)
    m0, m1 = float(ema[0]), float(ema[1])
    return lambda step: m0 + (m1 - m0) * jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)


def decay_mask(params: Any) -> Any:
    """True for leaves that get weight decay (kernels, mask tokens), False for biases and norms."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: k[-1] not in NO_DECAY_NAMES for k in flat})


def make_optimizer(optim: Mapping[str, Any], total_steps: int) -> optax.GradientTransformation:
    """AdamW (+ optional global-norm clipping) with the lr and weight-decay schedules."""
    adamw = optax.adamw(
        learning_rate=lr_schedule(optim, total_steps),
        b1=float(optim["b1"]),
        b2=float(optim["b2"]),
        eps=float(optim["eps"]),
        weight_decay=wd_schedule(optim, total_steps),
        mask=decay_mask,
    )
    clip = float(optim["grad_clip_norm"])
    return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip > 0 else adamw


def ema_update(target: Any, online: Any, momentum: jax.Array) -> Any:
    """target <- m * target + (1 - m) * online, leaf by leaf (no gradient flows: pure update)."""
    return jax.tree.map(
        lambda t, p: momentum * t + (1.0 - momentum) * p.astype(t.dtype), target, online
    )
