"""Pre-decoded clips in ArrayRecord shards: the format `jepa-jax prepare` writes, and its source.

Decoding video is the costly part of a video pipeline; `jepa-jax prepare` decodes each clip once
(frames resized so the short side is `short_side`) and stores it, so training only decodes JPEGs
and crops. A shard folder holds

  clips-00000.array_record, clips-00001.array_record, ...   one record per clip
  clips.json   {"num_frames", "frame_step", "fps", "short_side", "encoding", "num_clips",
                "shards", "failed": [[path, reason], ...], "source": input path}

A record is an uncompressed .npz (numpy's own format, read with allow_pickle=False):
  encoding "jpeg": "jpeg" uint8 [total bytes] (the frames' JPEGs back to back) and "offsets"
    int64 [T + 1]; encoding "raw": "frames" uint8 [T, H, W, 3].
  "label" int32, "video" uint8 (the UTF-8 source path), "frame_indices" int64 [T].

Clip starts are fixed when the shards are written (the middle of each of `clips_per_video`
segments); crops and flips stay random per step.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jepa_jax.data import transforms
from jepa_jax.data.file_sources import split_path
from jepa_jax.data.reading import BadExample, RecordSource
from jepa_jax.errors import ConfigError

METADATA = "clips.json"
SHARD_PATTERN = "clips-{:05d}.array_record"
ENCODINGS = ("jpeg", "raw")
# One record per chunk, so a random read decompresses only its own clip.
WRITER_OPTIONS = "group_size:1"


def encode_clip(
    frames: np.ndarray,
    label: int,
    video_path: str,
    frame_indices: np.ndarray,
    encoding: str = "jpeg",
    jpeg_quality: int = 90,
) -> bytes:
    """One record (module docstring) from uint8 frames [T, H, W, 3]."""
    arrays: dict[str, np.ndarray] = {
        "label": np.int32(label),
        "video": np.frombuffer(video_path.encode("utf-8"), np.uint8),
        "frame_indices": np.asarray(frame_indices, np.int64),
    }
    if encoding == "raw":
        arrays["frames"] = np.ascontiguousarray(frames, np.uint8)
    elif encoding == "jpeg":
        from PIL import Image

        blobs = []
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, format="JPEG", quality=int(jpeg_quality))
            blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
        arrays["jpeg"] = np.concatenate(blobs)
        arrays["offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    else:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_clip(record: bytes) -> dict[str, Any]:
    """A record -> {"frames": uint8 [T, H, W, 3], "label": int, "video": str}.

    Raises ValueError / OSError for a damaged record.
    """
    with np.load(io.BytesIO(record), allow_pickle=False) as z:
        if "frames" in z:
            frames = z["frames"]
        else:
            from PIL import Image

            data, offsets = z["jpeg"], z["offsets"]
            frames = np.stack(
                [
                    np.asarray(Image.open(io.BytesIO(data[a:b].tobytes())).convert("RGB"))
                    for a, b in zip(offsets[:-1], offsets[1:], strict=True)
                ]
            )
        return {
            "frames": frames,
            "label": int(z["label"]),
            "video": z["video"].tobytes().decode("utf-8"),
        }


def read_metadata(folder: str, key: str = "data.path") -> dict[str, Any]:
    """clips.json of a shard folder; ConfigError naming the path when missing or unreadable."""
    path = os.path.join(folder, METADATA)
    if not os.path.isdir(folder):
        raise ConfigError(
            f"config.{key}={folder!r} is not a folder: expected the output folder of "
            f"`jepa-jax prepare`"
        )
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"config.{key}={folder!r}: cannot read {METADATA} ({e}); is it the output folder of "
            f"`jepa-jax prepare`?"
        ) from e
    if not meta.get("num_clips"):
        raise ConfigError(f"config.{key}={folder!r} holds no clips ({path} says num_clips=0)")
    missing = [s for s in meta["shards"] if not os.path.isfile(os.path.join(folder, s))]
    if missing:
        raise ConfigError(f"config.{key}={folder!r} is missing shard files {missing[:3]}")
    return meta


@dataclasses.dataclass(frozen=True)
class ClipShards(RecordSource):
    """Random-access clips from a `jepa-jax prepare` folder; a decoded source (`data.reading`).

    Items: {"pixels": uint8 [T, S, S, 3], "labels": {"label": int32, "clip_index": int32}}.
    """

    folder: str
    view: transforms.ViewConfig
    records: Any  # grain ArrayRecordDataSource over the shards

    def describe(self, index: int) -> str:
        return f"{self.folder} clip {index}"

    def load(self, index: int, rng: np.random.Generator | None) -> dict:
        """Training view from `rng` (random-resized crop, flip); eval view (centre crop) if None."""
        index = int(index)
        try:
            clip = decode_clip(self.records[index])
        except (ValueError, OSError, KeyError) as e:
            raise BadExample(
                self.describe(index), f"damaged record ({type(e).__name__}: {e})"
            ) from e
        return {
            "pixels": transforms.make_view(clip["frames"], self.view, rng),
            "labels": {"label": np.int32(clip["label"]), "clip_index": np.int32(index)},
        }


def clip_shards_source(d: Mapping[str, Any], split: str) -> ClipShards:
    """The `clip_shards` source: data.path (train) / data.test_path (test) is a prepare folder."""
    import grain

    folder, key = split_path(d, split)
    meta = read_metadata(folder, key)
    if int(meta["num_frames"]) != int(d["num_frames"]):
        raise ConfigError(
            f"config.data.num_frames={d['num_frames']} does not match the {meta['num_frames']}-"
            f"frame clips in {folder!r}; set data.num_frames={meta['num_frames']} or re-run "
            f"`jepa-jax prepare`"
        )
    shards = [os.path.join(folder, s) for s in meta["shards"]]
    return ClipShards(
        folder=folder,
        view=transforms.ViewConfig.from_data_config(d),
        records=grain.sources.ArrayRecordDataSource(shards),
    )
