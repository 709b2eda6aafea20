"""3D RoPE (V-JEPA 2) and the I-JEPA 2D sin-cos layout, without PyTorch: against a literal numpy
transcription of the reference formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jepa_jax.models import VisionTransformer
from jepa_jax.models.init import init_encoder_params
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.rope import apply_rope, grid_positions, rope_chunk_size, token_rope


def reference_rotate(x, pos):
    """The reference's rotate_queries_or_keys in numpy: x [N, D], pos [N]. Frequencies are
    1/10000^(i/(D/2)); sin/cos are *tiled* [f0..fk, f0..fk]; pairs (x0, x1) -> (-x1, x0)."""
    d = x.shape[-1]
    omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
    freq = pos[:, None] * omega[None]
    emb_sin = np.tile(np.sin(freq), (1, 2))
    emb_cos = np.tile(np.cos(freq), (1, 2))
    y = x.reshape(x.shape[0], -1, 2)
    y = np.stack([-y[..., 1], y[..., 0]], axis=-1).reshape(x.shape)
    return x * emb_cos + y * emb_sin


def reference_rope_3d(x, grid):
    """The reference RoPEAttention's rotation of one head, x [N, Dh] on grid (t, h, w)."""
    c = rope_chunk_size(x.shape[-1])
    t, h, w = grid
    ids = np.arange(t * h * w)
    frame = ids // (h * w)
    row = (ids - frame * h * w) // w
    col = ids - frame * h * w - row * w
    parts = [
        reference_rotate(x[:, i * c : (i + 1) * c], p) for i, p in enumerate((frame, row, col))
    ]
    return np.concatenate(parts + [x[:, 3 * c :]], axis=1)


@pytest.mark.parametrize("head_dim", [64, 80, 20])
def test_rope_matches_the_reference_formula_with_tiled_frequencies(head_dim):
    grid = (2, 3, 4)
    x = np.random.default_rng(0).normal(size=(24, head_dim)).astype(np.float32)
    cos, sin = token_rope(grid, head_dim)
    ours = np.asarray(apply_rope(jnp.asarray(x)[None, :, None, :], cos, sin))[0, :, 0]
    np.testing.assert_allclose(ours, reference_rope_3d(x.astype(np.float64), grid), atol=1e-5)
    # Chunk sizes as documented: 3 x 20 + 4 (ViT-L/g), 3 x 26 + 2 (ViT-H), 3 x 6 + 2.
    assert rope_chunk_size(head_dim) == {64: 20, 80: 26, 20: 6}[head_dim]
    # The interleaved layout ([f0, f0, f1, f1, ...]) the released weights were NOT trained with
    # gives different values, so the tiling is really reproduced.
    c = rope_chunk_size(head_dim)
    omega = 1.0 / 10000 ** (np.arange(c // 2) / (c / 2.0))
    frame_pos = grid_positions(grid)[:, 0]
    interleaved = np.repeat(np.cos(frame_pos[:, None] * omega[None]), 2, axis=1)
    assert not np.allclose(interleaved, np.asarray(cos)[0, :, :c])


def test_masked_tokens_keep_their_grid_positions():
    grid = (2, 4, 4)
    idx = jnp.array([[3, 17, 30], [0, 5, 31]], jnp.int32)
    cos_full, sin_full = token_rope(grid, 24)
    cos, sin = token_rope(grid, 24, idx)
    np.testing.assert_array_equal(cos, cos_full[0][idx])
    np.testing.assert_array_equal(sin, sin_full[0][idx])
    # token 17 = frame 1, row 0, column 1
    np.testing.assert_array_equal(grid_positions(grid)[17], [1, 0, 1])


def test_rope_positions_follow_token_indices_and_scan_matches_loop():
    x = jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 3))
    kw = dict(width=48, depth=2, num_heads=2, mlp_dim=96, patch_size=4, tubelet_size=2)
    loop = VisionTransformer(**kw, pos_embed="rope")
    params = nn.meta.unbox(init_encoder_params(loop, jax.random.key(1), x.shape[1:]))
    apply = jax.jit(loop.apply)
    full = apply({"params": params}, x)
    # Encoding the tokens in a shuffled order (a "context" of every token) gives the shuffled
    # full output: RoPE positions follow the token indices, not the sequence order.
    perm = jax.random.permutation(jax.random.key(2), 32)
    idx = jnp.tile(perm[None].astype(jnp.int32), (2, 1))
    np.testing.assert_allclose(
        apply({"params": params}, x, idx), full[:, perm], rtol=1e-5, atol=1e-5
    )
    scan = VisionTransformer(**kw, pos_embed="rope", scan=True)
    blocks = [params["transformer"][f"blocks_{i}"] for i in range(2)]
    p_scan = {**params, "transformer": {"blocks": jax.tree.map(lambda *a: jnp.stack(a), *blocks)}}
    scanned = jax.jit(scan.apply)({"params": p_scan}, x)
    np.testing.assert_allclose(full, scanned, rtol=1e-5, atol=1e-5)
    # No absolute table under RoPE: the same patches at other positions give other features.
    assert not np.allclose(full[:, 0], full[:, 1])


def test_ijepa_2d_table_puts_the_column_first():
    ours = sincos_table(8, (3, 5), w_first=True)
    default = sincos_table(8, (3, 5))
    # token (h=1, w=2) = index 7: I-JEPA's first half encodes w=2, V-JEPA's first half h=1
    np.testing.assert_allclose(ours[7, :4], default[2 * 5 + 1, :4])  # == (h=2, w=1)'s h half
    np.testing.assert_allclose(ours[7, 4:], default[7, :4])
