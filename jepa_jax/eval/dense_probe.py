"""Dense probe: a linear classifier on every frozen token, scored by mean IoU against a per-pixel
label map pooled to the token grid (V-JEPA 2.1's dense features, measured rather than assumed).

A source's dense label is an int map per example ([T, H, W] video, [H, W] images; the built-in
shapes sets give `shape_map`: 0 background, 1 + shape where the labelled object is visible).
Each token takes the majority class of its pixels (its tubelet x patch x patch block). The
classifier is the linear probe's logistic regression (train/test standardisation, an L2 grid
picked on a held-out fifth of the training *clips*), with rows weighted by inverse class
frequency, since background tokens outnumber object tokens many times over; it is scored by the
mean over classes of intersection over union on the test tokens.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jepa_jax.eval.linear_probe import (
    LogRegFit,
    check_label_range,
    padded_class_mask,
    prepare_features,
    train_logreg,
)

# Up to max_train_tokens rows a step (vs one per clip), so half the clip probe's steps.
DENSE_FIT = LogRegFit(steps=1000)


def token_labels(
    label_map: np.ndarray, grid: tuple[int, ...], patch_size: int, tubelet_size: int
) -> np.ndarray:
    """Majority class of each token's pixels (ties: the lowest class, i.e. background).

    Args:
      label_map: int [N, T, H, W] (video) or [N, H, W] (images).
      grid: the token grid, (t, h, w) or (h, w).

    Returns:
      int32 [N, prod(grid)] in the encoder's raster token order.
    """
    y = np.asarray(label_map)
    n = y.shape[0]
    if y.ndim == 3:  # images: one "frame" and tubelet 1
        y, grid, tubelet_size = y[:, None], (1,) + tuple(grid), 1
    t, h, w = grid
    if y.shape[1:] != (t * tubelet_size, h * patch_size, w * patch_size):
        raise ValueError(
            f"label map {y.shape[1:]} does not tile into the token grid {grid} of "
            f"{tubelet_size}x{patch_size}x{patch_size}"
        )
    blocks = y.reshape(n, t, tubelet_size, h, patch_size, w, patch_size)
    blocks = blocks.transpose(0, 1, 3, 5, 2, 4, 6).reshape(n, t * h * w, -1)
    num_classes = int(y.max()) + 1
    counts = (blocks[..., None] == np.arange(num_classes)).sum(axis=2)  # [N, K, C]
    return counts.argmax(-1).astype(np.int32)


def mean_iou(pred: np.ndarray, true: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """(mean IoU over the classes present in `true` or `pred`, per-class IoU [C], NaN where a
    class is in neither)."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    iou = np.full(num_classes, np.nan)
    for c in range(num_classes):
        union = np.sum((pred == c) | (true == c))
        if union:
            iou[c] = np.sum((pred == c) & (true == c)) / union
    return float(np.nanmean(iou)), iou


def fit_dense_probe(
    train_tokens: np.ndarray,
    train_labels: np.ndarray,
    test_tokens: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    fit: LogRegFit = DENSE_FIT,
    seed: int = 0,
    max_train_tokens: int = 32768,
) -> dict:
    """Train a per-token linear classifier and report test mean IoU.

    Args:
      train_tokens, test_tokens: float [N, K, D] frozen token features.
      train_labels, test_labels: int [N, K] token classes in [0, num_classes).
      fit: the regression's L2 grid, steps and learning rate (the L2 strength is picked by
        held-out mean IoU).
      max_train_tokens: the classifier fits a random subset of at most this many training
        tokens (drawn with `seed`), which bounds its cost (800 clips x 256 tokens would be 200k
        rows); every test token is scored.

    Returns:
      {"accuracy": test mean IoU (the table's figure), "miou": the same, "per_class_iou": [C],
       "token_accuracy": fraction of test tokens right, "l2": the strength picked on a held-out
       fifth of the training clips, "val_miou": its held-out mean IoU}.
    """
    check_label_range(train_labels, test_labels, num_classes, "token labels")
    n, k, d = train_tokens.shape
    rng = np.random.default_rng(seed)
    held_out = np.zeros(n, bool)  # the L2 strength is picked on a fifth of the clips
    held_out[rng.permutation(n)[: max(1, n // 5)]] = True
    rows = np.sort(rng.permutation(n * k)[:max_train_tokens])
    rows_out = np.repeat(held_out, k)[rows]
    train_x, test_x = prepare_features(
        train_tokens.reshape(n * k, d)[rows], test_tokens.reshape(-1, test_tokens.shape[-1])
    )
    train_x, test_x = train_x[:, 0], test_x[:, 0]
    y = np.asarray(train_labels, np.int32).reshape(-1)[rows]
    # Inverse class frequency, so every class weighs the same in the loss.
    freq = np.bincount(y, minlength=num_classes).astype(np.float64)
    class_weight = np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / num_classes, 0.0)
    weights = class_weight[y].astype(np.float32)
    class_mask = padded_class_mask(num_classes)
    x, yj = jnp.asarray(train_x), jnp.asarray(y)
    l2s = jnp.asarray(fit.l2s, jnp.float32)
    grid_weights = np.broadcast_to(weights * ~rows_out, (len(l2s), len(y)))
    w, b = train_logreg(x, yj, class_mask, l2s, grid_weights, fit.steps, fit.lr)
    val_pred = np.asarray(jnp.einsum("nd,pdc->pnc", x[rows_out], w) + b[:, None]).argmax(-1)
    val = [mean_iou(p, y[rows_out], num_classes)[0] for p in val_pred]
    best = int(np.argmax(val))
    w, b = train_logreg(x, yj, class_mask, l2s[best : best + 1], weights[None], fit.steps, fit.lr)
    pred = np.asarray(jnp.asarray(test_x) @ w[0] + b[0]).argmax(-1)
    true = np.asarray(test_labels).reshape(-1)
    miou, per_class = mean_iou(pred, true, num_classes)
    return {
        "accuracy": miou,
        "miou": miou,
        "per_class_iou": [None if np.isnan(v) else float(v) for v in per_class],
        "token_accuracy": float(np.mean(pred == true)),
        "l2": fit.l2s[best],
        "val_miou": float(val[best]),
    }
