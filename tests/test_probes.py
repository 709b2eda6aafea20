"""The probe suite: views, the folded attentive probe and its grid, kNN, multi-view linear probe,
last-k-block features, honest baselines (unpooled pixels, centred kNN, sampled examples), the
end-of-training table, and `jepa-jax eval` end to end (results JSON, TensorBoard, errors)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, load_config, tiny_image_config, tiny_video_config
from flax import linen as nn
from helpers import cli
from media import write_images

from jepa_jax.data import pipeline
from jepa_jax.errors import ConfigError
from jepa_jax.eval.attentive_probe import (
    AttentiveClassifier,
    PoolingCrossAttention,
    fit_attentive_probe,
    probe_heads,
)
from jepa_jax.eval.features import pixel_features, vit_features
from jepa_jax.eval.knn import knn_accuracy
from jepa_jax.eval.linear_probe import LogRegFit, fit_linear_probe, project_to_sample_span
from jepa_jax.eval.pretrain_probe import run_pretrain_probe
from jepa_jax.eval.suite import RESULTS_FILE, run_eval
from jepa_jax.eval.views import ViewSpec, check_views, cut_views, evenly_spaced
from jepa_jax.export.encoder_dir import write_encoder_dir
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.init import init_encoder_params
from jepa_jax.train.loop import train
from jepa_jax.train.setup import build_trainer

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
    # A step floor: 204 fit examples in batches of 32 are 6 steps an epoch, so min_steps=40
    # trains 7 epochs where 1 was asked for.
    lines = []
    fit_attentive_probe(
        train_x, train_y, test_x, test_y, num_classes=4, num_heads=2, lrs=(3e-2,),
        weight_decays=(0.01,), epochs=1, batch_size=32, min_steps=40, log=lines.append,
    )  # fmt: skip
    assert lines[-1].startswith("  epoch 7/7:"), lines
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
    lin = fit_linear_probe(
        train_x, train_y, test_x, test_y, num_classes=3, fit=LogRegFit(steps=200)
    )
    assert lin["accuracy"] > 0.9
    flat = fit_linear_probe(
        train_x[:, 0], train_y, test_x[:, 0], test_y, num_classes=3, fit=LogRegFit(steps=200)
    )
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
    # The encoder is also probed on its flattened tokens (unpooled, like the pixel baseline,
    # whose pooled features already are its flattened patches).
    expected = {
        "trained": {"linear", "attentive", "knn", "linear_flat", "knn_flat"},
        "pixels": {"linear", "attentive", "knn"},
    }
    for name, per_probe in results["encoders"].items():
        assert per_probe.keys() == expected[name], name
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in per_probe.values())
        assert len(per_probe["attentive"]["grid"]) == 2
    config.probe.flat_tokens_max_dim = 0  # off
    off = run_eval(config, export_dir, str(tmp_path / "off"), log=lambda s: None)
    assert "linear_flat" not in off["encoders"]["trained"]
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
    # Without --config, a directory with no training config.json says what is missing.
    out = cli("eval", f"--workdir={tmp_path}")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert "--config is needed for --checkpoint=" in lines[0]
    # Overrides without the config file apply to the run's config.json: here there is none.
    out = cli("eval", f"--workdir={tmp_path}", "--config.probe.task=shape")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert "--config is needed for --checkpoint=" in lines[0]


def test_wide_features_are_projected_without_changing_the_linear_model():
    # More dimensions than samples (raw pixels): the projection keeps every inner product among
    # training rows and between test and training rows, which is all an L2-regularised linear
    # model depends on (its weights lie in the span of the training rows).
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(30, 2, 500)), rng.normal(size=(10, 2, 500))
    ptrain, ptest = project_to_sample_span(train, test)
    assert ptrain.shape == (30, 2, 60) and ptest.shape == (10, 2, 60)
    flat, pflat = train.reshape(60, 500), ptrain.reshape(60, 60)
    np.testing.assert_allclose(pflat @ pflat.T, flat @ flat.T, rtol=1e-4, atol=1e-3)
    tflat, ptflat = test.reshape(20, 500), ptest.reshape(20, 60)
    np.testing.assert_allclose(ptflat @ pflat.T, tflat @ flat.T, rtol=1e-4, atol=1e-3)
    # And the probe reads a class signal hidden in 4000 noisy dimensions.
    y, ty = rng.integers(2, size=80), rng.integers(2, size=40)
    signal = np.zeros(4000)
    signal[:20] = 1.0
    x = rng.normal(size=(80, 4000)) + np.outer(2 * y - 1, signal)
    tx = rng.normal(size=(40, 4000)) + np.outer(2 * ty - 1, signal)
    assert fit_linear_probe(x, y, tx, ty, num_classes=2, fit=LogRegFit(steps=300))["accuracy"] > 0.9


def test_knn_centres_features_that_share_a_large_common_component():
    # Pooled ViT features sit near one common direction: uncentred cosines are all ~1.
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(3, 16))
    train_y, test_y = rng.integers(3, size=90), rng.integers(3, size=30)
    offset = 100.0 * np.ones(16)
    train_x = offset + centers[train_y] + 0.3 * rng.normal(size=(90, 16))
    test_x = offset + centers[test_y] + 0.3 * rng.normal(size=(30, 16))
    assert knn_accuracy(train_x, train_y, test_x, test_y, num_classes=3, k=5)["accuracy"] > 0.9


def test_pixel_baseline_is_unpooled():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 8, 8, 3)), jnp.float32)
    tokens, flat = pixel_features(patch_size=4, tubelet_size=2)(None, x)
    assert tokens.shape == (2, 8, 2 * 4 * 4 * 3)
    assert flat.shape == (2, 4 * 8 * 8 * 3)  # every pixel, not the patch average
    np.testing.assert_allclose(np.sort(np.asarray(flat[0])), np.sort(np.asarray(x[0]).ravel()))


def test_probe_examples_are_drawn_across_a_class_sorted_folder(tmp_path):
    write_images(str(tmp_path / "tree"), {"a": 10, "b": 10, "c": 10})
    config = tiny_image_config()
    config.data.update(name="image_folder", path=str(tmp_path / "tree"))
    _, labels = pipeline.labelled_arrays(config.data, "train", 9)
    # The first 9 files are all class "a"; a sample across the split sees every class.
    assert len(set(labels["label"].tolist())) == 3
    _, again = pipeline.labelled_arrays(config.data, "train", 9)
    np.testing.assert_array_equal(again["label"], labels["label"])  # the same sample each time
    with pytest.raises(ConfigError, match="=31, but the 'train' split .* has only 30 examples"):
        pipeline.labelled_arrays(config.data, "train", 31)


def test_end_of_training_probe_table_has_every_baseline(tmp_path):
    config = tiny_video_config()
    config.probe.update(num_train=48, num_test=24)
    trainer = build_trainer(config, devices=jax.devices()[:1])
    with jax.set_mesh(trainer.mesh):
        state, _ = trainer.create_state()
    lines = []
    results = run_pretrain_probe(
        config,
        trainer.encoder,
        state["target_params"]["encoder"],
        trainer.mesh,
        str(tmp_path),
        log=lines.append,
    )
    for label, row in results["tasks"].items():
        assert set(row) == {"chance", "pixels", "random_init", "trained"}, label
    header = next(ln for ln in lines if "random init" in ln and "pixels" in ln)
    assert header.split() == ["label", "chance", "pixels", "random", "init", "trained"]
    # A trained encoder that does not beat a baseline is marked in its row.
    for label, row in results["tasks"].items():
        line = next(ln for ln in lines if ln.split()[:1] == [label])
        beaten = row["trained"] <= max(row["pixels"], row["random_init"])
        assert ("<- trained does not beat" in line) == beaten, line


def test_end_of_training_probe_reads_any_labelled_source_and_checks_its_task_first(tmp_path):
    write_images(str(tmp_path / "tree"), {"a": 12, "b": 12})
    write_images(str(tmp_path / "test_tree"), {"a": 6, "b": 6}, seed=1)
    config = tiny_image_config()
    config.data.update(
        name="image_folder",
        path=str(tmp_path / "tree"),
        test_path=str(tmp_path / "test_tree"),
        image_size=32,
    )
    config.update(total_steps=2, checkpoint_every=2)
    config.probe.update(enabled=True, task="shape", num_train=16, num_test=8, batch_size=8)
    # A built-in label the folder lacks: one line before training, nothing written.
    with pytest.raises(ConfigError, match=r"'shape' is not a class label .* are \['label'\]"):
        train(config, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
    config.probe.task = "label"  # the folder's class
    # More probe examples than the (small) test folder holds: also before training.
    config.probe.num_test = 13
    with pytest.raises(ConfigError, match=r"config.probe.num_test=13, .* has only 12 examples"):
        train(config, str(tmp_path / "small"))
    assert not (tmp_path / "small").exists()
    config.probe.num_test = 8
    result = train(config, str(tmp_path / "ok"))["probe"]
    assert set(result["tasks"]) == {"label"}  # file_index is bookkeeping, not a class
    assert result["tasks"]["label"]["chance"] == 0.5


def test_learning_curve_probes_every_checkpoint_and_draws_a_png(tmp_path):
    run = tmp_path / "run"
    config = tiny_video_config()
    config.update(total_steps=4, checkpoint_every=2)
    config.probe.update(probes=("linear",), task="color")
    train(config, str(run))  # checkpoints at steps 2 and 4
    # Without --config, eval probes the run as its own config.json says.
    plain = cli("eval", f"--workdir={run}")
    assert plain.returncode == 0, plain.stderr[-3000:]
    results = json.loads((run / RESULTS_FILE).read_text())
    assert results["task"] == "color" and set(results["encoders"]["trained"]) == {
        "linear",
        "linear_flat",
    }
    # Overrides without --config apply to the run's own config (and an unknown key is named).
    shape = cli(
        "eval", f"--checkpoint={run}", f"--workdir={tmp_path / 'shape'}",
        "--config.probe.task=shape", "--config.probe.baselines=('pixels',)",
    )  # fmt: skip
    assert shape.returncode == 0, shape.stderr[-3000:]
    results = json.loads((tmp_path / "shape" / RESULTS_FILE).read_text())
    assert results["task"] == "shape" and set(results["encoders"]) == {"trained", "pixels"}
    typo = cli("eval", f"--workdir={run}", "--config.probe.taks=shape")
    assert typo.returncode == 2 and "unknown config key 'taks'" in typo.stderr, typo.stderr
    out = cli(
        "eval",
        f"--config={PROBE_CONFIG}:runlocal,task=color",
        f"--checkpoint={run}",
        f"--workdir={tmp_path / 'curve'}",
        "--all_steps",
        "--config.probe.probes=('linear','knn')",
        "--config.probe.baselines=('random_init','pixels')",
        "--config.probe.num_train=64",
        "--config.probe.num_test=32",
        f"--config.data.num_frames={config.data.num_frames}",
        f"--config.data.image_size={config.data.image_size}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    curve = json.loads((tmp_path / "curve" / "learning_curve.json").read_text())
    assert curve["steps"] == [2, 4] and curve["task"] == "color"
    per_probe = {k: len(v) for k, v in curve["trained"].items()}
    assert per_probe == {"linear": 2, "knn": 2, "linear_flat": 2, "knn_flat": 2}
    assert set(curve["baselines"]) == {"random_init", "pixels"}  # probed once
    png = tmp_path / "curve.png"
    plot = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "learning_curve.py"),
         str(tmp_path / "curve" / "learning_curve.json"), f"--out={png}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # A step that was not kept is one line.
    bad = cli(
        "eval", f"--config={PROBE_CONFIG}:runlocal", f"--checkpoint={run}",
        f"--workdir={tmp_path / 'x'}", "--steps=3",
    )  # fmt: skip
    assert bad.returncode == 2 and "no checkpoint at steps [3]" in bad.stderr
