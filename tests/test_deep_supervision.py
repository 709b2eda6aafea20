"""V-JEPA 2.1's deep self-supervision: the encoder's output levels, the per-level targets, the
predictor's fusion MLP, the objective against a direct numpy computation, scanned = unrolled
layers, export / reference-layout round trip, and config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_video_config
from flax import linen as nn

from jepa_jax.convert.reference import (
    infer_encoder_config,
    params_to_reference,
    reference_to_params,
)
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.inputs import normalize_pixels
from jepa_jax.models.layers import stack_layers
from jepa_jax.models.vit import reference_output_levels, token_grid
from jepa_jax.train.flops import jepa_step_flops
from jepa_jax.train.objective import per_level_layer_norm
from jepa_jax.train.setup import build_trainer


def _levels_config(levels=(0, 1)):
    config = tiny_video_config()  # a 2-block encoder of width 32
    config.model.encoder.output_levels = levels
    config.batch_size = 2
    return config


def _np_layer_norm(x, scale=1.0, bias=0.0, eps=1e-6):
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * scale + bias


@pytest.fixture(scope="module")
def trained_state():
    trainer = build_trainer(_levels_config(), jax.devices()[:1])
    state, _ = trainer.create_state(0)
    params = nn.meta.unbox(state["params"])
    # Non-trivial norms, so a level read with the wrong norm cannot pass.
    enc = dict(params["encoder"])
    for name in ("norm_level0", "norm"):
        d = enc[name]["scale"].shape[0]
        enc[name] = {
            "scale": 1.0 + 0.1 * jnp.sin(jnp.arange(d) + len(name)),
            "bias": 0.05 * jnp.cos(jnp.arange(d) * (1 + len(name))),
        }
    params = {**params, "encoder": enc}
    batch = next(iter(trainer.train_dataset()))
    return trainer, params, batch


def test_encoder_levels_are_the_normed_block_outputs_and_the_last_is_the_features(trained_state):
    trainer, params, batch = trained_state
    enc = trainer.encoder
    assert enc.output_levels == (0, 1) and enc.num_levels == 2
    x = normalize_pixels(batch["pixels"])
    p = params["encoder"]
    levels = np.asarray(enc.apply({"params": p}, x, all_levels=True))
    features = np.asarray(enc.apply({"params": p}, x))
    d = enc.width
    assert levels.shape == features.shape[:-1] + (2 * d,)
    np.testing.assert_allclose(levels[..., d:], features, rtol=1e-6)  # last level = features
    # Level 0 = block 0's output through norm_level0: a 1-block encoder whose final norm is
    # norm_level0 computes exactly that.
    first = enc.clone(depth=1, output_levels=())
    sub = {
        "patch_embed": p["patch_embed"],
        "transformer": {"blocks_0": p["transformer"]["blocks_0"]},
        "norm": p["norm_level0"],
    }
    np.testing.assert_allclose(
        levels[..., :d], np.asarray(first.apply({"params": sub}, x)), rtol=1e-5, atol=1e-5
    )


def test_scanned_layers_give_the_same_levels(trained_state):
    trainer, params, batch = trained_state
    enc = trainer.encoder
    p = dict(params["encoder"])
    scanned = {**p, "transformer": stack_layers(p["transformer"])}
    x = normalize_pixels(batch["pixels"])
    a = enc.apply({"params": p}, x, all_levels=True)
    b = enc.clone(scan=True).apply({"params": scanned}, x, all_levels=True)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_per_level_norm_and_the_objective_match_a_direct_computation(trained_state):
    trainer, params, batch = trained_state
    obj = trainer.objective
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 3, 8)) * np.array([1.0] * 4 + [5.0] * 4) + np.arange(8)
    got = np.asarray(per_level_layer_norm(jnp.asarray(h, jnp.float32), 2))
    expected = np.concatenate([_np_layer_norm(h[..., :4]), _np_layer_norm(h[..., 4:])], -1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    x = normalize_pixels(batch["pixels"])
    enc_p = params["encoder"]
    target = per_level_layer_norm(obj.encoder.apply({"params": enc_p}, x, all_levels=True), 2)
    grid = token_grid(x.shape, obj.patch_size, obj.tubelet_size)
    terms = []
    for mask_id, mask in enumerate(batch["masks"]):
        ctx, tgt = np.asarray(mask["context"]), np.asarray(mask["target"])
        b, groups, kt = tgt.shape
        z = obj.encoder.apply({"params": enc_p}, x, ctx, all_levels=True)
        assert z.shape[-1] == 2 * trainer.encoder.width
        pred = obj.predictor.apply(
            {"params": params["predictor"]}, z, ctx, tgt.reshape(b * groups, kt), grid, mask_id
        )
        t = np.take_along_axis(np.asarray(target), tgt.reshape(b, -1)[..., None], 1)
        terms.append(np.abs(np.asarray(pred) - t).mean())
    with jax.set_mesh(trainer.mesh):
        loss, aux = obj(params, params, batch, 0)
    assert float(loss) == pytest.approx(np.mean(terms), rel=1e-4)
    # Monitors see the last level only (the features probes read).
    assert aux["target_features"].shape[-1] == trainer.encoder.width


def test_predictor_fuses_levels_and_predicts_all_of_them(trained_state):
    trainer, params, _ = trained_state
    pred = params["predictor"]
    d = trainer.encoder.width
    assert pred["fusion"]["kernel"].shape == (2 * d, d)  # Linear(L*D -> D), then GELU
    assert pred["embed"]["kernel"].shape == (d, trainer.predictor.width)
    assert pred["proj"]["kernel"].shape == (trainer.predictor.width, 2 * d)
    plain = build_trainer(tiny_video_config(), jax.devices()[:1])
    plain_params = plain.abstract_state()["params"]
    assert "fusion" not in plain_params["predictor"]  # checkpoints without levels unchanged
    assert not any(k.startswith("norm_level") for k in plain_params["encoder"])
    # The FLOP count includes the fusion MLP.
    assert jepa_step_flops(trainer) > jepa_step_flops(build_trainer(_levels_config((1,)), None))


def test_export_layout_round_trip_and_reference_norms(trained_state):
    trainer, params, _ = trained_state
    cfg = EncoderConfig.from_train_config(trainer.config)
    assert cfg.output_levels == (0, 1)
    again = EncoderConfig.from_json(cfg.to_json())
    assert again == cfg
    sd = params_to_reference(params["encoder"], cfg)
    assert {"norms_block.0.weight", "norms_block.1.bias"} <= set(sd) and "norm.weight" not in sd
    np.testing.assert_allclose(sd["norms_block.1.weight"], params["encoder"]["norm"]["scale"])
    inferred = infer_encoder_config(sd, num_heads=cfg.num_heads)
    assert inferred.output_levels == reference_output_levels(2) == (0, 1)
    back = reference_to_params(sd, cfg)
    flat_a = jax.tree_util.tree_leaves_with_path(params["encoder"])
    flat_b = dict(jax.tree_util.tree_leaves_with_path(back))
    for path, leaf in flat_a:
        np.testing.assert_allclose(np.asarray(flat_b[path]), np.asarray(leaf), rtol=1e-6)


def test_reference_levels_table():
    assert reference_output_levels(12) == (2, 5, 8, 11)
    assert reference_output_levels(24) == (5, 11, 17, 23)
    assert reference_output_levels(40) == (9, 19, 29, 39)
    assert reference_output_levels(48) == (11, 23, 37, 47)


@pytest.mark.parametrize("levels", [(0,), (1, 0), (0, 0, 1), (-1, 1), (0, 2)])
def test_bad_levels_are_one_line_config_errors(levels):
    with pytest.raises(ConfigError, match=r"config.model.encoder.output_levels=.* is invalid"):
        build_trainer(_levels_config(levels), jax.devices()[:1])
