"""Built-in datasets and the grain pipeline: determinism, labels, sharding, resumable state."""

import numpy as np
import pytest
from conftest import tiny_image_config, tiny_video_config

from jepa_jax.data import pipeline, sources
from jepa_jax.data.synthetic import (
    LABEL_CLASSES,
    MovingShapesVideo,
    SceneStyle,
    ShapesImages,
    _sample_scene,
)
from jepa_jax.errors import ConfigError
from jepa_jax.train.setup import build_trainer


def test_video_examples_are_deterministic_with_labels():
    ds = MovingShapesVideo(num_examples=100, num_frames=8, size=32, seed=3)
    a, b = ds[7], ds[7]
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    assert a["pixels"].shape == (8, 32, 32, 3) and a["pixels"].dtype == np.uint8
    assert not np.array_equal(a["pixels"], ds[8]["pixels"])
    assert not np.array_equal(a["pixels"], MovingShapesVideo(100, 8, 32, seed=4)[7]["pixels"])
    assert not np.array_equal(
        a["pixels"], MovingShapesVideo(100, 8, 32, seed=3, split="test")[7]["pixels"]
    )
    labels = a["labels"]
    for name, n in LABEL_CLASSES.items():
        assert 0 <= int(labels[name]) < n
    assert labels["position"].shape == (2,) and np.all(
        (0 <= labels["position"]) & (labels["position"] <= 1)
    )
    # The object moves: frames differ, and the motion follows the velocity label at first.
    assert not np.array_equal(a["pixels"][0], a["pixels"][1])


def object_centroids(pixels: np.ndarray) -> np.ndarray:
    """[T, 2] (x, y) centroid per frame of the pixels that differ from the frame's mode colour
    (the object: backgrounds are smooth and dark, objects saturated)."""
    bright = pixels.max(axis=-1) > 100  # object colours have a channel > 200; backgrounds < 100
    ys, xs = np.mgrid[: pixels.shape[1], : pixels.shape[2]]
    return np.stack([[xs[m].mean(), ys[m].mean()] for m in bright])


@pytest.mark.parametrize("num_frames, size", [(8, 32), (16, 64)])
def test_direction_label_is_the_motion_the_clip_shows(num_frames, size):
    # Train example 0 at 8x32x32 used to be labelled up-right and move down-right (a bounce in
    # its first frames): every clip now moves in a straight line in its labelled direction.
    ds = MovingShapesVideo(num_examples=100, num_frames=num_frames, size=size, seed=0)
    for i in range(100):
        ex = ds[i]
        c = object_centroids(ex["pixels"])
        step = np.diff(c, axis=0)
        v = ex["labels"]["velocity"]
        # The centroid moves by the velocity every frame (no reversal), within rasterisation.
        np.testing.assert_allclose(step, np.broadcast_to(v, step.shape), atol=1.0, err_msg=str(i))
        angle = np.arctan2(*(c[-1] - c[0])[::-1]) % (2 * np.pi)
        shown = int(np.round(angle / (np.pi / 4))) % 8
        # The net motion's bin is the label's, or a neighbour when the angle is near a bin edge.
        assert (shown - int(ex["labels"]["direction"])) % 8 in (0, 1, 7), i


def test_images_have_shape_labels_and_classes_differ():
    ds = ShapesImages(num_examples=400, size=32, seed=0)
    shapes = np.array([int(ds[i]["labels"]["shape"]) for i in range(400)])
    assert set(shapes) == set(range(LABEL_CLASSES["shape"]))
    assert ds[0]["pixels"].shape == (32, 32, 3)


def test_train_stream_batches_masks_and_is_reproducible():
    config = tiny_video_config()
    trainer = build_trainer(config)
    b1 = next(iter(trainer.train_dataset()))
    b2 = next(iter(trainer.train_dataset()))
    assert b1["pixels"].shape == (8, 4, 32, 32, 3) and b1["pixels"].dtype == np.uint8
    assert set(b1) == {"pixels", "masks"}  # labels are not shipped to the train step
    for spec, m in zip(trainer.sampler.specs, b1["masks"], strict=True):
        assert m["context"].shape == (8, spec.num_context)
        assert m["target"].shape == (8, 1, spec.num_target)
    np.testing.assert_array_equal(b1["pixels"], b2["pixels"])
    np.testing.assert_array_equal(b1["masks"][0]["context"], b2["masks"][0]["context"])
    # Element i of the stream carries the masks of (mask seed, i).
    expected = trainer.sampler.sample_for_index(int(config.seed) + pipeline.MASK_SEED_OFFSET, 3)
    np.testing.assert_array_equal(b1["masks"][1]["context"][3], expected[1]["context"])


def test_process_shards_are_disjoint_and_cover_the_global_batch():
    config = tiny_image_config()
    trainer = build_trainer(config)
    whole = next(iter(trainer.train_dataset(process_index=0, process_count=1)))
    parts = [next(iter(trainer.train_dataset(process_index=p, process_count=2))) for p in range(2)]
    assert all(p["pixels"].shape[0] == 4 for p in parts)
    # Process p holds rows [4p, 4p+4) of the single-process global batch, masks included.
    np.testing.assert_array_equal(parts[0]["pixels"], whole["pixels"][:4])
    np.testing.assert_array_equal(parts[1]["pixels"], whole["pixels"][4:])
    np.testing.assert_array_equal(parts[1]["masks"][0]["context"], whole["masks"][0]["context"][4:])
    # ... and so on for later batches: no example is read twice.
    it0 = iter(trainer.train_dataset(process_index=0, process_count=2))
    it1 = iter(trainer.train_dataset(process_index=1, process_count=2))
    pixels = [next(it)["pixels"] for _ in range(3) for it in (it0, it1)]
    rows = np.concatenate(pixels)
    assert len({r.tobytes() for r in rows}) == len(rows)
    with pytest.raises(ValueError, match="multiple of the process count 3"):
        trainer.train_dataset(process_index=0, process_count=3)


def test_iterator_state_restores_the_exact_position():
    trainer = build_trainer(tiny_video_config())
    it = iter(trainer.train_dataset())
    for _ in range(3):
        next(it)
    saved = it.get_state()
    expected = [next(it) for _ in range(2)]
    fresh = iter(trainer.train_dataset())
    fresh.set_state(saved)
    for want in expected:
        got = next(fresh)
        np.testing.assert_array_equal(got["pixels"], want["pixels"])
        np.testing.assert_array_equal(got["masks"][1]["target"], want["masks"][1]["target"])


def test_unknown_source_is_a_clear_error():
    config = tiny_video_config()
    config.data.name = "imagenet"
    with pytest.raises(ConfigError, match="unknown data source config.data.name='imagenet'"):
        build_trainer(config)


def test_scene_style_adds_clutter_and_texture_around_the_same_labelled_object():
    plain = MovingShapesVideo(num_examples=50, num_frames=8, size=32, seed=0)
    rich = MovingShapesVideo(50, 8, 32, seed=0, style=SceneStyle(distractors=3, texture=True))
    for i in range(50):
        a, b = plain[i], rich[i]
        # The labelled object is drawn from the same stream first: identical labels, except
        # that occluders hide part of its per-pixel map.
        for name in a["labels"]:
            if name != "shape_map":
                np.testing.assert_array_equal(a["labels"][name], b["labels"][name])
        hidden = a["labels"]["shape_map"] != b["labels"]["shape_map"]
        assert not np.any(b["labels"]["shape_map"][hidden])
        assert not np.array_equal(a["pixels"], b["pixels"])
        np.testing.assert_array_equal(b["pixels"], rich[i]["pixels"])  # deterministic
    rng = np.random.default_rng(1)
    scene = _sample_scene(rng, 32, 8, SceneStyle(distractors=4))
    others = scene.behind + scene.in_front
    assert len(others) == 4
    # Distractors are smaller than the labelled object, so the labels are never ambiguous.
    assert max(d.radius for d in others) < scene.main.radius
    still = ShapesImages(20, 32, seed=0, style=SceneStyle(distractors=2, texture=True))[3]
    assert still["pixels"].shape == (32, 32, 3)


def test_scene_style_comes_from_the_data_config():
    config = tiny_video_config()
    config.data.update(distractors=2, texture=True)
    assert sources.scene_style(config.data) == SceneStyle(distractors=2, texture=True)
    config.data.distractors = -1
    with pytest.raises(
        ConfigError, match=r"config.data.distractors=-1 is invalid: expected an integer >= 0"
    ):
        sources.scene_style(config.data)
