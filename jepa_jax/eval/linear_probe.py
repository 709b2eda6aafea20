"""Frozen-feature linear probe: pooled encoder features -> multinomial logistic regression.

Features are standardised with the training set's per-dimension mean and std (BatchNorm-style
normalisation without affine, with the statistics frozen as at BatchNorm's inference time).
Features wider than the training set (raw pixels, flattened tokens) are first projected onto
the span of the training samples: an L2-regularised linear model's weights always lie in that
span, so the fit is the same, at the cost of an N-dimensional problem instead of a
D-dimensional one. The L2 strength is chosen on a held-out fifth of the probe's training set
(never on the test set); all candidate strengths train in parallel in one jitted, vmapped loop.
With several views per example (clips x crops), every training view is a sample and the test
class probabilities are averaged over each example's views.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jepa_jax.eval.features import map_batches

DEFAULT_L2 = (1e-4, 1e-3, 1e-2, 1e-1)


def pooled_features(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    pixels: np.ndarray,
    batch_size: int,
    mesh: Mesh,
) -> np.ndarray:
    """Average-pooled token features of frozen encoder params.

    Args:
      apply_fn: (params, normalised pixels [B, ...]) -> tokens [B, N, D].
      params: the encoder params.
      pixels: uint8 [N, (T,) H, W, 3] on the host.
      batch_size: examples per forward pass; rounded up to a multiple of the data-parallel size.
      mesh: batches are split over its data and fsdp axes.

    Returns:
      float32 [N, D].
    """
    return map_batches(_mean_pooled(apply_fn), params, pixels, batch_size, mesh)[0]


@functools.lru_cache(maxsize=64)
def _mean_pooled(apply_fn: Callable) -> Callable:
    """(params, x) -> float32 token average; one function object per `apply_fn`, so passes over
    train and test splits (and several params) share map_batches' compiled function."""
    return lambda p, x: apply_fn(p, x).astype(jnp.float32).mean(axis=1)


def project_to_sample_span(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Coordinates in the span of the training rows: x -> x V, with V [D, R] the orthonormal
    right singular vectors of the training matrix (R <= number of rows).

    For w = V a, x.w = (x V).a and |w|^2 = |a|^2, so an L2-regularised linear model on the
    projected features is exactly the model on the originals (its optimum lies in that span).
    """
    flat = train_x.reshape(-1, train_x.shape[-1]).astype(np.float64)
    _, s, vt = np.linalg.svd(flat, full_matrices=False)
    keep = s > s[0] * 1e-6 if len(s) else s > 0
    v = vt[keep].T.astype(np.float32)  # [D, R]
    return (train_x @ v).astype(np.float32), (test_x @ v).astype(np.float32)


def _train_logreg(x, y, num_classes, l2s, steps, lr):
    """Full-batch (Adam) logistic regression for each L2 strength in parallel.

    x: [N, D] standardised; y: int [N]; l2s: [P]. Returns (w [P, D, C], b [P, C]).
    """
    d = x.shape[1]
    onehot = jax.nn.one_hot(y, num_classes)
    opt = optax.adam(lr)

    def loss(wb, l2):
        w, b = wb
        logits = x @ w + b
        return optax.softmax_cross_entropy(logits, onehot).mean() + l2 * jnp.sum(w * w)

    def fit(l2):
        wb = (jnp.zeros((d, num_classes)), jnp.zeros((num_classes,)))
        state = opt.init(wb)

        def body(_, carry):
            wb, state = carry
            g = jax.grad(loss)(wb, l2)
            updates, state = opt.update(g, state, wb)
            return optax.apply_updates(wb, updates), state

        wb, _ = jax.lax.fori_loop(0, steps, body, (wb, state))
        return wb

    return jax.vmap(fit)(l2s)


_train_logreg_jit = jax.jit(_train_logreg, static_argnames=("num_classes", "steps"))


def _accuracy(w, b, x, y) -> np.ndarray:
    """Accuracy of each probe: w [P, D, C], b [P, C], x [N, V, D] -> [P]; the class
    probabilities of an example's V views are averaged."""
    logits = jnp.einsum("nvd,pdc->pnvc", x, w) + b[:, None, None]
    probs = jax.nn.softmax(logits, axis=-1).mean(axis=2)
    return np.asarray((probs.argmax(-1) == y[None]).mean(-1))


def _as_views(x: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 1, D]; [N, V, D] unchanged."""
    return x[:, None] if x.ndim == 2 else x


def fit_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    l2s: Sequence[float] = DEFAULT_L2,
    steps: int = 2000,
    lr: float = 0.01,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on frozen features and report held-out accuracy.

    Args:
      train_x, test_x: float [N, D] features, or [N, V, D] with V views per example.
      train_y, test_y: int [N] labels in [0, num_classes).

    Returns:
      {"accuracy": test accuracy of the probe retrained on all training features with the L2
       strength that did best on a held-out fifth, "l2": that strength,
       "val_accuracy": its held-out accuracy}.
    """
    train_y = np.asarray(train_y, np.int32)
    test_y = np.asarray(test_y, np.int32)
    for name, y in (("train", train_y), ("test", test_y)):
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(
                f"{name} labels span [{y.min()}, {y.max()}] but the probe has {num_classes} classes"
            )
    train_x, test_x = _as_views(train_x), _as_views(test_x)
    if train_x.shape[-1] != test_x.shape[-1]:
        raise ValueError(
            f"feature widths differ: train {train_x.shape[-1]} vs test {test_x.shape[-1]}"
        )
    flat = train_x.reshape(-1, train_x.shape[-1])
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    train_x = (train_x - mean) / std
    test_x = (test_x - mean) / std
    if train_x.shape[-1] > len(flat):
        train_x, test_x = project_to_sample_span(train_x, test_x)
    perm = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, len(train_x) // 5)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    l2_arr = jnp.asarray(l2s, jnp.float32)

    def samples(idx):  # every view of the chosen examples is a training sample
        x = train_x[idx]
        return jnp.asarray(x.reshape(-1, x.shape[-1])), jnp.asarray(
            np.repeat(train_y[idx], x.shape[1])
        )

    w, b = _train_logreg_jit(*samples(fit_idx), num_classes, l2_arr, steps, lr)
    val_acc = _accuracy(w, b, jnp.asarray(train_x[val_idx]), jnp.asarray(train_y[val_idx]))
    best = int(np.argmax(val_acc))
    all_idx = np.arange(len(train_x))
    w, b = _train_logreg_jit(*samples(all_idx), num_classes, l2_arr[best : best + 1], steps, lr)
    test_acc = _accuracy(w, b, jnp.asarray(test_x), jnp.asarray(test_y))[0]
    return {
        "accuracy": float(test_acc),
        "l2": float(l2s[best]),
        "val_accuracy": float(val_acc[best]),
    }
