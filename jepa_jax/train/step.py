"""The jitted train step: loss and grads, AdamW update, EMA of the target encoder, metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from jepa_jax.sharding import batch_sharding, replicated
from jepa_jax.train.monitors import feature_gram, feature_std
from jepa_jax.train.objective import JepaObjective
from jepa_jax.train.optim import ema_update


def train_step(
    state: dict,
    batch: dict,
    *,
    objective: JepaObjective,
    tx: optax.GradientTransformation,
    schedules: dict[str, Callable],
    mask_names: Sequence[str],
) -> tuple[dict, dict]:
    """One optimizer step. Pure: (state, batch) -> (new state, metrics).

    Metrics are float32 scalars, except "feature_gram" ([D, D], for the host's effective-rank
    computation: `monitors.effective_rank_from_gram`).

    Gradients are taken w.r.t. state["params"] only; state["target_params"] enters the loss as
    a constant (and under stop_gradient), then moves toward the new encoder params by EMA.
    """
    step = state["step"]

    def loss_fn(params):
        return objective(params, state["target_params"], batch, step)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
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
    metrics = {
        "loss": loss,
        "lr": schedules["lr"](step),
        "weight_decay": schedules["wd"](step),
        "ema_momentum": momentum,
        "grad_norm": optax.tree.norm(grads),
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(params),
    }
    for i, name in enumerate(mask_names):
        metrics[f"loss_{name}"] = aux["loss_per_mask"][i]
    metrics.update(aux.get("metrics", {}))  # e.g. the collapse regularizer's terms
    metrics["feature_std"] = feature_std(aux["target_features"])
    # The host turns this into the effective rank on logging steps (see monitors.py).
    metrics["feature_gram"] = feature_gram(aux["target_features"])
    return new_state, jax.tree.map(lambda x: x.astype(jnp.float32), metrics)


def make_train_step(
    *,
    objective: JepaObjective,
    tx: optax.GradientTransformation,
    schedules: dict[str, Callable],
    mask_names: Sequence[str],
    mesh: Mesh,
    rules: Any,
    state_shardings: Any,
    batch_example: Any,
) -> Callable[[dict, dict], tuple[dict, dict]]:
    """`train_step` jitted over the mesh, state donated.

    in_shardings: the state's own shardings and every batch leaf split on its leading axis over
    data x fsdp; out_shardings: the same state shardings and replicated metrics. Call it inside
    `jax.set_mesh(mesh)`.
    """
    batch_shardings = jax.tree.map(lambda _: batch_sharding(mesh), batch_example)

    def step_fn(state, batch):
        # Tracing happens here, so the logical axis rules must be active here.
        with nn.logical_axis_rules(rules):
            return train_step(
                state, batch, objective=objective, tx=tx, schedules=schedules, mask_names=mask_names
            )

    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_shardings),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,),
    )
