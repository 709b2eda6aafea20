"""3D RoPE (V-JEPA 2's tiled tables, V-JEPA 2.1's interleaved ones with position interpolation,
the RoPE predictor) and the I-JEPA 2D sin-cos layout, without PyTorch: against literal numpy
transcriptions of the reference formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_video_config
from flax import linen as nn
from helpers import read_losses

from jepa_jax.convert.reference import (
    infer_encoder_config,
    params_to_reference,
    reference_to_params,
)
from jepa_jax.errors import ConfigError
from jepa_jax.models import Predictor, VisionTransformer
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.init import init_encoder_params
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.rope import apply_rope, grid_positions, rope_chunk_size, token_rope
from jepa_jax.train.loop import train
from jepa_jax.train.setup import build_trainer


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


def reference_rotate_interleaved(x, pos):
    """V-JEPA 2.1's fixed rotation in numpy: channel pair j turns by the angle pos * omega_j,
    omega_j = 1/10000^(j/(D/2)) (sin/cos repeat_interleave'd): a complex multiplication."""
    d = x.shape[-1]
    omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
    z = x[:, 0::2] + 1j * x[:, 1::2]
    z = z * np.exp(1j * pos[:, None] * omega[None])
    out = np.empty_like(x)
    out[:, 0::2], out[:, 1::2] = z.real, z.imag
    return out


@pytest.mark.parametrize("head_dim", [64, 32])
def test_interleaved_rope_is_a_rotation_of_each_pair_with_interpolated_positions(head_dim):
    grid = (2, 3, 5)
    c = rope_chunk_size(head_dim)
    x = np.random.default_rng(1).normal(size=(30, head_dim))
    for reference_grid in (0, 16):
        cos, sin = token_rope(grid, head_dim, interleaved=True, reference_grid=reference_grid)
        ours = np.asarray(apply_rope(jnp.asarray(x, jnp.float32)[None, :, None], cos, sin))[0, :, 0]
        pos = grid_positions(grid).astype(np.float64)
        if reference_grid:  # rows and columns span [0, 15] at any grid size; frames unchanged
            pos[:, 1] *= 15 / (grid[1] - 1)
            pos[:, 2] *= 15 / (grid[2] - 1)
        want = np.concatenate(
            [reference_rotate_interleaved(x[:, i * c : (i + 1) * c], pos[:, i]) for i in range(3)]
            + [x[:, 3 * c :]],
            axis=1,
        )
        np.testing.assert_allclose(ours, want, atol=1e-5)
        # A rotation keeps every pair's norm.
        np.testing.assert_allclose(
            np.hypot(ours[:, 0:c:2], ours[:, 1:c:2]), np.hypot(x[:, 0:c:2], x[:, 1:c:2]), rtol=1e-5
        )
    with pytest.raises(ValueError, match="reference_grid must be >= 0"):
        token_rope(grid, head_dim, reference_grid=-1)


@pytest.mark.parametrize("pos_embed", ["rope", "rope_interleaved"])
def test_rope_predictor_depends_on_relative_positions_only(pos_embed):
    grid = (2, 6, 6)
    pred = Predictor(width=24, depth=2, num_heads=2, mlp_dim=48, out_width=16,
                     pos_embed=pos_embed, zero_init_mask_tokens=False)  # fmt: skip
    rng = np.random.default_rng(0)
    ctx = jnp.asarray(rng.normal(size=(2, 5, 16)), jnp.float32)
    # Context and targets inside rows 0-3 and columns 0-3 of each frame.
    rows, cols = np.array([0, 1, 2, 3, 0, 2, 3]), np.array([0, 2, 1, 3, 3, 0, 2])
    frames = np.array([0, 0, 1, 1, 1, 0, 1])
    flat = frames * 36 + rows * 6 + cols
    ctx_idx = jnp.asarray(np.tile(flat[:5], (2, 1)), jnp.int32)
    tgt_idx = jnp.asarray(np.tile(flat[5:], (2, 1)), jnp.int32)
    params = pred.init(jax.random.key(0), ctx, ctx_idx, tgt_idx, grid)
    assert "pos_embed" not in str(jax.tree_util.tree_structure(params))
    apply = jax.jit(pred.apply, static_argnums=(4,))
    out = apply(params, ctx, ctx_idx, tgt_idx, grid)
    # Every token moved by (0, +2 rows, +1 column): the same relative layout. With 2.1's fixed
    # frequencies each pair turns by one angle, so attention sees relative positions only and
    # the output is unchanged; V-JEPA 2's tiled tables are not a rotation (the bug it keeps for
    # its weights), and the output moves a little.
    moved = apply(params, ctx, ctx_idx + 2 * 6 + 1, tgt_idx + 2 * 6 + 1, grid)
    if pos_embed == "rope_interleaved":
        np.testing.assert_allclose(moved, out, rtol=1e-4, atol=1e-5)
    else:
        assert not np.allclose(moved, out, atol=1e-5) and np.allclose(moved, out, atol=1e-2)
    # The order of the context tokens does not matter (why the reference's sort is left out).
    perm = np.array([3, 0, 4, 1, 2])
    shuffled = apply(params, ctx[:, perm], ctx_idx[:, perm], tgt_idx, grid)
    np.testing.assert_allclose(shuffled, out, rtol=1e-4, atol=1e-5)
    # But positions matter: a target one row down is predicted differently.
    assert not np.allclose(apply(params, ctx, ctx_idx, tgt_idx + 6, grid), out, atol=1e-4)


def test_vjepa21_rope_is_recognised_on_import_and_round_trips():
    cfg = EncoderConfig(width=48, depth=4, num_heads=2, mlp_dim=96, patch_size=16,
                        tubelet_size=2, input_shape=(4, 64, 64, 3), pos_embed="rope_interleaved",
                        output_levels=(0, 1, 2, 3), rope_reference_grid=16)  # fmt: skip
    module = cfg.build()
    params = nn.meta.unbox(init_encoder_params(module, jax.random.key(0), cfg.input_shape))
    sd = params_to_reference(params, cfg)
    assert "pos_embed" not in sd and "norms_block.3.weight" in sd
    inferred = infer_encoder_config(sd, num_heads=2, image_size=64, num_frames=4)
    assert inferred == cfg  # fixed frequencies and the 16x16 reference grid of patch 16
    assert EncoderConfig.from_json(cfg.to_json()) == cfg
    x = jax.random.normal(jax.random.key(1), (1,) + cfg.input_shape)
    a = module.apply({"params": params}, x)
    b = module.apply({"params": reference_to_params(sd, cfg)}, x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # The two RoPE layouts are different functions of the same weights.
    tiled = EncoderConfig(**{**vars(cfg), "pos_embed": "rope"}).build()
    assert not np.allclose(tiled.apply({"params": params}, x), a, atol=1e-4)


def test_a_vjepa21_rope_run_trains_with_a_rope_predictor(tmp_path):
    config = tiny_video_config()
    config.model.encoder.update(pos_embed="rope_interleaved", rope_reference_grid=16)
    config.total_steps = 2
    train(config, str(tmp_path))
    losses = read_losses(str(tmp_path))
    assert sorted(losses) == [1, 2] and all(np.isfinite(v) for v in losses.values())
    trainer = build_trainer(config, jax.devices()[:1])
    assert trainer.predictor.pos_embed == "rope_interleaved"
    assert trainer.predictor.rope_reference_grid == 16
    # Interpolation rescales RoPE positions only: with an absolute table it is a one-line error.
    config.model.encoder.pos_embed = "sincos"
    with pytest.raises(ConfigError, match=r"rope_reference_grid=16 is invalid with pos_embed"):
        build_trainer(config, jax.devices()[:1])
