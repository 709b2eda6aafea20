"""Frozen features for probes: a trained or random encoder, or raw pixels, over many views.

A `FrozenEncoder` maps normalised pixels to token features [B, N, D] (what the attentive probe
reads) and pooled features [B, D'] (what the linear probe and kNN read): the average over tokens
of the last block, or with `last_k_blocks` > 1 the concatenated averages of the last k blocks,
each passed through the encoder's final LayerNorm (the I-JEPA paper's "last 4 layers").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jepa_jax.models.inputs import normalize_pixels
from jepa_jax.models.layers import Block, layer_norm
from jepa_jax.models.vit import VisionTransformer, patchify
from jepa_jax.sharding import batch_sharding

FeatureFn = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class FrozenEncoder:
    """What a probe reads: `features(params, x)` -> (tokens [B, N, D], pooled [B, D'])."""

    name: str  # e.g. "trained", "random_init", "pixels"
    params: Any
    features: FeatureFn
    num_heads: int  # the encoder's heads: the attentive probe's default


def vit_features(module: VisionTransformer, last_k_blocks: int = 1) -> FeatureFn:
    """Features of a ViT encoder (an unscanned module, as exports and eval build it)."""
    if not 1 <= last_k_blocks <= module.depth:
        raise ValueError(f"last_k_blocks={last_k_blocks} must be in [1, depth={module.depth}]")

    def features(params, x):
        if last_k_blocks == 1:
            tokens = module.apply({"params": params}, x)
            return tokens, tokens.mean(axis=1)
        tokens, state = module.apply(
            {"params": params},
            x,
            capture_intermediates=lambda mdl, method: isinstance(mdl, Block),
            mutable=["intermediates"],
        )
        inter = state["intermediates"]["transformer"]
        norm = layer_norm(dtype=module.dtype)
        pooled = []
        for i in range(module.depth - last_k_blocks, module.depth):
            block_out = inter[f"blocks_{i}"]["__call__"][0][0]  # Block returns (x, None)
            pooled.append(norm.apply({"params": params["norm"]}, block_out).mean(axis=1))
        return tokens, jnp.concatenate(pooled, axis=-1)

    return features


def pixel_features(patch_size: int, tubelet_size: int) -> FeatureFn:
    """The raw-pixel baseline: tokens are the normalised pixel patches (what the encoder's
    patch embedding sees, for the attentive probe); "pooled" is every pixel, flattened and *not*
    averaged [B, N * patch_dim], for the linear probe and kNN. Averaging patches would throw away
    where things are and so understate what a linear model reads straight from the pixels."""

    def features(params, x):
        del params
        tokens = patchify(x, patch_size, tubelet_size)
        return tokens, tokens.reshape(tokens.shape[0], -1)

    return features


@functools.lru_cache(maxsize=64)
def _jit_on_pixels(fn: Callable) -> Callable:
    """jax.jit of `fn(params, normalize_pixels(uint8 x))`, one per `fn` (so splits and calls
    with the same batch shape share one compilation)."""
    return jax.jit(lambda p, x: fn(p, normalize_pixels(x)))


def map_batches(
    fn: Callable[[Any, jax.Array], Any],
    params: Any,
    pixels: np.ndarray,
    batch_size: int,
    mesh: Mesh,
    log: Callable[[str], None] | None = None,
) -> list[np.ndarray]:
    """Run jitted `fn(params, normalised pixels)` over a host array in batches split over the
    mesh's data x fsdp axes, and concatenate each output along the batch.

    Args:
      fn: returns an array or a tuple of arrays with leading batch axis.
      pixels: uint8 [N, ...] on the host.
      batch_size: rounded up to a multiple of the data-parallel size; the last batch is padded
        so every call has one shape (one compilation).
      log: optional progress printer (about ten lines over the whole pass).

    Returns:
      A list with one numpy array [N, ...] per output of `fn`.
    """
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    batch_size = -(-batch_size // dp) * dp
    sharding = batch_sharding(mesh)
    jitted = _jit_on_pixels(fn)
    outputs: list[list[np.ndarray]] = []
    num_batches = -(-len(pixels) // batch_size)
    every = max(1, num_batches // 10)
    for b, start in enumerate(range(0, len(pixels), batch_size)):
        chunk = pixels[start : start + batch_size]
        n = len(chunk)
        if n < batch_size:
            pad = np.zeros((batch_size - n,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        out = jitted(params, jax.device_put(chunk, sharding))
        out = out if isinstance(out, tuple) else (out,)
        if not outputs:
            outputs = [[] for _ in out]
        for acc, o in zip(outputs, out, strict=True):
            acc.append(np.asarray(o)[:n])
        if log is not None and num_batches >= 4 and ((b + 1) % every == 0 or b + 1 == num_batches):
            log(f"  {min(start + batch_size, len(pixels))}/{len(pixels)}")
    return [np.concatenate(acc) for acc in outputs]


@functools.lru_cache(maxsize=64)
def _storage_features(features: FeatureFn, keep_tokens: bool) -> Callable:
    """`features` with outputs as stored on the host: (bfloat16 tokens, float32 pooled) or
    pooled only (cached, so repeated calls reuse one compiled function)."""

    def fn(params, x):
        tokens, pooled = features(params, x)
        pooled = pooled.astype(jnp.float32)
        return (tokens.astype(jnp.bfloat16), pooled) if keep_tokens else pooled

    return fn


def extract_view_features(
    encoder: FrozenEncoder,
    views: np.ndarray,
    batch_size: int,
    mesh: Mesh,
    keep_tokens: bool,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Features of every view of every example.

    Args:
      views: uint8 [N, V, ...] (eval/views.py).
      keep_tokens: also return the token features (the attentive probe needs them).

    Returns:
      (tokens bfloat16 [N, V, K, D] or None, pooled float32 [N, V, D']). Tokens are stored in
      bfloat16 to halve host memory; probes compute in float32.
    """
    n, v = views.shape[:2]
    flat = views.reshape((n * v,) + views.shape[2:])
    fn = _storage_features(encoder.features, keep_tokens)
    out = map_batches(fn, encoder.params, flat, batch_size, mesh, log)
    pooled = out[-1].reshape(n, v, -1)
    tokens = out[0].reshape((n, v) + out[0].shape[1:]) if keep_tokens else None
    return tokens, pooled
