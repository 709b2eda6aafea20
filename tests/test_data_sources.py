"""File-backed sources: video files, image folders, TFDS, prepared ArrayRecord shards, Moving
MNIST; views, determinism, bad-input handling, process sharding and worker iterator state."""

import json
import os

import numpy as np
import pytest
from conftest import tiny_image_config, tiny_video_config
from media import (
    fake_mnist,
    frame_index,
    write_images,
    write_index_video,
    write_mnist_idx,
    write_mnist_npz,
    write_truncated_video,
)

from jepa_jax.data import clip_shards, pipeline, transforms, video
from jepa_jax.data.moving_mnist import DIGIT_SIZE
from jepa_jax.data.prepare_clips import prepare_clips
from jepa_jax.data.reading import REPLACED, TooManyBadExamples
from jepa_jax.errors import ConfigError
from jepa_jax.train.setup import build_trainer

VIDEO_FRAMES = 48  # per test video: 30 fps, 32x32


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """Two classes of index-stamped videos: cats/ (2 videos) and dogs/ (2 videos)."""
    root = tmp_path_factory.mktemp("videos")
    for i, (cls, tint) in enumerate([("cats", 0), ("cats", 40), ("dogs", 80), ("dogs", 120)]):
        write_index_video(str(root / cls / f"v{i}.mp4"), VIDEO_FRAMES, tint=tint)
    return root


@pytest.fixture(scope="module")
def bad_video_dir(tmp_path_factory, video_dir):
    """3 good videos, and a truncated mp4, a text file named .mp4, and a 5-frame video."""
    root = tmp_path_factory.mktemp("bad_videos")
    for i in range(3):
        write_index_video(str(root / f"good{i}.mp4"), VIDEO_FRAMES, tint=50 * i)
    write_truncated_video(str(root / "truncated.mp4"), str(video_dir / "cats" / "v0.mp4"))
    (root / "notes.mp4").write_text("not a video")
    write_index_video(str(root / "short.mp4"), 5)
    return root


def video_config(path, **data):
    c = tiny_video_config()
    c.data.update(name="video_files", path=str(path), frame_step=3, **data)
    return c


def test_video_clips_hold_exactly_the_requested_frames(video_dir):
    path = str(video_dir / "dogs" / "v2.mp4")
    spec = video.ClipSpec(num_frames=6, frame_step=3)
    for seed in range(4):  # random starts; most need a seek into the file
        frames, wanted = video.read_clip(path, spec, np.random.default_rng(seed))
        assert frames.shape == (6, 32, 32, 3) and frames.dtype == np.uint8
        assert [frame_index(f) for f in frames] == list(wanted)
        assert np.all(np.diff(wanted) == 3) and 0 <= wanted[0] and wanted[-1] < VIDEO_FRAMES
    _, middle = video.read_clip(path, spec, None)
    assert middle[0] == (VIDEO_FRAMES - 16) // 2  # eval: the centred clip
    # fps=10 on a 30 fps video: every 3rd frame, as frame_step=3.
    _, by_fps = video.read_clip(path, video.ClipSpec(6, frame_step=1, fps=10.0), None)
    np.testing.assert_array_equal(by_fps, middle)
    # Two clips per video: each inside its half.
    for segment in range(2):
        for seed in range(5):
            idx = video.clip_indices(VIDEO_FRAMES, 2, 6, np.random.default_rng(seed), segment, 2)
            assert segment * 24 <= idx[0] and idx[-1] < (segment + 1) * 24


def test_video_source_views_labels_and_determinism(video_dir):
    config = video_config(video_dir, clips_per_video=2, flip=True)
    source = pipeline.build_source(config.data, "train")
    assert len(source) == 8  # 4 videos x 2 clips
    a = source.load(1, np.random.default_rng([7, 1]))
    b = source.load(1, np.random.default_rng([7, 1]))
    c = source.load(1, np.random.default_rng([7, 2]))
    assert a["pixels"].shape == (4, 32, 32, 3) and a["pixels"].dtype == np.uint8
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    assert not np.array_equal(a["pixels"], c["pixels"])
    assert int(a["labels"]["label"]) == 0 and int(source[7]["labels"]["label"]) == 1  # cats, dogs
    np.testing.assert_array_equal(source[3]["pixels"], source[3]["pixels"])  # eval view

    # The training stream: same config -> same batches; another seed -> other views.
    trainer = build_trainer(config)
    b1 = next(iter(trainer.train_dataset()))
    b2 = next(iter(build_trainer(config).train_dataset()))
    assert b1["pixels"].shape == (8, 4, 32, 32, 3) and b1["pixels"].dtype == np.uint8
    assert 0 < b1["pixels"].mean() < 255
    np.testing.assert_array_equal(b1["pixels"], b2["pixels"])
    np.testing.assert_array_equal(b1[REPLACED], np.zeros(8, np.int32))
    config.seed = 1
    b3 = next(iter(build_trainer(config).train_dataset()))
    assert not np.array_equal(b1["pixels"], b3["pixels"])


def test_random_resized_crop_flip_and_center_crop():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = transforms.random_resized_crop_box(rng, 60, 80, (0.3, 1.0), (0.75, 1.35))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.29 <= h * w / (60 * 80) <= 1.0 and 0.7 <= w / h <= 1.45
    # Impossible aspect ranges fall back to the largest centred box.
    box = transforms.random_resized_crop_box(rng, 60, 80, (1.0, 1.0), (3.0, 4.0))
    assert box == (16, 0, 27, 80)
    clip = np.random.default_rng(1).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    flipped = transforms.crop_resize(clip, (0, 0, 20, 20), 20, flip=True)
    np.testing.assert_array_equal(flipped, clip[:, :, :20][:, :, ::-1])
    assert transforms.center_crop_box(20, 30, 0.5) == (5, 10, 10, 10)
    view = transforms.ViewConfig(size=16, flip=True)
    out = transforms.make_view(clip, view, None)
    assert out.shape == (2, 16, 16, 3) and out.dtype == np.uint8


def test_image_folder_labels_views_and_index_files(tmp_path):
    paths = write_images(str(tmp_path / "tree"), {"a": 3, "b": 2})
    config = tiny_image_config()
    config.data.update(name="image_folder", path=str(tmp_path / "tree"), flip=True)
    source = pipeline.build_source(config.data, "train")
    assert len(source) == 5
    assert [int(source[i]["labels"]["label"]) for i in range(5)] == [0, 0, 0, 1, 1]
    ex = source.load(4, np.random.default_rng(0))
    assert ex["pixels"].shape == (32, 32, 3) and ex["pixels"].dtype == np.uint8
    assert ex["pixels"][..., 1].mean() > 150  # class b is green (the crop keeps the colour)
    # A flat folder: unlabelled; an index file: its labels, relative paths allowed.
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, p in enumerate(paths[:2]):
        os.link(p, flat / f"{i}.png")
    config.data.path = str(flat)
    assert {int(s["labels"]["label"]) for s in pipeline.build_source(config.data, "train")} == {-1}
    index = tmp_path / "tree" / "list.csv"
    index.write_text("path,label\n# comment\n\nb/img1.png,7\na/img0.png 3\n")
    config.data.path = str(index)
    source = pipeline.build_source(config.data, "train")
    assert [int(source[i]["labels"]["label"]) for i in range(2)] == [7, 3]
    batch = next(iter(build_trainer(config).train_dataset()))
    assert batch["pixels"].shape == (8, 32, 32, 3) and set(batch) == {"pixels", "masks", REPLACED}


def test_missing_path_empty_index_and_empty_folder_are_clear_errors(tmp_path):
    config = video_config(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="config.data.path=.*nowhere' does not exist"):
        pipeline.build_source(config.data, "train")
    (tmp_path / "empty.csv").write_text("# nothing here\n")
    config.data.path = str(tmp_path / "empty.csv")
    with pytest.raises(ConfigError, match="empty.csv': no entries in the index file"):
        pipeline.build_source(config.data, "train")
    (tmp_path / "empty_dir").mkdir()
    config.data.path = str(tmp_path / "empty_dir")
    with pytest.raises(ConfigError, match="no video files"):
        pipeline.build_source(config.data, "train")
    config.data.path = ""
    with pytest.raises(ConfigError, match="config.data.path is empty"):
        pipeline.build_source(config.data, "train")
    with pytest.raises(ConfigError, match="config.data.test_path is empty"):
        pipeline.build_source(config.data, "test")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 cat\n")
    config.data.path = str(bad)
    with pytest.raises(ConfigError, match=r"bad.txt:1: expected 'path \[integer label\]'"):
        pipeline.build_source(config.data, "train")


def test_corrupt_inputs_are_replaced_deterministically_and_counted(bad_video_dir):
    config = video_config(bad_video_dir, max_bad_fraction=0.9)
    source = pipeline.build_source(config.data, "train")
    assert len(source) == 6
    trainer = build_trainer(config)
    it = iter(trainer.train_dataset())
    batches = [next(it) for _ in range(3)]
    replaced = sum(int(b[REPLACED].sum()) for b in batches)
    # 24 examples drawn from 6 files, 3 of them bad: about half the draws hit a bad file.
    assert replaced >= 4, replaced
    again = iter(build_trainer(config).train_dataset())
    for want in batches:
        got = next(again)
        np.testing.assert_array_equal(got["pixels"], want["pixels"])
        np.testing.assert_array_equal(got[REPLACED], want[REPLACED])
    # Every example is a clip of a good video, whose frame stamps change from frame to frame.
    for b in batches:
        for clip in b["pixels"]:
            assert not np.array_equal(clip[0], clip[-1])


def test_too_many_bad_inputs_stop_with_an_error_naming_files(bad_video_dir):
    config = video_config(bad_video_dir, max_bad_fraction=0.05)
    it = iter(build_trainer(config).train_dataset())
    with pytest.raises(
        TooManyBadExamples, match=r"max_bad_fraction=0.05: .*(truncated|notes|short)"
    ):
        for _ in range(20):
            next(it)


def test_process_shards_of_a_video_stream_are_disjoint(video_dir):
    trainer = build_trainer(video_config(video_dir))
    whole = next(iter(trainer.train_dataset(process_index=0, process_count=1)))
    half = len(whole["pixels"]) // 2
    for p in range(2):  # process p holds rows [p * half, (p + 1) * half) of the global batch
        part = next(iter(trainer.train_dataset(process_index=p, process_count=2)))
        np.testing.assert_array_equal(part["pixels"], whole["pixels"][p * half : (p + 1) * half])


def test_moving_mnist_from_npz_and_idx(tmp_path):
    npz = tmp_path / "mnist.npz"
    write_mnist_npz(str(npz))
    config = tiny_video_config()
    config.data.update(name="moving_mnist", path=str(npz), image_size=64, num_frames=12)
    source = pipeline.build_source(config.data, "train")
    ex = source[3]
    px, labels = ex["pixels"], ex["labels"]
    assert px.shape == (12, 64, 64, 3) and px.dtype == np.uint8 and px.max() == 255
    np.testing.assert_array_equal(px[..., 0], px[..., 2])  # grey
    np.testing.assert_array_equal(source[3]["pixels"], px)
    assert not np.array_equal(source[4]["pixels"], px)
    x, y = fake_mnist(50)
    assert labels["digits"].shape == (2,) and set(labels["digits"]) <= set(y.tolist())
    assert int(labels["digit_sum"]) == int(labels["digits"].sum())
    assert [int(labels["digit_0"]), int(labels["digit_1"])] == labels["digits"].tolist()
    # Each digit's drawn square starts DIGIT_SIZE/2 up-left of its labelled centre, every frame.
    pos = labels["positions"]
    assert pos.shape == (12, 2, 2) and np.all((0 < pos) & (pos < 1))
    for t in range(12):
        for d in range(2):
            cx, cy = np.round(pos[t, d] * 64 - DIGIT_SIZE / 2).astype(int)
            assert px[t, cy + 4, cx + 4, 0] == 255  # the fake digit's top-left pixel
    # Bouncing: positions stay inside and the motion reverses at walls.
    speed = np.linalg.norm(labels["velocity"], axis=-1)
    np.testing.assert_allclose(speed, 0.1 * (64 - DIGIT_SIZE), rtol=1e-5)
    # Test split: other digits (the npz's x_test) and other trajectories.
    test = pipeline.build_source(config.data, "test")
    assert not np.array_equal(test[3]["pixels"], px)
    # idx + labels files.
    config.data.path = write_mnist_idx(str(tmp_path / "idx"))
    idx_source = pipeline.build_source(config.data, "train")
    np.testing.assert_array_equal(idx_source[3]["pixels"], px)  # same digits as the npz
    os.remove(tmp_path / "idx" / "train-labels-idx1-ubyte.gz")
    with pytest.raises(ConfigError, match="labels file .*train-labels-idx1-ubyte.gz"):
        pipeline.build_source(config.data, "train")
    config.data.path = str(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match="missing.npz' does not exist"):
        pipeline.build_source(config.data, "train")


def _tfds_builder(data_dir):
    import tensorflow_datasets as tfds
    from etils import epath

    class JepaTinyMedia(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")
        pkg_dir_path = epath.Path(os.path.dirname(__file__))  # no README etc. to read

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(24, 40, 3)),
                        "video": tfds.features.Video(shape=(None, 16, 16, 3)),
                        "label": tfds.features.ClassLabel(num_classes=3),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(9), "test": self._generate_examples(3)}

        def _generate_examples(self, n):
            for i in range(n):
                frames = np.stack([np.full((16, 16, 3), 10 * t, np.uint8) for t in range(12)])
                yield i, {"image": np.full((24, 40, 3), 20 * i, np.uint8), "video": frames,
                          "label": i % 3}  # fmt: skip

    builder = JepaTinyMedia(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return builder.name


def test_tfds_image_and_video_sources(tmp_path):
    name = _tfds_builder(tmp_path)
    config = tiny_image_config()
    config.data.update(name="tfds_images", path=str(tmp_path), tfds_name=name)
    source = pipeline.build_source(config.data, "train")
    assert len(source) == 9 and len(pipeline.build_source(config.data, "test")) == 3
    ex = source.load(4, np.random.default_rng(0))
    assert ex["pixels"].shape == (32, 32, 3) and ex["pixels"].dtype == np.uint8
    level = int(ex["pixels"][0, 0, 0])  # example i is flat grey 20 * i with label i % 3
    assert np.all(ex["pixels"] == level) and int(ex["labels"]["label"]) == (level // 20) % 3
    batch = next(iter(build_trainer(config).train_dataset()))
    assert batch["pixels"].shape == (8, 32, 32, 3)

    config = tiny_video_config()
    config.data.update(
        name="tfds_video", path=str(tmp_path), tfds_name=name, pixels_key="video", frame_step=2
    )
    clip = pipeline.build_source(config.data, "train").load(0, np.random.default_rng(1))["pixels"]
    assert clip.shape == (4, 32, 32, 3)
    levels = clip[:, 0, 0, 0].astype(int)
    assert np.all(np.diff(levels) == 20)  # frames 2 apart, 10 grey levels per frame

    config.data.tfds_name = "no_such_dataset"
    with pytest.raises(ConfigError, match="cannot open TFDS dataset .*'no_such_dataset'"):
        pipeline.build_source(config.data, "train")
    config.data.update(tfds_name=name, pixels_key="frames")
    with pytest.raises(ConfigError, match="no feature 'frames'"):
        pipeline.build_source(config.data, "train")


def test_prepared_shards_hold_the_clips_and_train(tmp_path, bad_video_dir):
    config = video_config(bad_video_dir, clips_per_video=2)
    files = pipeline.build_source(config.data, "train").files
    clip = video.ClipSpec(4, 3)
    out = tmp_path / "shards"
    meta = prepare_clips(files, clip, str(out), clips_per_video=2, encoding="raw",
                         clips_per_shard=3, log=lambda s: None)  # fmt: skip
    assert meta["num_clips"] == 6 and len(meta["shards"]) == 2  # 3 good videos x 2 clips
    assert sorted(os.path.basename(p) for p, _ in meta["failed"]) == [
        "notes.mp4",
        "short.mp4",
        "truncated.mp4",
    ]
    assert json.loads((out / clip_shards.METADATA).read_text())["num_clips"] == 6
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    with pytest.raises(ConfigError, match="already holds prepared clips"):
        prepare_clips(files, clip, str(out), log=lambda s: None)

    shard_config = video_config(out)
    shard_config.data.update(name="clip_shards", image_size=32, eval_crop_fraction=1.0)
    shards = pipeline.build_source(shard_config.data, "train")
    assert len(shards) == 6
    # Raw records hold exactly the eval clips of the videos (32x32 frames: no resize).
    video_source = pipeline.build_source(config.data, "train")
    good = [i for i, p in enumerate(files.paths) if "good" in p]
    for k, i in enumerate(good):
        frames, _ = video.read_clip(files.paths[i], clip, None, 1, 2)
        np.testing.assert_array_equal(shards[2 * k + 1]["pixels"], frames)
        assert shards[2 * k]["labels"]["label"] == video_source[2 * i]["labels"]["label"]
    batch = next(iter(build_trainer(shard_config).train_dataset()))
    assert batch["pixels"].shape == (8, 4, 32, 32, 3) and not batch[REPLACED].any()

    # JPEG shards decode to nearly the same frames.
    jpeg = prepare_clips(files, clip, str(tmp_path / "jpeg"), clips_per_video=2, log=lambda s: None)
    shard_config.data.path = str(tmp_path / "jpeg")
    a = pipeline.build_source(shard_config.data, "train")[1]["pixels"].astype(int)
    assert jpeg["encoding"] == "jpeg" and np.abs(a - shards[1]["pixels"]).mean() < 4

    shard_config.data.num_frames = 8
    with pytest.raises(ConfigError, match="num_frames=8 does not match the 4-frame clips"):
        pipeline.build_source(shard_config.data, "train")
    shard_config.data.path = str(tmp_path)
    with pytest.raises(ConfigError, match="cannot read clips.json"):
        pipeline.build_source(shard_config.data, "train")


def test_worker_processes_give_the_same_stream_and_resume_from_an_orbax_checkpoint(tmp_path):
    """num_workers=2: the batches equal the in-process ones, and the iterator state (with the
    workers' positions) saved in an orbax checkpoint restores the exact continuation."""
    import jax.numpy as jnp

    from jepa_jax.checkpoint import Checkpointer

    write_images(str(tmp_path / "imgs"), {"a": 5, "b": 6})
    (tmp_path / "imgs" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    config = tiny_image_config()
    config.data.update(name="image_folder", path=str(tmp_path / "imgs"), max_bad_fraction=0.5)
    reference = iter(build_trainer(config).train_dataset())
    want = [next(reference) for _ in range(5)]
    assert sum(int(b[REPLACED].sum()) for b in want) > 0  # the broken PNG was met

    config.data.num_workers = 2
    trainer = build_trainer(config)
    it = iter(trainer.train_dataset())
    for k in range(3):
        b = next(it)
        np.testing.assert_array_equal(b["pixels"], want[k]["pixels"])
        np.testing.assert_array_equal(b[REPLACED], want[k][REPLACED])
    ckpt = Checkpointer(str(tmp_path / "run"), every=1, keep=1, async_save=False)
    ckpt.save(3, {"step": jnp.int32(3)}, it)
    ckpt.close()
    it.close()

    ckpt = Checkpointer(str(tmp_path / "run"), every=1, keep=1, async_save=False)
    fresh = iter(build_trainer(config).train_dataset())
    ckpt.restore(3, {"step": jnp.int32(0)}, fresh)
    ckpt.close()
    for k in (3, 4):
        b = next(fresh)
        np.testing.assert_array_equal(b["pixels"], want[k]["pixels"])
        np.testing.assert_array_equal(b["masks"][0]["context"], want[k]["masks"][0]["context"])
    fresh.close()
