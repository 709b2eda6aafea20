"""The dense probe: the built-in per-pixel label, token labels by majority vote, mean IoU, a
per-token classifier that learns (and fails on shuffled labels), and `jepa-jax eval`'s dense
probe end to end with its config errors."""

import os

import jax
import numpy as np
import pytest
from conftest import REPO, load_config
from flax import linen as nn

from jepa_jax.data.synthetic import COLORS, MovingShapesVideo, SceneStyle, ShapesImages
from jepa_jax.errors import ConfigError
from jepa_jax.eval.dense_probe import fit_dense_probe, mean_iou, token_labels
from jepa_jax.eval.linear_probe import LogRegFit
from jepa_jax.eval.suite import run_eval
from jepa_jax.export.encoder_dir import write_encoder_dir
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.init import init_encoder_params

PROBE_CONFIG = os.path.join(REPO, "configs", "probes", "moving_shapes.py")


def test_shape_map_marks_the_visible_labelled_object():
    plain = MovingShapesVideo(8, 4, 32, seed=3)
    for i in range(8):
        item = plain[i]
        m, labels = item["labels"]["shape_map"], item["labels"]
        assert m.shape == (4, 32, 32) and m.dtype == np.uint8
        assert set(np.unique(m)) == {0, 1 + int(labels["shape"])}
        # Where the map says "object", the pixels have the object's colour.
        np.testing.assert_array_equal(item["pixels"][m > 0], np.broadcast_to(
            COLORS[labels["color"]].astype(np.uint8), (int((m > 0).sum()), 3)))  # fmt: skip
    # Occluders drawn in front hide part of the object: its map shrinks, never grows.
    cluttered = MovingShapesVideo(8, 4, 32, seed=3, style=SceneStyle(distractors=4))
    shrunk = 0
    for i in range(8):
        a, b = plain[i]["labels"]["shape_map"], cluttered[i]["labels"]["shape_map"]
        assert not np.any((b > 0) & (a == 0))
        shrunk += int((b > 0).sum() < (a > 0).sum())
    assert shrunk > 0
    image = ShapesImages(2, 32, seed=1)[0]["labels"]["shape_map"]
    assert image.shape == (32, 32) and image.max() >= 1


def test_token_labels_take_each_blocks_majority_class():
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, size=(2, 4, 8, 12))  # 2 clips, tubelet 2, patch 4: grid (2, 2, 3)
    got = token_labels(maps, (2, 2, 3), patch_size=4, tubelet_size=2)
    assert got.shape == (2, 12)
    for n in range(2):
        for k, (t, h, w) in enumerate(np.ndindex(2, 2, 3)):
            block = maps[n, 2 * t : 2 * t + 2, 4 * h : 4 * h + 4, 4 * w : 4 * w + 4]
            counts = np.bincount(block.ravel(), minlength=3)
            assert got[n, k] == int(np.argmax(counts))  # argmax: ties go to the lower class
    images = token_labels(maps[:, 0], (2, 3), patch_size=4, tubelet_size=2)
    assert images.shape == (2, 6)
    with pytest.raises(ValueError, match="does not tile"):
        token_labels(maps, (2, 2, 2), patch_size=4, tubelet_size=2)


def test_mean_iou():
    true = np.array([0, 0, 1, 1, 2])
    miou, per_class = mean_iou(np.array([0, 1, 1, 1, 0]), true, 4)
    np.testing.assert_allclose(per_class[:3], [1 / 3, 2 / 3, 0.0])
    assert np.isnan(per_class[3]) and miou == pytest.approx(1 / 3)
    assert mean_iou(true, true, 3)[0] == 1.0


def _tokens(n, rng, informative=True):
    """[n, 16, 8] tokens whose class (0 mostly, 1-2 on a few tokens) is in feature 0..2."""
    y = np.zeros((n, 16), np.int32)
    y[:, :3] = rng.integers(1, 3, size=(n, 3))
    x = rng.normal(size=(n, 16, 8)).astype(np.float32)
    if informative:
        x[np.arange(n)[:, None], np.arange(16), y] += 4.0
    return x, y


def test_dense_probe_learns_token_classes_and_not_noise():
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy) = _tokens(60, rng), _tokens(30, rng)
    good = fit_dense_probe(tx, ty, vx, vy, num_classes=3, fit=LogRegFit(steps=300))
    assert good["miou"] > 0.9 and good["accuracy"] == good["miou"]
    assert len(good["per_class_iou"]) == 3
    noise = fit_dense_probe(
        *_tokens(60, rng, False), *_tokens(30, rng, False), 3, fit=LogRegFit(steps=300)
    )
    assert noise["miou"] < 0.6
    capped = fit_dense_probe(
        tx, ty, vx, vy, num_classes=3, fit=LogRegFit(steps=300), max_train_tokens=200
    )
    assert capped["miou"] > 0.8  # a token subset still learns
    with pytest.raises(ValueError, match="token labels span"):
        fit_dense_probe(tx, ty + 5, vx, vy, num_classes=3)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    cfg = EncoderConfig(
        width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4, tubelet_size=2,
        input_shape=(8, 32, 32, 3),
    )  # fmt: skip
    params = jax.jit(lambda k: nn.meta.unbox(init_encoder_params(cfg.build(), k, cfg.input_shape)))(
        jax.random.key(0)
    )
    return write_encoder_dir(str(tmp_path_factory.mktemp("e") / "export"), cfg, params, {})


def test_eval_dense_probe_end_to_end_and_errors(export_dir, tmp_path):
    config = load_config(PROBE_CONFIG, "runlocal")
    config.probe.num_train, config.probe.num_test = 48, 24
    config.probe.linear.steps = 200
    config.probe.probes = ("dense",)
    config.probe.baselines = ("pixels",)
    results = run_eval(config, export_dir, str(tmp_path), log=lambda s: None)
    for name in ("trained", "pixels"):
        dense = results["encoders"][name]["dense"]
        assert 0.0 < dense["miou"] <= 1.0 and len(dense["per_class_iou"]) == 5
    config.probe.dense_label = "color"
    with pytest.raises(ConfigError, match=r"dense_label='color' is not a per-pixel label"):
        run_eval(config, export_dir, str(tmp_path / "bad"), log=lambda s: None)
    config.probe.dense_label = "shape_map"
    config.probe.num_clips = 2
    with pytest.raises(ConfigError, match=r"config.probe.num_clips=2 is invalid"):
        run_eval(config, export_dir, str(tmp_path / "bad"), log=lambda s: None)
