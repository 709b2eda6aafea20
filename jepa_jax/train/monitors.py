"""Collapse monitors on the target-encoder features.

The step computes the cheap parts on device (feature std, and the D x D Gram matrix of the
features); the effective rank needs an eigendecomposition, which XLA's CPU backend does slowly,
so the host does it with LAPACK, and only on the steps it logs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def feature_std(features: jax.Array) -> jax.Array:
    """Mean over feature dims of the std over all tokens (rows). features: [..., D] -> scalar.

    Falls to 0 when every token maps to the same vector (complete collapse).
    """
    z = features.reshape(-1, features.shape[-1]).astype(jnp.float32)
    return jnp.sqrt(z.var(axis=0) + 1e-12).mean()


def feature_gram(features: jax.Array) -> jax.Array:
    """Z^T Z over all tokens: features [..., D] -> float32 [D, D]; sharded rows reduce on device."""
    z = features.reshape(-1, features.shape[-1]).astype(jnp.float32)
    return z.T @ z


def effective_rank_from_gram(gram: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023) from a Gram matrix: exp of the entropy of the normalised
    singular values of Z (the square roots of the Gram's eigenvalues). In [1, D]."""
    eig = np.linalg.eigvalsh(np.asarray(gram, np.float64))
    sigma = np.sqrt(np.clip(eig, 0.0, None))
    p = sigma / (sigma.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def effective_rank(features: jax.Array) -> float:
    """RankMe of token features [..., D] (host computation; for tests and evaluation)."""
    return effective_rank_from_gram(np.asarray(feature_gram(features)))
