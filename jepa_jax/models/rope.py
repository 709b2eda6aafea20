"""3D rotary position embedding (RoPE): V-JEPA 2's *tiled* frequency layout and V-JEPA 2.1's
fixed *interleaved* one, with 2.1's optional position interpolation to a reference grid.

V-JEPA 2 drops the absolute sin-cos table and rotates queries and keys in every attention
layer instead. Each head's channels are split into three chunks of c = 2*floor(floor(Dh/3)/2)
channels, rotated by the token's frame, row and column index respectively; the last Dh - 3c
channels are left alone. Within a chunk, the angle table is

    freqs = pos * 1/10000^(i/(c/2)),  i = 0..c/2-1,    cos = [cos(freqs), cos(freqs)]  (tiled)

and channel pairs (2j, 2j+1) are rotated as (x0, x1) -> (x0*cos - x1*sin, x1*cos + x0*sin),
with cos/sin taken at channel 2j and 2j+1 of the *tiled* table. The tiling means the two
channels of a pair do not share one frequency (the interleaved layout would); this is a bug in
the reference, kept there for checkpoint compatibility, so it is reproduced here: the released
weights only work with it.

V-JEPA 2.1 fixes it: cos = [cos(f0), cos(f0), cos(f1), cos(f1), ...] (interleaved), so each
pair turns by one angle, a true rotation (`interleaved=True`, pos_embed "rope_interleaved").
It also rescales the row and column positions to a reference grid (`reference_grid` G > 0):
pos * (G - 1) / (n - 1) for an axis of n tokens, so a model pretrained on a G x G grid sees the
same position range at any resolution (16 for 256 px at patch 16); frame positions are kept.

Positions are grid indices recovered from each token's flat raster index, so a masked
(gathered) context keeps its true positions. Tables are numpy constants built at trace time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# pos_embed values that mean RoPE: V-JEPA 2's tiled tables, V-JEPA 2.1's interleaved ones.
ROPE_EMBEDS = ("rope", "rope_interleaved")


def rope_chunk_size(head_dim: int) -> int:
    """Channels per rotated axis (frame, row, column): 2 * floor(floor(head_dim / 3) / 2)."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(grid: tuple[int, ...]) -> np.ndarray:
    """Integer (frame, row, column) of every token of a (t, h, w) or (h, w) grid: [N, 3].

    Tokens are in raster order; a 2D (image) grid has frame index 0 everywhere.
    """
    if len(grid) == 2:
        grid = (1,) + tuple(grid)
    if len(grid) != 3:
        raise ValueError(f"token grid must be (h, w) or (t, h, w), got {grid}")
    t, h, w = np.meshgrid(*(np.arange(n) for n in grid), indexing="ij")
    return np.stack([t.reshape(-1), h.reshape(-1), w.reshape(-1)], axis=1)


def rope_tables(
    grid: tuple[int, ...], head_dim: int, interleaved: bool = False, reference_grid: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables of every token of `grid`, each float32 [N, 3 * chunk].

    Only the rotated channels are covered; `apply_rope` leaves the rest of the head unchanged.
    `interleaved`: V-JEPA 2.1's layout (else V-JEPA 2's tiled one); `reference_grid` > 0: row and
    column positions rescaled to a grid of that side (module docstring).
    """
    chunk = rope_chunk_size(head_dim)
    if chunk == 0:
        raise ValueError(f"head_dim {head_dim} is too small for 3D RoPE (need >= 6)")
    if reference_grid < 0:
        raise ValueError(f"reference_grid must be >= 0 (0: off), got {reference_grid}")
    omega = 1.0 / 10000 ** (np.arange(chunk // 2, dtype=np.float64) / (chunk / 2.0))
    pos = grid_positions(grid).astype(np.float64)  # [N, 3]
    if reference_grid:
        for axis, n in ((1, grid[-2]), (2, grid[-1])):
            pos[:, axis] *= (reference_grid - 1) / max(n - 1, 1)
    cos, sin = [], []
    for axis in range(3):
        freqs = pos[:, axis, None] * omega[None]  # [N, chunk/2]
        if interleaved:  # [f0, f0, f1, f1, ...]: each channel pair turns by one angle
            cos.append(np.repeat(np.cos(freqs), 2, axis=1))
            sin.append(np.repeat(np.sin(freqs), 2, axis=1))
        else:  # tiled [f0..fk, f0..fk], as V-JEPA 2 (kept for its weights)
            cos.append(np.tile(np.cos(freqs), (1, 2)))
            sin.append(np.tile(np.sin(freqs), (1, 2)))
    return (
        np.concatenate(cos, axis=1).astype(np.float32),
        np.concatenate(sin, axis=1).astype(np.float32),
    )


def token_rope(
    grid: tuple[int, ...],
    head_dim: int,
    token_idx: jax.Array | None = None,
    interleaved: bool = False,
    reference_grid: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) for the encoded tokens: [1, N, R] for the full grid or [B, K, R] at token_idx.

    R = 3 * rope_chunk_size(head_dim) rotated channels; `interleaved` and `reference_grid` as in
    `rope_tables`.
    """
    cos, sin = rope_tables(grid, head_dim, interleaved, reference_grid)
    if token_idx is None:
        return jnp.asarray(cos)[None], jnp.asarray(sin)[None]
    return jnp.asarray(cos)[token_idx], jnp.asarray(sin)[token_idx]


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate queries or keys. x: [B, N, H, Dh]; cos, sin: [B or 1, N, R] with R <= Dh even.

    The first R channels of every head are rotated pairwise; channels R.. pass through.
    """
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    pairs = rot.reshape(rot.shape[:-1] + (r // 2, 2))
    # (x0, x1) -> (-x1, x0) for every adjacent channel pair.
    swapped = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(rot.shape)
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    return jnp.concatenate([rot * cos + swapped * sin, rest], axis=-1)
