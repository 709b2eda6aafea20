"""The jitted train step: loss and grads, AdamW update, EMA of the target encoder, metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from jepa_jax.sharding import BATCH_AXES, batch_sharding, replicated
from jepa_jax.train.monitors import feature_stats
from jepa_jax.train.nonfinite import all_finite, keep_if_not_finite
from jepa_jax.train.objective import JepaObjective
from jepa_jax.train.optim import ema_update


def split_microbatches(batch: Any, microbatches: int) -> Any:
    """[B, ...] leaves -> [microbatches, B / microbatches, ...].

    Microbatch k takes rows k, k + m, k + 2m, ...: every device holds a contiguous block of
    rows, so each microbatch keeps an equal share on every device and no data moves.
    """

    def split(x):
        x = x.reshape((x.shape[0] // microbatches, microbatches) + x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        spec = jax.sharding.PartitionSpec(None, BATCH_AXES)
        return jax.lax.with_sharding_constraint(x, spec)

    return jax.tree.map(split, batch)


def train_step(
    state: dict,
    batch: dict,
    *,
    objective: JepaObjective,
    tx: optax.GradientTransformation,
    schedules: dict[str, Callable],
    mask_names: Sequence[str],
    microbatches: int = 1,
) -> tuple[dict, dict]:
    """One optimizer step. Pure: (state, batch) -> (new state, metrics).

    Gradients are taken w.r.t. state["params"] only; state["target_params"] enters the loss as
    a constant (and under stop_gradient), then moves toward the new encoder params by EMA. With
    microbatches > 1 the batch is processed in that many slices whose gradients are averaged
    before one update: the same result as the whole batch at a fraction of the activation
    memory (the loss is a mean over equal-sized slices).

    A step whose loss, gradient norm or update norm is not finite leaves params, target and
    optimizer state as they were (train.nonfinite); its "finite" metric is 0.

    Metrics are float32 scalars, plus "feature_stats" (the collapse monitors' sufficient
    statistics; `monitors.monitors_from_stats` finishes them on the host).
    """
    step = state["step"]

    def loss_fn(params, mb):
        loss, aux = objective(params, state["target_params"], mb, step)
        extra = aux.get("metrics", {})  # e.g. the collapse regularizer's terms
        return loss, (aux["loss_per_mask"], feature_stats(aux["target_features"]), extra)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if microbatches == 1:
        (loss, (loss_per_mask, stats, extra)), grads = grad_fn(state["params"], batch)
    else:
        mbs = split_microbatches(batch, microbatches)
        # Zero accumulators shaped like one microbatch's (loss, aux) and grads.
        shapes = jax.eval_shape(grad_fn, state["params"], jax.tree.map(lambda x: x[0], mbs))
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def accumulate(carry, mb):
            return jax.tree.map(jnp.add, carry, grad_fn(state["params"], mb)), None

        ((loss, (loss_per_mask, stats, extra)), grads), _ = jax.lax.scan(accumulate, zeros, mbs)
        grads = jax.tree.map(lambda g: g / microbatches, grads)
        loss, loss_per_mask = loss / microbatches, loss_per_mask / microbatches
        extra = jax.tree.map(lambda v: v / microbatches, extra)

    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    momentum = schedules["ema"](step)
    target_params = {
        "encoder": ema_update(state["target_params"]["encoder"], params["encoder"], momentum)
    }
    new_state = {
        "params": params,
        "target_params": target_params,
        "opt_state": opt_state,
        "step": step + 1,
    }
    grad_norm, update_norm = optax.tree.norm(grads), optax.tree.norm(updates)
    finite = all_finite(loss, grad_norm, update_norm)
    new_state = keep_if_not_finite(state, new_state, finite)
    metrics = {
        "loss": loss,
        "lr": schedules["lr"](step),
        "weight_decay": schedules["wd"](step),
        "ema_momentum": momentum,
        "grad_norm": grad_norm,
        "update_norm": update_norm,
        "param_norm": optax.tree.norm(new_state["params"]),
        "finite": finite,  # 0: the update was not applied (train.nonfinite)
    }
    for i, name in enumerate(mask_names):
        metrics[f"loss_{name}"] = loss_per_mask[i]
    metrics.update(extra)
    metrics["feature_stats"] = stats
    return new_state, jax.tree.map(lambda x: x.astype(jnp.float32), metrics)


def jit_train_step(
    step: Callable[[dict, dict], tuple[dict, dict]],
    mesh: Mesh,
    rules: Any,
    state_shardings: Any,
    batch_example: Any,
) -> Callable[[dict, dict], tuple[dict, dict]]:
    """`step` (e.g. `train_step` with its keyword arguments bound) jitted over the mesh, state
    donated.

    in_shardings: the state's own shardings and every batch leaf split on its leading axis over
    data x fsdp; out_shardings: the same state shardings and replicated metrics. Call it inside
    `jax.set_mesh(mesh)`.
    """
    batch_shardings = jax.tree.map(lambda _: batch_sharding(mesh), batch_example)

    def step_fn(state, batch):
        # Tracing happens here, so the logical axis rules must be active here.
        with nn.logical_axis_rules(rules):
            return step(state, batch)

    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_shardings),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,),
    )
