"""Decode a video folder once into ArrayRecord clip shards (`jepa-jax prepare`).

Each video gives `clips_per_video` clips (the middle clip of each of that many equal segments),
`num_frames` frames `frame_step` apart (or at `fps`), resized so the short side is at most
`short_side`, stored as `clip_shards` records (format in `data.clip_shards`). Videos are decoded
in a pool of worker processes; records are written in file-list order, so the output does not
depend on the worker count. Unreadable videos are skipped and listed in clips.json.

Nothing half-written is left as final: each shard is written under a temporary name and renamed
when complete, and clips.json, written last, is what makes the folder readable as a source.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable

from jepa_jax import rundir
from jepa_jax.data import clip_shards, file_index, transforms, video
from jepa_jax.data.reading import BadExample
from jepa_jax.errors import ConfigError


def _encode_video(job: tuple) -> tuple[list[bytes], str | None]:
    """(records, None) for one video, or ([], reason) when it cannot be read. Runs in workers."""
    path, label, clip, clips_per_video, short_side, encoding, quality = job
    records = []
    try:
        for segment in range(clips_per_video):
            frames, indices = video.read_clip(path, clip, None, segment, clips_per_video)
            frames = transforms.resize_short_side(frames, short_side)
            records.append(clip_shards.encode_clip(frames, label, path, indices, encoding, quality))
    except BadExample as e:
        return [], e.reason
    return records, None


class _ShardWriter:
    """Writes records into numbered shards of at most `per_shard` records each."""

    def __init__(self, folder: str, per_shard: int):
        self.folder = folder
        self.per_shard = per_shard
        self.shards: list[str] = []
        self._writer = None
        self._count = 0
        self._tmp = ""

    def write(self, record: bytes) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        if self._writer is None:
            name = clip_shards.SHARD_PATTERN.format(len(self.shards))
            self._tmp = os.path.join(self.folder, name + ".tmp")
            self._writer = ArrayRecordWriter(self._tmp, clip_shards.WRITER_OPTIONS)
            self.shards.append(name)
            self._count = 0
        self._writer.write(record)
        self._count += 1
        if self._count == self.per_shard:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            os.replace(self._tmp, os.path.join(self.folder, self.shards[-1]))
            self._writer = None


def prepare_clips(
    files: file_index.FileList,
    clip: video.ClipSpec,
    output: str,
    clips_per_video: int = 1,
    short_side: int = 256,
    encoding: str = "jpeg",
    jpeg_quality: int = 90,
    clips_per_shard: int = 1024,
    num_workers: int = 0,
    overwrite: bool = False,
    source: str = "",
    log: Callable[[str], None] = print,
) -> dict:
    """Write the clips of `files` to shards in `output`; returns the clips.json contents.

    Args:
      files: the videos and their labels.
      clip: frames per clip and their spacing.
      output: the shard folder (created).
      clips_per_video: clips per video, one per equal segment.
      short_side: frames are downscaled so their short side is at most this (pixels).
      encoding: "jpeg" (per-frame JPEG, quality `jpeg_quality`) or "raw" (uint8 arrays).
      clips_per_shard: records per shard file.
      num_workers: decoding processes (0: in this process).
      overwrite: replace an existing prepared folder.
      source: what `files` came from, recorded in clips.json.
      log: progress lines.
    """
    if encoding not in clip_shards.ENCODINGS:
        raise ConfigError(
            f"--encoding={encoding!r} is invalid: expected one of {clip_shards.ENCODINGS}"
        )
    if short_side < 1 or clips_per_shard < 1 or clips_per_video < 1 or num_workers < 0:
        raise ConfigError(
            f"short_side={short_side}, clips_per_shard={clips_per_shard}, clips_per_video="
            f"{clips_per_video} must be >= 1 and num_workers={num_workers} >= 0"
        )
    meta_path = os.path.join(output, clip_shards.METADATA)
    if os.path.exists(meta_path) and not overwrite:
        raise ConfigError(
            f"--output={output!r} already holds prepared clips ({meta_path}); pass --overwrite "
            f"to replace them"
        )
    os.makedirs(output, exist_ok=True)
    if os.path.exists(meta_path):
        os.remove(meta_path)  # the folder is not a valid source until the new one is written
    jobs = [
        (p, lbl, clip, clips_per_video, short_side, encoding, jpeg_quality)
        for p, lbl in zip(files.paths, files.labels, strict=True)
    ]
    writer = _ShardWriter(output, clips_per_shard)
    failed: list[tuple[str, str]] = []
    num_clips = 0
    start = last_log = time.perf_counter()
    pool = None
    if num_workers > 0:
        # spawn, not fork: the parent may hold JAX / thread state that must not be forked.
        pool = multiprocessing.get_context("spawn").Pool(num_workers)
        results = pool.imap(_encode_video, jobs, chunksize=1)
    else:
        results = map(_encode_video, jobs)
    try:
        for done, ((path, *_), (records, error)) in enumerate(zip(jobs, results, strict=True), 1):
            if error is not None:
                failed.append((path, error))
                log(f"prepare: skipping {path}: {error}")
            for record in records:
                writer.write(record)
            num_clips += len(records)
            now = time.perf_counter()
            if now - last_log > 10 or done == len(jobs):
                rate = done / max(now - start, 1e-9)
                log(
                    f"prepare: {done}/{len(jobs)} videos, {num_clips} clips, {len(failed)} "
                    f"failed, {rate:.1f} videos/s, ETA {(len(jobs) - done) / rate:.0f}s"
                )
                last_log = now
        writer.close()
    finally:
        if pool is not None:
            pool.terminate()
    meta = {
        "num_frames": clip.num_frames,
        "frame_step": clip.frame_step,
        "fps": clip.fps,
        "clips_per_video": clips_per_video,
        "short_side": short_side,
        "encoding": encoding,
        "num_clips": num_clips,
        "shards": writer.shards,
        "failed": failed,
        "source": source,
    }
    rundir.write_json_atomic(meta_path, meta)
    return meta
