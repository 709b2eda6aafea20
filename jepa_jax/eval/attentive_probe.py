"""Attentive probe on frozen token features (V-JEPA; V-JEPA 2 variant), a grid of them at once.

The probe (V-JEPA's AttentiveClassifier): one learned query token attends over the frozen
tokens in a cross-attention block, q <- q + xattn(q, LN(x)); q <- q + MLP(LN(q)), with no
output projection after the cross-attention; a linear head maps the query to class logits.
The V-JEPA 2 variant (`num_self_blocks` > 0, 3 in the reference) first runs that many ordinary
pre-norm self-attention blocks over the tokens.

Cost: with one query the cross-attention is computed in a folded form that never projects every
token to keys and values (linear maps commute with the attention-weighted sum, and the keys'
bias and the LayerNorm bias shift all logits equally, so they cancel in the softmax):

  logits[b,h,k] = sum_d LN0(x)[b,k,d] * gamma_d * (W_k[d,h,:] . q_h) / sqrt(Dh)
  out[b,h,:]    = ((sum_k a[b,h,k] LN0(x)[b,k,:]) * gamma + beta) @ W_v[:,h,:] + b_v[h]

where LN0 is the LayerNorm without its affine (gamma, beta). This is exactly the reference's
arithmetic at O(K D H) instead of O(K D^2) per probe, and LN0(x) is shared by every probe.

Training: a grid of (learning rate x weight decay) probes, V-JEPA 2's protocol, trains in
parallel in one jitted step (vmap over the probe axis), AdamW with a cosine schedule to 0. The
probe reported is the one with the best accuracy on a held-out part of the training set; the
best test accuracy over the whole grid (the reference's way of reporting) is given too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util

from jepa_jax.models.layers import LN_EPS, Mlp, Transformer, layer_norm, trunc_normal

DEFAULT_LRS = (5e-3, 3e-3, 1e-3, 3e-4, 1e-4)  # V-JEPA 2's grid
DEFAULT_WEIGHT_DECAYS = (0.01, 0.1, 0.4, 0.8)


def _normalize(x: jax.Array) -> jax.Array:
    """LayerNorm over the last axis without scale and bias (eps as the model's)."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LN_EPS)


class PoolingCrossAttention(nn.Module):
    """Learned queries attending over tokens; the reference's cross-attention (no output
    projection), computed in the folded form of the module docstring.

    Params: query [Q, D]; norm (the LayerNorm of the tokens, scale/bias [D]); q, k, v kernels
    [D, H, Dh] and biases [H, Dh] (torch's q/k/v Linear weights transposed and reshaped).
    """

    num_heads: int
    num_queries: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, K, D] tokens -> [B, Q, D] pooled queries (before the residual MLP)."""
        d = x.shape[-1]
        h = self.num_heads
        dh = d // h
        query = self.param("query", trunc_normal(), (self.num_queries, d))
        gamma = self.param("norm_scale", nn.initializers.ones_init(), (d,))
        beta = self.param("norm_bias", nn.initializers.zeros_init(), (d,))
        kernels = {
            n: self.param(f"{n}_kernel", trunc_normal(), (d, h, dh)) for n in ("q", "k", "v")
        }
        biases = {n: self.param(f"{n}_bias", nn.initializers.zeros_init(), (h, dh)) for n in "qkv"}
        q = jnp.einsum("qd,dhe->qhe", query, kernels["q"]) + biases["q"]  # [Q, H, Dh]
        folded = jnp.einsum("dhe,qhe->dhq", kernels["k"], q) * (
            gamma[:, None, None] / math.sqrt(dh)
        )
        xn = _normalize(x.astype(jnp.float32))  # shared by every probe of a grid
        logits = jnp.einsum("bkd,dhq->bhqk", xn, folded)
        attn = jax.nn.softmax(logits, axis=-1)
        pooled = jnp.einsum("bhqk,bkd->bqhd", attn, xn) * gamma + beta  # [B, Q, H, D]
        out = jnp.einsum("bqhd,dhe->bqhe", pooled, kernels["v"]) + biases["v"]
        return out.reshape(x.shape[0], self.num_queries, d)


class AttentiveClassifier(nn.Module):
    """[optional self-attention blocks] -> cross-attention query block -> linear head."""

    num_classes: int
    num_heads: int
    num_self_blocks: int = 0  # V-JEPA: 0; V-JEPA 2: 3
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, K, D] frozen tokens -> [B, num_classes] logits."""
        x = x.astype(jnp.float32)
        d = x.shape[-1]
        mlp_dim = int(round(d * self.mlp_ratio))
        if self.num_self_blocks:
            x = Transformer(
                depth=self.num_self_blocks,
                num_heads=self.num_heads,
                mlp_dim=mlp_dim,
                attention_impl="einsum",
                name="blocks",
            )(x)
        q = PoolingCrossAttention(self.num_heads, name="cross_attn")(x)
        q = q + Mlp(mlp_dim, name="mlp")(layer_norm("norm", jnp.float32)(q))
        return nn.Dense(self.num_classes, kernel_init=trunc_normal(), name="head")(q[:, 0])


def probe_decay_mask(params: Any) -> Any:
    """Weight decay on kernels and the query token, not on biases or LayerNorm scales (names
    ending in "bias" / "scale", e.g. the folded cross-attention's `norm_scale`)."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: not k[-1].endswith(("bias", "scale")) for k in flat})


def probe_heads(width: int, num_heads: int) -> int:
    """`num_heads`, or the largest divisor of `width` below it (e.g. for raw-pixel tokens)."""
    return max(h for h in range(1, num_heads + 1) if width % h == 0)


@dataclasses.dataclass(frozen=True)
class GridResult:
    """Per grid point: hyper-parameters and accuracies; `best` indexes the val-selected probe."""

    lrs: np.ndarray  # [P]
    weight_decays: np.ndarray  # [P]
    val_accuracy: np.ndarray  # [P]
    test_accuracy: np.ndarray  # [P]
    best: int

    def summary(self) -> dict[str, Any]:
        b = self.best
        return {
            "accuracy": float(self.test_accuracy[b]),
            "val_accuracy": float(self.val_accuracy[b]),
            "lr": float(self.lrs[b]),
            "weight_decay": float(self.weight_decays[b]),
            "oracle_best_accuracy": float(self.test_accuracy.max()),
            "grid": [
                {
                    "lr": float(lr),
                    "weight_decay": float(wd),
                    "val_accuracy": float(v),
                    "accuracy": float(t),
                }
                for lr, wd, v, t in zip(
                    self.lrs, self.weight_decays, self.val_accuracy, self.test_accuracy, strict=True
                )
            ],
        }


def _view_probs(apply, params, tokens: jax.Array) -> jax.Array:
    """Class probabilities averaged over views: tokens [B, V, K, D] -> [B, C]."""
    b, v = tokens.shape[:2]
    logits = apply(params, tokens.reshape((b * v,) + tokens.shape[2:]))
    return jax.nn.softmax(logits, axis=-1).reshape(b, v, -1).mean(axis=1)


def train_probe_grid(
    module: AttentiveClassifier,
    train_tokens: np.ndarray,
    train_y: np.ndarray,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    lrs: Sequence[float] = DEFAULT_LRS,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    epochs: int = 20,
    batch_size: int = 64,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    min_steps: int = 0,
) -> dict[str, np.ndarray]:
    """Train one probe per (lr, wd) pair in parallel; return accuracies per eval set.

    Args:
      module: the probe.
      train_tokens: [N, V, K, D] frozen tokens (any float dtype); each step reads one random
        view of each example of a batch.
      train_y: int [N] labels.
      eval_sets: name -> (tokens [M, V, K, D], labels [M]); accuracy averages the class
        probabilities over the V views.
      epochs, batch_size: passes over `train_tokens` and examples per step (a fixed shape: the
        last partial batch of an epoch is dropped).
      min_steps: more epochs than `epochs` where needed to reach this many optimizer steps.
      seed: init, shuffling and view choice.

    Returns:
      {"lrs": [P], "weight_decays": [P], name: accuracy [P] for every eval set}.
    """
    n = len(train_tokens)
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    # Why a step floor: epochs suit large sets; a few hundred clips give a few steps per epoch,
    # and 20 epochs of them leave the probe (and its seed-to-seed spread) far from converged.
    epochs = max(epochs, -(-min_steps // steps_per_epoch))
    total = max(1, epochs * steps_per_epoch)
    grid_lr = np.repeat(np.asarray(lrs, np.float64), len(weight_decays))  # reported as given
    grid_wd = np.tile(np.asarray(weight_decays, np.float64), len(lrs))
    num_probes = len(grid_lr)
    apply = lambda p, x: module.apply({"params": p}, x)

    def make_tx(lr, wd):
        return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
            learning_rate=lr, weight_decay=wd, mask=probe_decay_mask
        )

    rng = jax.random.key(seed)
    example = jnp.zeros((1,) + train_tokens.shape[2:], jnp.float32)
    init_keys = jax.random.split(rng, num_probes)

    def init_one(key, lr, wd):
        params = nn.meta.unbox(module.init(key, example)["params"])
        return params, make_tx(lr, wd).init(params)

    params, opt_state = jax.jit(jax.vmap(init_one))(
        init_keys, jnp.asarray(grid_lr, jnp.float32), jnp.asarray(grid_wd, jnp.float32)
    )

    @jax.jit
    def step(params, opt_state, tokens, labels, t):
        scale = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(t / total, 1.0)))  # cosine to 0

        def one(p, s, lr):
            def loss_fn(p):
                logits = apply(p, tokens)
                return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

            loss, grads = jax.value_and_grad(loss_fn)(p)
            # inject_hyperparams reads lr and wd from the state: set this step's lr there.
            s.hyperparams["learning_rate"] = lr * scale
            updates, s = make_tx(lr, 0.0).update(grads, s, p)
            return optax.apply_updates(p, updates), s, loss

        return jax.vmap(one)(params, opt_state, jnp.asarray(grid_lr, jnp.float32))

    order_rng = np.random.default_rng(seed)
    t = 0
    for epoch in range(epochs):
        perm = order_rng.permutation(n)
        losses = []
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            views = order_rng.integers(train_tokens.shape[1], size=len(idx))
            tokens = jnp.asarray(train_tokens[idx, views], jnp.float32)
            params, opt_state, loss = step(
                params, opt_state, tokens, jnp.asarray(train_y[idx], jnp.int32), t
            )
            losses.append(loss)
            t += 1
        if log is not None and (epoch + 1 == epochs or (epoch + 1) % max(1, epochs // 4) == 0):
            mean_loss = np.asarray(jnp.stack(losses).mean(0))
            log(
                f"  epoch {epoch + 1}/{epochs}: train loss {mean_loss.min():.3f} (best probe) "
                f"to {mean_loss.max():.3f} over {num_probes} probes"
            )

    probs_fn = jax.jit(jax.vmap(lambda p, x: _view_probs(apply, p, x), in_axes=(0, None)))
    out: dict[str, np.ndarray] = {"lrs": grid_lr, "weight_decays": grid_wd}
    for name, (tokens, labels) in eval_sets.items():
        correct = np.zeros(num_probes)
        for start in range(0, len(tokens), batch_size):
            chunk = np.asarray(tokens[start : start + batch_size], np.float32)
            m = len(chunk)
            if m < batch_size:  # pad to one shape: one compilation for every eval set
                chunk = np.concatenate(
                    [chunk, np.zeros((batch_size - m,) + chunk.shape[1:], chunk.dtype)]
                )
            probs = np.asarray(probs_fn(params, jnp.asarray(chunk)))[:, :m]  # [P, m, C]
            correct += (probs.argmax(-1) == labels[None, start : start + m]).sum(-1)
        out[name] = correct / len(tokens)
    return out


def fit_attentive_probe(
    train_tokens: np.ndarray,
    train_y: np.ndarray,
    test_tokens: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    num_heads: int,
    num_self_blocks: int = 0,
    lrs: Sequence[float] = DEFAULT_LRS,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    epochs: int = 20,
    batch_size: int = 64,
    val_fraction: float = 0.2,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    min_steps: int = 0,
) -> dict[str, Any]:
    """Train the probe grid on frozen tokens and report the held-out-selected probe.

    Args:
      train_tokens, test_tokens: [N, V, K, D] token features (V views per example).
      train_y, test_y: int [N] labels in [0, num_classes).
      num_heads: attention heads (lowered to a divisor of D if needed).
      val_fraction: share of the training examples held out to pick (lr, wd).
      min_steps: train_probe_grid's step floor.

    Returns:
      GridResult.summary(): "accuracy" (test accuracy of the probe with the best held-out
      accuracy), its "lr", "weight_decay", "val_accuracy", "oracle_best_accuracy" (best test
      accuracy over the grid, as the reference reports) and the whole "grid".
    """
    train_y = np.asarray(train_y, np.int32)
    test_y = np.asarray(test_y, np.int32)
    perm = np.random.default_rng(seed).permutation(len(train_tokens))
    n_val = max(1, int(round(len(train_tokens) * val_fraction)))
    val_idx, fit_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    module = AttentiveClassifier(
        num_classes=num_classes,
        num_heads=probe_heads(train_tokens.shape[-1], num_heads),
        num_self_blocks=num_self_blocks,
    )
    acc = train_probe_grid(
        module,
        train_tokens[fit_idx],
        train_y[fit_idx],
        {"val": (train_tokens[val_idx], train_y[val_idx]), "test": (test_tokens, test_y)},
        lrs=lrs,
        weight_decays=weight_decays,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        log=log,
        min_steps=min_steps,
    )
    result = GridResult(
        lrs=acc["lrs"],
        weight_decays=acc["weight_decays"],
        val_accuracy=acc["val"],
        test_accuracy=acc["test"],
        best=int(np.argmax(acc["val"])),
    )
    return {**result.summary(), "num_heads": module.num_heads, "num_self_blocks": num_self_blocks}
