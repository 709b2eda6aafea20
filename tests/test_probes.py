"""The probe suite: views, the folded attentive probe and its grid, kNN, multi-view linear probe,
last-k-block features, and `jepa-jax eval` end to end (results JSON, TensorBoard, errors)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, load_config
from flax import linen as nn
from helpers import cli

from jepa_jax.errors import ConfigError
from jepa_jax.eval.attentive_probe import (
    AttentiveClassifier,
    PoolingCrossAttention,
    fit_attentive_probe,
    probe_heads,
)
from jepa_jax.eval.features import vit_features
from jepa_jax.eval.knn import knn_accuracy
from jepa_jax.eval.linear_probe import fit_linear_probe
from jepa_jax.eval.suite import RESULTS_FILE, run_eval
from jepa_jax.eval.views import ViewSpec, check_views, cut_views, evenly_spaced
from jepa_jax.export.encoder_dir import write_encoder_dir
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.train.state import init_encoder_params

PROBE_CONFIG = os.path.join(REPO, "configs", "probes", "moving_shapes.py")


def test_views_cover_clips_and_crops():
    pixels = np.arange(2 * 16 * 40 * 40 * 3, dtype=np.int64).reshape(2, 16, 40, 40, 3)
    spec = ViewSpec(clip_frames=8, num_clips=2, crop_size=32, num_views=3)
    views = cut_views(pixels, spec)
    assert views.shape == (2, 6, 8, 32, 32, 3)
    assert evenly_spaced(40, 32, 3) == [0, 4, 8] and evenly_spaced(40, 32, 1) == [4]
    np.testing.assert_array_equal(views[1, 0], pixels[1, 0:8, 0:32, 0:32])  # clip 0, top-left
    np.testing.assert_array_equal(views[1, 4], pixels[1, 8:16, 4:36, 4:36])  # clip 1, centre
    check_views(spec, pixels.shape[1:], patch=4, tubelet=2)
    with pytest.raises(ConfigError, match="probe.clip_frames=12 is invalid"):
        check_views(ViewSpec(12, 1, 32, 1), pixels.shape[1:], patch=4, tubelet=8)
    with pytest.raises(ConfigError, match="probe.crop_size=48 is invalid"):
        check_views(ViewSpec(8, 1, 48, 1), pixels.shape[1:], patch=4, tubelet=2)


def test_folded_cross_attention_equals_the_reference_arithmetic():
    x = jax.random.normal(jax.random.key(0), (3, 10, 12)) * 2 + 1
    module = PoolingCrossAttention(num_heads=3)
    params = module.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)

    @jax.jit
    def reference(params, x):
        # q = W_q query + b_q; k, v = W_{k,v} LN(x) + b; softmax(q k^T / sqrt(Dh)) v, no out-proj
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        ln = (x - mean) / jnp.sqrt(var + 1e-6) * params["norm_scale"] + params["norm_bias"]
        q = jnp.einsum("qd,dhe->qhe", params["query"], params["q_kernel"]) + params["q_bias"]
        k = jnp.einsum("bkd,dhe->bkhe", ln, params["k_kernel"]) + params["k_bias"]
        v = jnp.einsum("bkd,dhe->bkhe", ln, params["v_kernel"]) + params["v_bias"]
        attn = jax.nn.softmax(jnp.einsum("qhe,bkhe->bhqk", q, k) / 2.0, axis=-1)  # Dh = 4
        return jnp.einsum("bhqk,bkhe->bqhe", attn, v).reshape(3, 1, 12)

    got = jax.jit(module.apply)({"params": params}, x)
    np.testing.assert_allclose(got, reference(params, x), rtol=1e-5, atol=1e-5)
    assert probe_heads(96, 3) == 3 and probe_heads(10, 3) == 2


def synthetic_tokens(n, rng, views=1, num_classes=4, k=6, d=8):
    """Tokens where one random token per example carries its class as a strong direction."""
    y = rng.integers(num_classes, size=n)
    x = rng.normal(size=(n, views, k, d)).astype(np.float32)
    pos = rng.integers(k, size=(n, views))
    for i in range(n):
        for v in range(views):
            x[i, v, pos[i, v], y[i]] += 6.0
    return x, y


def test_attentive_probe_grid_learns_and_reports_the_held_out_choice():
    rng = np.random.default_rng(0)
    train_x, train_y = synthetic_tokens(256, rng, views=2)
    test_x, test_y = synthetic_tokens(128, rng, views=2)
    result = fit_attentive_probe(
        train_x, train_y, test_x, test_y, num_classes=4, num_heads=2,
        lrs=(3e-2, 1e-5), weight_decays=(0.01,), epochs=20, batch_size=32,
    )  # fmt: skip
    assert len(result["grid"]) == 2
    assert result["accuracy"] > 0.9  # a useful lr learns the task (chance 0.25)
    tiny_lr = [g["accuracy"] for g in result["grid"] if g["lr"] == 1e-5]
    assert max(tiny_lr) < 0.6  # the grid really trains different probes
    assert result["lr"] == 3e-2 and result["oracle_best_accuracy"] >= result["accuracy"]
    # The V-JEPA 2 variant (self-attention blocks before the query) has the same interface.
    module = AttentiveClassifier(num_classes=4, num_heads=2, num_self_blocks=1)
    params = nn.meta.unbox(module.init(jax.random.key(0), jnp.zeros((1, 6, 8)))["params"])
    assert "blocks" in params and module.apply({"params": params}, train_x[:5, 0]).shape == (5, 4)


def test_knn_and_linear_probe_average_views():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 16)) * 3
    train_y, test_y = rng.integers(3, size=90), rng.integers(3, size=30)
    train_x = centers[train_y][:, None] + rng.normal(size=(90, 2, 16))
    test_x = centers[test_y][:, None] + rng.normal(size=(30, 2, 16))
    knn = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=3, k=5)
    assert knn["accuracy"] > 0.9 and knn["k"] == 5
    lin = fit_linear_probe(train_x, train_y, test_x, test_y, num_classes=3, steps=200)
    assert lin["accuracy"] > 0.9
    flat = fit_linear_probe(train_x[:, 0], train_y, test_x[:, 0], test_y, num_classes=3, steps=200)
    assert flat["accuracy"] > 0.9  # [N, D] features work as before


def test_last_k_blocks_features_concatenate_normed_block_averages():
    cfg = EncoderConfig(
        width=16, depth=3, num_heads=2, mlp_dim=32, patch_size=4, tubelet_size=2,
        input_shape=(4, 16, 16, 3),
    )  # fmt: skip
    module = cfg.build()
    params = nn.meta.unbox(init_encoder_params(module, jax.random.key(0), cfg.input_shape))
    x = jax.random.normal(jax.random.key(1), (2,) + cfg.input_shape)
    tokens, pooled1 = jax.jit(vit_features(module, 1))(params, x)
    _, pooled2 = jax.jit(vit_features(module, 2))(params, x)
    assert tokens.shape == (2, 32, 16) and pooled2.shape == (2, 32)
    np.testing.assert_allclose(pooled1, tokens.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled2[:, 16:], pooled1, rtol=1e-5, atol=1e-5)  # last block
    assert not np.allclose(pooled2[:, :16], pooled1, atol=1e-3)  # the block before it


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An export of a randomly initialised encoder for the default job's 8-frame 32x32 clips."""
    config = load_config(PROBE_CONFIG)
    cfg = EncoderConfig(
        width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, tubelet_size=2,
        input_shape=(config.data.num_frames, 32, 32, 3),
    )  # fmt: skip
    params = jax.jit(lambda k: nn.meta.unbox(init_encoder_params(cfg.build(), k, cfg.input_shape)))(
        jax.random.key(0)
    )
    return write_encoder_dir(str(tmp_path_factory.mktemp("e") / "export"), cfg, params, {"step": 7})


def small_probe_config(task="color"):
    c = load_config(PROBE_CONFIG, f"runlocal,task={task}")
    c.probe.num_train = 128
    c.probe.num_test = 64
    c.probe.linear.steps = 300
    c.probe.baselines = ("pixels",)
    return c


def test_eval_runs_every_probe_and_writes_results(export_dir, tmp_path):
    config = small_probe_config()
    results = run_eval(config, export_dir, str(tmp_path), log=lambda s: None)
    on_disk = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert on_disk["encoders"].keys() == {"trained", "pixels"}
    assert on_disk["task"] == "color" and on_disk["num_classes"] == 6
    assert on_disk["checkpoint"]["kind"] == "export" and on_disk["checkpoint"]["step"] == 7
    for per_probe in results["encoders"].values():
        assert per_probe.keys() == {"linear", "attentive", "knn"}
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in per_probe.values())
        assert len(per_probe["attentive"]["grid"]) == 2
    # The shape's colour survives even a random encoder: a probe that pairs the labels with the
    # features of the right examples finds it well above chance (1/6).
    assert results["encoders"]["trained"]["linear"]["accuracy"] > 2.0 / 6
    events = os.listdir(tmp_path / "tensorboard")
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_label_count_mismatch_and_bad_probe_settings_are_errors(export_dir, tmp_path):
    config = small_probe_config(task="direction")
    config.probe.num_classes = 3
    mismatch = r"label count mismatch: 'direction' labels .* span \[0, 7\] but the probe has 3"
    with pytest.raises(ConfigError, match=mismatch):
        run_eval(config, export_dir, str(tmp_path), log=lambda s: None)
    config = small_probe_config(task="velocity")
    with pytest.raises(ConfigError, match="'velocity' is not a class label"):
        run_eval(config, export_dir, str(tmp_path), log=lambda s: None)
    config = small_probe_config()
    config.probe.linear.last_k_blocks = 5
    bad_k = r"linear.last_k_blocks=5 is invalid: expected an integer in \[1, 2\]"
    with pytest.raises(ConfigError, match=bad_k):
        run_eval(config, export_dir, str(tmp_path), log=lambda s: None)
    assert not os.path.exists(tmp_path / RESULTS_FILE)  # nothing written on bad input


def test_eval_cli_error_is_one_line(tmp_path):
    out = cli(
        "eval",
        f"--config={PROBE_CONFIG}:runlocal",
        f"--workdir={tmp_path}",
        f"--checkpoint={tmp_path / 'missing'}",
    )
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("jepa-jax eval: error: checkpoint path not found")
