"""Data-pipeline throughput: clips/s per worker from mp4 and from ArrayRecord, and the fraction of
step time a short training run spends waiting for data.

Writes its own H.264 videos (a panned smooth-noise texture with a moving square, so the encoder
has real motion to code) into a temporary folder, prepares ArrayRecord shards from them with
`jepa_jax.data.prepare_clips` (JPEG frames, short side 256), then

 1. per worker: runs the pipeline's per-example work (decode, random-resized crop + flip to
    16x224x224, both V-JEPA masks) in this one process and thread, as one grain worker does,
    for mp4 and ArrayRecord, and prints clips/s with the time split by stage;
 2. data wait: trains `configs/vjepa_video_folder.py` on the videos for a few steps (tiny model
    unless --model_size is given) and prints the mean `data/wait_fraction` of the logged
    intervals after the first (compiling) one.

  python benchmarks/data_pipeline.py
  python benchmarks/data_pipeline.py --num_videos=16 --train_steps=40 --num_workers=4
  python benchmarks/data_pipeline.py --skip_train            # only the per-worker rates

Last line: mp4_clips_per_s_per_worker=... arrayrecord_clips_per_s_per_worker=...
data_wait_fraction=...
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from jepa_jax.commands.common import start_command  # noqa: E402
from jepa_jax.data import file_index, pipeline, reading, transforms, video  # noqa: E402
from jepa_jax.data.file_sources import clip_spec  # noqa: E402
from jepa_jax.data.prepare_clips import prepare_clips  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))

_NUM_VIDEOS = flags.DEFINE_integer("num_videos", 8, "Videos to generate.")
_VIDEO_FRAMES = flags.DEFINE_integer("video_frames", 150, "Frames per video (30 fps).")
_WIDTH = flags.DEFINE_integer("width", 342, "Video width (even), pixels.")
_HEIGHT = flags.DEFINE_integer("height", 256, "Video height (even), pixels.")
_CRF = flags.DEFINE_integer("crf", 15, "x264 quality (lower = higher bitrate).")
_CLIPS = flags.DEFINE_integer("clips", 24, "Timed clips per source (after 2 untimed).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 24, "Steps of the data-wait training run.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Batch of the data-wait training run.")
_WORKERS = flags.DEFINE_integer("num_workers", 0, "grain worker processes in the training run.")
_THREADS = flags.DEFINE_integer("num_threads", 2, "grain reader threads in the training run.")
_MODEL = flags.DEFINE_string("model_size", "tiny", "Encoder preset of the training run.")
_DEPTH = flags.DEFINE_integer("encoder_depth", 0, "Encoder blocks (0: the preset's).")
_PATCH = flags.DEFINE_integer("patch_size", 16, "Encoder patch size of the training run.")
_SKIP_TRAIN = flags.DEFINE_bool("skip_train", False, "Only measure the per-worker rates.")
_DIR = flags.DEFINE_string("dir", "", "Folder for the generated data (default: a temp dir).")


def synthetic_video(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: a smooth random texture panning at a random velocity, plus a square."""
    coarse = rng.integers(0, 256, size=(height // 16 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.asarray(
        Image.fromarray(coarse).resize((2 * width, 2 * height), Image.Resampling.BICUBIC)
    )
    velocity = rng.uniform(-3, 3, size=2)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        dy, dx = (np.abs(velocity * t) % np.array([height, width])).astype(int)
        out[t] = texture[dy : dy + height, dx : dx + width]
        y, x = int(20 + 2 * t) % (height - 40), int(30 + 3 * t) % (width - 40)
        out[t, y : y + 40, x : x + 40] = 255
    # Grain, so the encoder spends bits as on camera footage (about 1 Mbit/s at crf 15).
    grain = rng.integers(-6, 7, size=out.shape, dtype=np.int16)
    return np.clip(out + grain, 0, 255).astype(np.uint8)


def make_videos(folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(_NUM_VIDEOS.value):
        path = os.path.join(folder, f"video{i:03d}.mp4")
        if not os.path.exists(path):
            frames = synthetic_video(rng, _VIDEO_FRAMES.value, _HEIGHT.value, _WIDTH.value)
            video.write_video(path, frames, fps=30, options={"crf": str(_CRF.value)})
        paths.append(path)
    return paths


def video_config(path: str, source: str):
    from vjepa_video_folder import get_config

    return get_config(f"videos={path}" if source == "video_files" else f"shards={path}")


def per_worker_rate(config, label: str) -> float:
    """Clips/s of decode + crop + masks in this process (one thread), with a stage split."""
    from jepa_jax.train.setup import build_trainer

    trainer = build_trainer(config)
    source = pipeline.build_source(config.data, "train")
    read = reading.ReadExample(source, seed=3, max_bad_fraction=1.0)
    attach = pipeline.AttachMasks(trainer.sampler, seed=2)
    view = transforms.ViewConfig.from_data_config(config.data)

    n = _CLIPS.value
    for i in range(2):  # warm caches / lazy imports
        attach(i, read(i, i % len(source)))
    start = time.perf_counter()
    for i in range(n):
        example = attach(i, read(i, i % len(source)))
    total = time.perf_counter() - start
    assert example["pixels"].shape == (16, 224, 224, 3), example["pixels"].shape

    # Stage split on the same work (decode / crop / mask), timed separately.
    t_decode = t_view = t_mask = 0.0
    for i in range(min(n, 8)):
        rng = np.random.default_rng([3, i])
        t0 = time.perf_counter()
        if hasattr(source, "files"):
            frames, _ = video.read_clip(source.files.paths[i % len(source)], source.clip, rng)
        else:
            from jepa_jax.data.clip_shards import decode_clip

            frames = decode_clip(source.records[i % len(source)])["frames"]
        t1 = time.perf_counter()
        transforms.make_view(frames, view, rng)
        t2 = time.perf_counter()
        trainer.sampler.sample_for_index(2, i)
        t3 = time.perf_counter()
        t_decode, t_view, t_mask = t_decode + t1 - t0, t_view + t2 - t1, t_mask + t3 - t2
    parts = t_decode + t_view + t_mask
    rate = n / total
    print(
        f"{label}: {rate:.2f} clips/s per worker ({1e3 * total / n:.0f} ms/clip; decode "
        f"{100 * t_decode / parts:.0f}%, crop+resize {100 * t_view / parts:.0f}%, masks "
        f"{100 * t_mask / parts:.0f}%; source frames {frames.shape[1]}x{frames.shape[2]})",
        flush=True,
    )
    return rate


def data_wait_fraction(videos: str, workdir: str) -> float:
    """Mean data/wait_fraction of a short training run's logged intervals (first excluded)."""
    from jepa_jax.train.loop import train

    config = video_config(videos, "video_files")
    config.batch_size = _BATCH.value
    config.total_steps = _TRAIN_STEPS.value
    # The recipe's warmup is thousands of steps; a run this short reaches its peak lr early.
    config.optim.warmup_steps = min(int(config.optim.warmup_steps), _TRAIN_STEPS.value // 4)
    config.log_every = max(1, _TRAIN_STEPS.value // 6)
    config.checkpoint_every = 10 * _TRAIN_STEPS.value
    config.data.num_workers = _WORKERS.value
    config.data.num_threads = _THREADS.value
    config.model.encoder.size = _MODEL.value
    config.model.encoder.patch_size = _PATCH.value
    if _DEPTH.value:
        config.model.encoder.depth = _DEPTH.value
    config.model.predictor.update(width=96, depth=2, num_heads=3)
    import jax

    if jax.devices()[0].platform == "cpu":
        config.model.dtype = "float32"  # bf16 is not faster on CPU
    train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    later = [r for r in records[1:] if "data/wait_fraction" in r]
    fractions = [r["data/wait_fraction"] for r in later]
    rates = [r["steps_per_s"] for r in later if "steps_per_s" in r]
    print(
        f"training ({config.model.encoder.size} encoder x {trainer_depth(config)} blocks, patch "
        f"{config.model.encoder.patch_size}, batch {config.batch_size}, "
        f"{config.total_steps} steps, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"num_workers {config.data.num_workers}, num_threads {config.data.num_threads}): "
        f"data wait {100 * np.mean(fractions):.1f}% of step time (intervals: "
        f"{', '.join(f'{100 * x:.0f}%' for x in fractions)}), {np.mean(rates):.2f} steps/s",
        flush=True,
    )
    return float(np.mean(fractions))


def trainer_depth(config) -> int:
    from jepa_jax.models import ENCODER_PRESETS

    return config.model.encoder.depth or ENCODER_PRESETS[config.model.encoder.size]["depth"]


def main(argv):
    start_command(argv)
    root = _DIR.value or tempfile.mkdtemp(prefix="jepa_data_bench_")
    videos = os.path.join(root, "videos")
    t = time.perf_counter()
    paths = make_videos(videos)
    seconds = _VIDEO_FRAMES.value / 30
    mbits_per_s = 8 * sum(map(os.path.getsize, paths)) / len(paths) / seconds / 1e6
    print(
        f"{len(paths)} videos of {_VIDEO_FRAMES.value} frames at {_WIDTH.value}x{_HEIGHT.value}, "
        f"H.264 crf {_CRF.value} at "
        f"{mbits_per_s:.2f} Mbit/s, in {root} "
        f"({time.perf_counter() - t:.0f}s)",
        flush=True,
    )
    shards = os.path.join(root, "shards")
    if not os.path.exists(os.path.join(shards, "clips.json")):
        d = video_config(videos, "video_files").data
        files = file_index.list_files(videos, video.VIDEO_EXTENSIONS, "video", "data.path")
        t = time.perf_counter()
        meta = prepare_clips(files, clip_spec(d), shards, clips_per_video=2, log=lambda s: None)
        print(
            f"prepared {meta['num_clips']} clips (short side {meta['short_side']}, "
            f"{meta['encoding']}) in {time.perf_counter() - t:.0f}s",
            flush=True,
        )
    mp4 = per_worker_rate(video_config(videos, "video_files"), "mp4 (PyAV)")
    shard = per_worker_rate(video_config(shards, "clip_shards"), "ArrayRecord (JPEG frames)")
    wait = float("nan")
    if not _SKIP_TRAIN.value:
        wait = data_wait_fraction(videos, os.path.join(root, f"train_{time.time_ns()}"))
    print(
        f"mp4_clips_per_s_per_worker={mp4:.2f} arrayrecord_clips_per_s_per_worker={shard:.2f} "
        f"data_wait_fraction={wait:.3f}"
    )


if __name__ == "__main__":
    app.run(main)
