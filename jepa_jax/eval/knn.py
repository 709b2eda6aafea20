"""Training-free check: k-nearest-neighbour classification of pooled features by cosine
similarity.

Features are centred on the training mean before the cosine: pooled features of a ViT share a
large common component (cosine 0.98-0.999 to their mean), which would otherwise dominate every
similarity. Each test view votes with its k most similar training views (every view of every
training example is a candidate), weighted by exp(similarity / temperature) as in DINO's kNN
(temperature 0 gives plain majority votes); the votes of an example's views are averaged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 256,
) -> dict[str, float]:
    """Accuracy of cosine kNN.

    Args:
      train_x, test_x: float [N, D] or [N, V, D] pooled features (V views per example).
      train_y, test_y: int [N] labels in [0, num_classes).
      k: neighbours (capped at the number of training views).
      temperature: vote weight exp(sim / temperature); 0 for unweighted votes.
      chunk: test views per similarity matmul (bounds memory at chunk x training views).

    Returns:
      {"accuracy", "k", "temperature"}.
    """
    train_x = train_x[:, None] if train_x.ndim == 2 else train_x
    test_x = test_x[:, None] if test_x.ndim == 2 else test_x
    v_train, v_test = train_x.shape[1], test_x.shape[1]
    train_flat = np.asarray(train_x, np.float32).reshape(-1, train_x.shape[-1])
    mean = train_flat.mean(axis=0)
    bank = jnp.asarray(_unit(train_flat - mean), jnp.float32)
    bank_y = jnp.asarray(np.repeat(np.asarray(train_y, np.int32), v_train))
    k = min(k, bank.shape[0])

    @jax.jit
    def votes(q):
        sims, idx = jax.lax.top_k(q @ bank.T, k)  # [M, k]
        weights = jnp.exp(sims / temperature) if temperature > 0 else jnp.ones_like(sims)
        onehot = jax.nn.one_hot(bank_y[idx], num_classes)  # [M, k, C]
        scores = (weights[..., None] * onehot).sum(axis=1)
        return scores / scores.sum(axis=-1, keepdims=True)

    queries = _unit(np.asarray(test_x, np.float32).reshape(-1, test_x.shape[-1]) - mean)
    scores = []
    for start in range(0, len(queries), chunk):
        part = queries[start : start + chunk]
        pad = chunk - len(part)  # one compiled shape
        part = np.concatenate([part, np.zeros((pad, part.shape[1]), np.float32)]) if pad else part
        scores.append(np.asarray(votes(jnp.asarray(part)))[: chunk - pad])
    per_example = np.concatenate(scores).reshape(len(test_x), v_test, num_classes).mean(axis=1)
    accuracy = float((per_example.argmax(-1) == np.asarray(test_y)).mean())
    return {"accuracy": accuracy, "k": int(k), "temperature": float(temperature)}
