"""Collapse monitors on the target-encoder features.

The step computes sufficient statistics on device (token count, per-dim sum and sum of squares,
and the D x D Gram matrix), which add up exactly across microbatches; the host turns them into
the feature std and the effective rank, only on the steps it logs (the rank needs an
eigendecomposition, which XLA's CPU backend does slowly and LAPACK does fast).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def feature_stats(features: jax.Array) -> dict[str, jax.Array]:
    """Sufficient statistics of token features [..., D] for the monitors (all float32):
    {"count": [], "sum": [D], "sq_sum": [D], "gram": [D, D]}."""
    z = features.reshape(-1, features.shape[-1]).astype(jnp.float32)
    return {
        "count": jnp.asarray(z.shape[0], jnp.float32),
        "sum": z.sum(0),
        "sq_sum": jnp.square(z).sum(0),
        "gram": z.T @ z,
    }


def monitors_from_stats(stats: dict[str, np.ndarray]) -> dict[str, float]:
    """{"feature_std", "effective_rank"} from (possibly accumulated) `feature_stats` on host.

    Both are NaN when the statistics are not finite (a diverged step): the monitors report, they
    never raise (LAPACK's eigensolver fails on NaN input).
    """
    if not all(np.all(np.isfinite(np.asarray(v))) for v in stats.values()):
        return {"feature_std": float("nan"), "effective_rank": float("nan")}
    n = float(stats["count"])
    mean = np.asarray(stats["sum"], np.float64) / n
    var = np.asarray(stats["sq_sum"], np.float64) / n - mean * mean
    return {
        "feature_std": float(np.sqrt(np.clip(var, 0.0, None) + 1e-12).mean()),
        "effective_rank": effective_rank_from_gram(stats["gram"]),
    }


def effective_rank_from_gram(gram: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023) from a Gram matrix: exp of the entropy of the normalised
    singular values of Z (the square roots of the Gram's eigenvalues). In [1, D]."""
    eig = np.linalg.eigvalsh(np.asarray(gram, np.float64))
    sigma = np.sqrt(np.clip(eig, 0.0, None))
    p = sigma / (sigma.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))
