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

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jepa_jax.eval.features import map_batches

DEFAULT_L2 = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclasses.dataclass(frozen=True)
class LogRegFit:
    """How a probe's logistic regression trains: the L2 strengths tried in parallel (the one
    that does best on a held-out fifth is retrained on everything), full-batch Adam steps and
    learning rate."""

    l2s: tuple[float, ...] = DEFAULT_L2
    steps: int = 2000
    lr: float = 0.01

    @classmethod
    def from_config(cls, linear: Mapping[str, Any]) -> LogRegFit:
        """From a `config.probe.linear` section (`l2`, `steps`, `lr`)."""
        return cls(tuple(float(v) for v in linear["l2"]), int(linear["steps"]), float(linear["lr"]))


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


def prepare_features(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features as [N, V, D] (train statistics), projected onto the span of the
    training rows when wider than their count (module docstring)."""
    train_x, test_x = _as_views(train_x), _as_views(test_x)
    if train_x.shape[-1] != test_x.shape[-1]:
        raise ValueError(
            f"feature widths differ: train {train_x.shape[-1]} vs test {test_x.shape[-1]}"
        )
    flat = train_x.reshape(-1, train_x.shape[-1])
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    train_x = ((train_x - mean) / std).astype(np.float32)
    test_x = ((test_x - mean) / std).astype(np.float32)
    if train_x.shape[-1] > len(flat):
        train_x, test_x = project_to_sample_span(train_x, test_x)
    return train_x, test_x


def project_to_sample_span(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Coordinates in the span of the training rows: x -> x V, with V [D, R] the orthonormal
    right singular vectors of the training matrix (R <= number of rows).

    For w = V a, x.w = (x V).a and |w|^2 = |a|^2, so an L2-regularised linear model on the
    projected features is exactly the model on the originals (its optimum lies in that span).
    """
    flat = train_x.reshape(-1, train_x.shape[-1]).astype(np.float32)
    # The right singular vectors from the small [R, R] Gram matrix's eigenvectors (R rows << D
    # columns): V = X^T U / s. float64 there keeps the small singular values accurate.
    gram = (flat @ flat.T).astype(np.float64)
    eig, u = np.linalg.eigh(gram)
    order = np.argsort(eig)[::-1]
    eig, u = np.clip(eig[order], 0.0, None), u[:, order]
    s = np.sqrt(eig)
    keep = s > s[0] * 1e-6 if len(s) and s[0] > 0 else s > 0
    vt = ((flat.T.astype(np.float64) @ u[:, keep]) / s[keep]).T
    v = vt.T.astype(np.float32)  # [D, R], orthonormal columns
    return (train_x @ v).astype(np.float32), (test_x @ v).astype(np.float32)


def _train_logreg(x, y, class_mask, l2s, row_weights, steps, lr):
    """Full-batch (Adam) logistic regression, one model per (L2 strength, row weighting), all
    in parallel.

    x: [N, D] standardised; y: int [N]; class_mask: [C] 1 for real classes, 0 for padding (the
    class axis is padded so that labels with different class counts share one compilation);
    l2s: [P]; row_weights: [P, N] (0 leaves a row out). Returns (w [P, D, C], b [P, C]).
    """
    d, c = x.shape[1], class_mask.shape[0]
    onehot = jax.nn.one_hot(y, c)
    logit_pad = jnp.where(class_mask > 0, 0.0, -1e9)  # padded classes get no probability
    opt = optax.adam(lr)

    def loss(wb, l2, weights):
        w, b = wb
        logits = x @ w + b + logit_pad
        per_row = optax.softmax_cross_entropy(logits, onehot)
        return jnp.sum(weights * per_row) / jnp.sum(weights) + l2 * jnp.sum(w * w)

    def fit(l2, weights):
        wb = (jnp.zeros((d, c)), jnp.zeros((c,)))
        state = opt.init(wb)

        def body(_, carry):
            wb, state = carry
            g = jax.grad(loss)(wb, l2, weights)
            updates, state = opt.update(g, state, wb)
            return optax.apply_updates(wb, updates), state

        wb, _ = jax.lax.fori_loop(0, steps, body, (wb, state))
        w, b = wb
        return w, b + logit_pad

    return jax.vmap(fit)(l2s, row_weights)


train_logreg = jax.jit(_train_logreg, static_argnames=("steps",))
# Class axes are padded to a multiple of this: one compilation serves every built-in label (4-9
# classes) and an image folder of up to 16 classes.
CLASS_PAD = 16


def padded_class_mask(num_classes: int) -> jax.Array:
    """float32 [C padded to a multiple of CLASS_PAD]: 1 for the real classes, 0 for padding
    (train_logreg's `class_mask`)."""
    padded = -(-num_classes // CLASS_PAD) * CLASS_PAD
    return jnp.asarray(np.arange(padded) < num_classes, jnp.float32)


def check_label_range(
    train_y: np.ndarray, test_y: np.ndarray, num_classes: int, what: str = "labels"
) -> None:
    """ValueError naming the split unless every label lies in [0, num_classes)."""
    for name, y in (("train", train_y), ("test", test_y)):
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(
                f"{name} {what} span [{y.min()}, {y.max()}] but the probe has {num_classes} classes"
            )


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
    fit: LogRegFit = LogRegFit(),
    seed: int = 0,
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Train a linear classifier on frozen features and report held-out accuracy.

    Args:
      train_x, test_x: float [N, D] features, or [N, V, D] with V views per example.
      train_y, test_y: int [N] labels in [0, num_classes).
      fit: the regression's L2 grid, steps and learning rate.
      seed: draws the held-out fifth.
      prepared: `prepare_features(train_x, test_x)`, when several labels share the features
        (the standardisation and projection are then done once); train_x/test_x are ignored.

    Returns:
      {"accuracy": test accuracy of the probe retrained on all training features with the L2
       strength that did best on a held-out fifth, "l2": that strength,
       "val_accuracy": its held-out accuracy}.
    """
    train_y = np.asarray(train_y, np.int32)
    test_y = np.asarray(test_y, np.int32)
    check_label_range(train_y, test_y, num_classes)
    if prepared is None:
        prepared = prepare_features(train_x, test_x)
    train_x, test_x = prepared
    perm = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, len(train_x) // 5)
    val_idx = perm[:n_val]
    n, views = train_x.shape[:2]
    # The L2 grid trains on the rows outside the held-out fifth, then the chosen strength
    # retrains on every row; row weights select, so both calls (and every label) share shapes.
    held_out = np.zeros(n, np.float32)
    held_out[val_idx] = 1.0
    fit_rows = jnp.asarray(np.repeat(1.0 - held_out, views))
    class_mask = padded_class_mask(num_classes)
    x = jnp.asarray(train_x.reshape(n * views, -1))
    y = jnp.asarray(np.repeat(train_y, views))
    grid_weights = jnp.broadcast_to(fit_rows, (len(fit.l2s), n * views))
    l2_arr = jnp.asarray(fit.l2s, jnp.float32)
    w, b = train_logreg(x, y, class_mask, l2_arr, grid_weights, fit.steps, fit.lr)
    val_acc = _accuracy(w, b, jnp.asarray(train_x[val_idx]), jnp.asarray(train_y[val_idx]))
    best = int(np.argmax(val_acc))
    all_rows = jnp.ones((1, n * views), jnp.float32)
    w, b = train_logreg(x, y, class_mask, l2_arr[best : best + 1], all_rows, fit.steps, fit.lr)
    test_acc = _accuracy(w, b, jnp.asarray(test_x), jnp.asarray(test_y))[0]
    return {
        "accuracy": float(test_acc),
        "l2": fit.l2s[best],
        "val_accuracy": float(val_acc[best]),
    }
