"""V-JEPA 2.1's dense predictive loss: the distance weights, the lambda ramp and the whole
objective against a direct numpy computation, for V-JEPA (one target group) and I-JEPA (several
target blocks, context repeated per block)."""

import jax
import numpy as np
import pytest
from conftest import tiny_image_config, tiny_video_config
from flax import linen as nn

from jepa_jax.errors import ConfigError
from jepa_jax.models.inputs import layer_norm_nonaffine, normalize_pixels
from jepa_jax.models.vit import token_grid
from jepa_jax.train.objective import (
    context_distance_weights,
    context_loss_weight,
    latent_loss,
)
from jepa_jax.train.setup import build_trainer


def test_distance_weights_are_one_over_sqrt_of_the_nearest_target_distance():
    grid = (2, 4, 5)
    rng = np.random.default_rng(0)
    n = int(np.prod(grid))
    coords = np.stack(np.unravel_index(np.arange(n), grid), axis=-1).astype(float)
    ctx, tgt = [], []
    for _ in range(3):
        perm = rng.permutation(n)
        ctx.append(np.sort(perm[:7]))
        tgt.append(np.sort(perm[7:12]))
    ctx, tgt = np.array(ctx), np.array(tgt)
    got = np.asarray(context_distance_weights(ctx, tgt, grid))
    for b in range(3):
        d = np.linalg.norm(coords[ctx[b]][:, None] - coords[tgt[b]][None], axis=-1).min(1)
        np.testing.assert_allclose(got[b], 1 / np.sqrt(d), rtol=1e-6)
    # A neighbour of a hole weighs 1; nine tokens away, a third.
    w = context_distance_weights(np.array([[1, 9]]), np.array([[0]]), (1, 10))
    np.testing.assert_allclose(np.asarray(w), [[1.0, 1 / 3]], rtol=1e-6)


def test_lambda_ramps_linearly_then_holds():
    lam = [float(context_loss_weight(0.5, (10, 20), s)) for s in (0, 10, 15, 20, 100)]
    np.testing.assert_allclose(lam, [0.0, 0.0, 0.25, 0.5, 0.5], atol=1e-7)
    assert float(context_loss_weight(0.5, (0, 0), 0)) == 0.5  # no ramp: constant
    assert float(context_loss_weight(0.5, (5, 5), 4)) == 0.0


def test_token_weights_scale_each_tokens_loss():
    rng = np.random.default_rng(1)
    p, t = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    w = rng.uniform(size=(2, 3))
    for kind, f in (("l1", np.abs), ("l2", lambda d: 0.5 * d * d)):
        expected = (f(p - t) * w[..., None]).mean()
        assert float(latent_loss(p, t, kind, w)) == pytest.approx(expected, rel=1e-5)


def _numpy_dense_loss(trainer, params, batch, lam, distance):
    """The objective recomputed from the modules' outputs with numpy arithmetic."""
    obj = trainer.objective
    x = normalize_pixels(batch["pixels"])
    grid = token_grid(x.shape, obj.patch_size, obj.tubelet_size)
    h = np.asarray(layer_norm_nonaffine(obj.encoder.apply({"params": params["encoder"]}, x)))
    coords = np.stack(np.unravel_index(np.arange(int(np.prod(grid))), grid), -1).astype(float)
    pred_terms, ctx_terms = [], []
    for mask_id, mask in enumerate(batch["masks"]):
        ctx_idx, tgt_idx = np.asarray(mask["context"]), np.asarray(mask["target"])
        b, groups, kt = tgt_idx.shape
        z = obj.encoder.apply({"params": params["encoder"]}, x, ctx_idx)
        z, ctx_rep = np.repeat(z, groups, 0), np.repeat(ctx_idx, groups, 0)
        tgt_flat = tgt_idx.reshape(b * groups, kt)
        pred, ctx_pred = obj.predictor.apply(
            {"params": params["predictor"]}, z, ctx_rep, tgt_flat, grid, mask_id
        )
        hb = np.repeat(h, groups, 0)
        tgt_h = np.take_along_axis(hb, tgt_flat[..., None], 1)
        ctx_h = np.take_along_axis(hb, ctx_rep[..., None], 1)
        pred_terms.append(np.abs(np.asarray(pred) - tgt_h).mean())
        w = np.ones(ctx_rep.shape)
        if distance:
            d = np.linalg.norm(coords[ctx_rep][:, :, None] - coords[tgt_flat][:, None], axis=-1)
            w = 1 / np.sqrt(d.min(-1))
        ctx_terms.append((np.abs(np.asarray(ctx_pred) - ctx_h) * w[..., None]).mean())
    return np.mean(pred_terms) + lam * np.mean(ctx_terms), np.mean(ctx_terms)


@pytest.mark.parametrize("make_config", [tiny_video_config, tiny_image_config])
def test_dense_objective_matches_a_direct_computation(make_config):
    config = make_config()
    config.loss.update(context_weight=0.5, context_ramp=(0, 4), context_distance_weight=True)
    config.batch_size = 2
    trainer = build_trainer(config, jax.devices()[:1])
    state, _ = trainer.create_state(0)
    params = nn.meta.unbox(state["params"])
    # One final norm for both heads, as the reference's predictor_norm.
    assert "context_proj" in params["predictor"] and "context_norm" not in params["predictor"]
    batch = next(iter(trainer.train_dataset()))
    step = 2  # halfway up the ramp: lambda = 0.25
    with jax.set_mesh(trainer.mesh):
        loss, aux = trainer.objective(params, state["target_params"], batch, step)
    expected, ctx_term = _numpy_dense_loss(trainer, params, batch, 0.25, True)
    assert float(aux["metrics"]["loss_context"]) == pytest.approx(ctx_term, rel=1e-4)
    assert float(aux["metrics"]["context_weight"]) == pytest.approx(0.25)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_dense_loss_config_errors_and_plain_predictor_has_no_context_head():
    config = tiny_video_config()
    trainer = build_trainer(config, jax.devices()[:1])
    params = trainer.abstract_state()["params"]
    assert not any("context" in k for k in params["predictor"])  # checkpoints unchanged
    config.loss.context_weight = -1.0
    with pytest.raises(ConfigError, match=r"config.loss.context_weight=-1.0 is invalid"):
        build_trainer(config, jax.devices()[:1])
    config.loss.context_weight = 0.5
    config.loss.context_ramp = (10, 2.5)
    with pytest.raises(ConfigError, match=r"config.loss.context_ramp=\(10, 2.5\) is invalid"):
        build_trainer(config, jax.devices()[:1])
