"""Encoder and predictor: shapes, conv-equivalent patch embedding, init, presets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jepa_jax.errors import ConfigError
from jepa_jax.models import ENCODER_PRESETS, Predictor, VisionTransformer, patchify, token_grid
from jepa_jax.models.init import init_encoder_params
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.vit import resolve_encoder_spec


def small_encoder(tubelet=2, **kw):
    args = dict(width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, tubelet_size=tubelet)
    args.update(kw)
    return VisionTransformer(**args)


def test_encoder_output_shapes_video_and_image():
    enc = small_encoder()
    video = jnp.zeros((3, 4, 16, 16, 3))
    params = nn.meta.unbox(enc.init(jax.random.key(0), video)["params"])
    assert enc.apply({"params": params}, video).shape == (3, 2 * 4 * 4, 32)
    idx = jnp.tile(jnp.arange(5, dtype=jnp.int32)[None], (3, 1))
    assert enc.apply({"params": params}, video, idx).shape == (3, 5, 32)

    img_enc = small_encoder(tubelet=1)
    images = jnp.zeros((2, 16, 24, 3))  # non-square works too
    params = nn.meta.unbox(img_enc.init(jax.random.key(0), images)["params"])
    assert img_enc.apply({"params": params}, images).shape == (2, 4 * 6, 32)


def test_patchify_uses_raster_token_order():
    x = jax.random.normal(jax.random.key(1), (1, 4, 8, 8, 3))
    patches = patchify(x, 4, 2)
    assert patches.shape == (1, 2 * 2 * 2, 2 * 4 * 4 * 3)
    # token (t=1, h=0, w=1) is flat index 1*4 + 0*2 + 1 = 5;
    # its first pixel is frame 2, row 0, column 4
    np.testing.assert_allclose(patches[0, 5, :3], x[0, 2, 0, 4])


def test_patch_embedding_is_a_strided_convolution():
    # Dense on patchify(x) must equal a Conv3d with kernel = stride = (tubelet, p, p), the
    # reference's patch embedding, so PyTorch weights map over by a reshape.
    x = jax.random.normal(jax.random.key(2), (2, 4, 8, 8, 3))
    kernel = jax.random.normal(jax.random.key(3), (2, 4, 4, 3, 7))  # (t, p, p, C, D)
    dense = patchify(x, 4, 2) @ kernel.reshape(-1, 7)
    conv = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(2, 4, 4),
        padding="VALID",
        dimension_numbers=("NTHWC", "THWIO", "NTHWC"),
    )
    np.testing.assert_allclose(dense, conv.reshape(2, -1, 7), rtol=1e-4, atol=1e-4)


def test_predictor_shapes_and_zero_mask_tokens():
    pred = Predictor(width=16, depth=1, num_heads=2, mlp_dim=32, out_width=32, num_mask_tokens=2)
    ctx = jnp.ones((3, 5, 32))
    ctx_idx = jnp.tile(jnp.arange(5, dtype=jnp.int32)[None], (3, 1))
    tgt_idx = jnp.tile(jnp.arange(5, 12, dtype=jnp.int32)[None], (3, 1))
    grid = (2, 4, 4)
    params = nn.meta.unbox(pred.init(jax.random.key(0), ctx, ctx_idx, tgt_idx, grid, 0)["params"])
    assert params["mask_tokens"].shape == (2, 16)
    assert not np.any(params["mask_tokens"])  # V-JEPA zero init
    out0 = pred.apply({"params": params}, ctx, ctx_idx, tgt_idx, grid, 0)
    assert out0.shape == (3, 7, 32)
    params["mask_tokens"] = params["mask_tokens"].at[1].set(1.0)
    out1 = pred.apply({"params": params}, ctx, ctx_idx, tgt_idx, grid, 1)
    assert not np.allclose(out0, out1)  # mask_id selects its own token
    with pytest.raises(ValueError, match="mask_id 2 out of range"):
        pred.apply({"params": params}, ctx, ctx_idx, tgt_idx, grid, 2)


def test_reference_init_rescales_residual_projections():
    enc = small_encoder(depth=3)
    params = nn.meta.unbox(init_encoder_params(enc, jax.random.key(0), (4, 16, 16, 3)))
    stds = [
        float(params["transformer"][f"blocks_{i}"]["mlp"]["fc2"]["kernel"].std()) for i in range(3)
    ]
    fc1 = float(params["transformer"]["blocks_0"]["mlp"]["fc1"]["kernel"].std())
    assert abs(fc1 - 0.02) < 0.003
    for i, s in enumerate(stds):
        assert abs(s - 0.02 / np.sqrt(2 * (i + 1))) < 0.003


def test_scan_layers_match_unrolled_layers():
    x = jax.random.normal(jax.random.key(4), (2, 4, 16, 16, 3))
    loop = small_encoder(depth=3)
    scan = small_encoder(depth=3, scan=True)
    p_loop = nn.meta.unbox(init_encoder_params(loop, jax.random.key(0), x.shape[1:]))
    # Stack the unrolled blocks into the scanned layout and compare outputs.
    blocks = [p_loop["transformer"][f"blocks_{i}"] for i in range(3)]
    p_scan = dict(p_loop)
    p_scan["transformer"] = {"blocks": jax.tree.map(lambda *a: jnp.stack(a), *blocks)}
    np.testing.assert_allclose(
        loop.apply({"params": p_loop}, x), scan.apply({"params": p_scan}, x), rtol=1e-5, atol=1e-5
    )


def test_sincos_tables():
    t3 = sincos_table(48, (2, 3, 4), uniform_power=True)
    assert t3.shape == (24, 48)
    # position (t=0,h=0,w=0) encodes zeros: sin 0 = 0 in the first half of each chunk
    assert np.allclose(t3[0, :8], 0.0) and np.allclose(t3[0, 8:16], 1.0)
    t2 = sincos_table(32, (4, 4))
    assert t2.shape == (16, 32)
    assert not np.allclose(t2[1], t2[4])  # (0,1) and (1,0) differ
    with pytest.raises(ValueError):
        sincos_table(32, (4,))


def test_presets_match_reference_sizes():
    assert ENCODER_PRESETS["tiny"] == dict(width=192, depth=12, num_heads=3, mlp_dim=768)
    assert ENCODER_PRESETS["large"] == dict(width=1024, depth=24, num_heads=16, mlp_dim=4096)
    assert ENCODER_PRESETS["huge"] == dict(width=1280, depth=32, num_heads=16, mlp_dim=5120)
    assert ENCODER_PRESETS["giant"]["mlp_dim"] == 6144
    # ViT-L parameter count ~303M (V-JEPA 2 reports ~300M)
    spec = ENCODER_PRESETS["large"]
    enc = VisionTransformer(**spec, patch_size=16, tubelet_size=2)
    shapes = jax.eval_shape(lambda: enc.init(jax.random.key(0), jnp.zeros((1, 16, 224, 224, 3))))
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.meta.unbox(shapes)))
    assert 300e6 < n < 306e6
    assert resolve_encoder_spec("tiny", depth=6).depth == 6
    with pytest.raises(ConfigError, match="unknown encoder size"):
        resolve_encoder_spec("enormous")


def test_token_grid_errors():
    assert token_grid((1, 16, 64, 64, 3), 8, 2) == (8, 8, 8)
    with pytest.raises(ValueError, match="frames 15 is not divisible"):
        token_grid((1, 15, 64, 64, 3), 8, 2)


def test_reference_init_rescaling_is_the_same_with_scanned_layers():
    depth = 3
    scan = small_encoder(depth=depth, scan=True)
    p_scan = nn.meta.unbox(init_encoder_params(scan, jax.random.key(0), (4, 16, 16, 3)))
    fc2 = p_scan["transformer"]["blocks"]["mlp"]["fc2"]["kernel"]  # [depth, mlp, embed]
    fc1 = p_scan["transformer"]["blocks"]["mlp"]["fc1"]["kernel"]
    for i in range(depth):
        assert abs(float(fc1[i].std()) - 0.02) < 0.003
        assert abs(float(fc2[i].std()) - 0.02 / np.sqrt(2 * (i + 1))) < 0.003


def test_exact_gelu_is_jaxs_erfc_form_in_value_and_gradient():
    from jepa_jax.models.layers import gelu

    x = jnp.linspace(-12.0, 12.0, 4001, dtype=jnp.float32)
    # Two fp32 evaluations of the same function: a few ulp of the largest |x| apart.
    tol = 8 * float(jnp.finfo(jnp.float32).eps) * 12.0
    reference = jax.nn.gelu(x, approximate=False)
    assert float(jnp.abs(gelu(x) - reference).max()) <= tol
    d_ours = jax.vmap(jax.grad(gelu))(x)
    d_ref = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
    assert float(jnp.abs(d_ours - d_ref).max()) <= tol
    assert gelu(jnp.float32(-12.0)) <= 0 and gelu(jnp.bfloat16(1.0)).dtype == jnp.bfloat16
    approx = gelu(x, approximate=True)
    assert bool(jnp.all(approx == jax.nn.gelu(x, approximate=True)))
