"""Sources over user files: `video_files` (PyAV) and `image_folder` (Pillow).

Config (`config.data`):
  name: "video_files" | "image_folder"
  path: the train split's folder or index file (`data.file_index`); test_path: the 'test'
    split's (probes), "" for none.
  num_frames, frame_step, fps, clips_per_video: the clip (video only, `data.video`).
  image_size, crop_scale, crop_aspect, flip, eval_crop_fraction: the view (`data.transforms`).

Items: {"pixels": uint8 [T, S, S, 3] (video) or [S, S, 3] (images), "labels": {"label": int32
(class, or -1), "file_index": int32 (position in the file list)}}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jepa_jax.data import file_index, transforms, video
from jepa_jax.data.reading import BadExample, DecodedSource
from jepa_jax.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def split_path(d: Mapping[str, Any], split: str) -> tuple[str, str]:
    """(path, config key) of a split's files: data.path for 'train', data.test_path for 'test'."""
    if split == "train":
        return str(d["path"]), "data.path"
    if split == "test":
        if not d["test_path"]:
            raise ConfigError(
                "config.data.test_path is empty: the 'test' split (used by probes) needs its own "
                "folder or index file"
            )
        return str(d["test_path"]), "data.test_path"
    raise ConfigError(f"unknown split {split!r}; expected 'train' or 'test'")


def clip_spec(d: Mapping[str, Any]) -> video.ClipSpec:
    """The clip of a `config.data` block (raises ConfigError for impossible values)."""
    spec = video.ClipSpec(int(d["num_frames"]), int(d["frame_step"]), float(d["fps"]))
    if spec.num_frames < 1 or spec.frame_step < 1 or spec.fps < 0:
        raise ConfigError(
            f"config.data num_frames={spec.num_frames}, frame_step={spec.frame_step}, "
            f"fps={spec.fps} are invalid: expected num_frames >= 1, frame_step >= 1, fps >= 0"
        )
    if int(d["clips_per_video"]) < 1:
        raise ConfigError(
            f"config.data.clips_per_video={d['clips_per_video']} is invalid: expected >= 1"
        )
    return spec


def _labels(files: file_index.FileList, i: int) -> dict[str, np.ndarray]:
    return {"label": np.int32(files.labels[i]), "file_index": np.int32(i)}


@dataclasses.dataclass(frozen=True)
class VideoFiles(DecodedSource):
    """Clips decoded from video files; `clips_per_video` records per file (one per segment)."""

    files: file_index.FileList
    clip: video.ClipSpec
    view: transforms.ViewConfig
    clips_per_video: int = 1

    def __len__(self) -> int:
        return len(self.files) * self.clips_per_video

    def describe(self, index: int) -> str:
        return self.files.paths[index // self.clips_per_video]

    def load(self, index: int, rng: np.random.Generator | None) -> dict:
        """Training view from `rng` (random start in its segment, crop, flip); eval view if None."""
        i, segment = divmod(int(index), self.clips_per_video)
        frames, _ = video.read_clip(
            self.files.paths[i], self.clip, rng, segment, self.clips_per_video
        )
        return {
            "pixels": transforms.make_view(frames, self.view, rng),
            "labels": _labels(self.files, i),
        }


@dataclasses.dataclass(frozen=True)
class ImageFiles(DecodedSource):
    """Images decoded with Pillow (any mode; converted to RGB)."""

    files: file_index.FileList
    view: transforms.ViewConfig

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, index: int) -> str:
        return self.files.paths[index]

    def load(self, index: int, rng: np.random.Generator | None) -> dict:
        """Training view from `rng` (random-resized crop, flip); eval view (centre crop) if None."""
        i = int(index)
        pixels = read_image(self.files.paths[i])
        return {
            "pixels": transforms.make_view(pixels, self.view, rng),
            "labels": _labels(self.files, i),
        }


def read_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] pixels of an image file. Raises BadExample."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise BadExample(path, f"cannot decode as an image ({type(e).__name__}: {e})") from e


def video_files_source(d: Mapping[str, Any], split: str) -> VideoFiles:
    path, key = split_path(d, split)
    return VideoFiles(
        files=file_index.list_files(path, video.VIDEO_EXTENSIONS, "video", key),
        clip=clip_spec(d),
        view=transforms.ViewConfig.from_data_config(d),
        clips_per_video=int(d["clips_per_video"]),
    )


def image_files_source(d: Mapping[str, Any], split: str) -> ImageFiles:
    path, key = split_path(d, split)
    return ImageFiles(
        files=file_index.list_files(path, IMAGE_EXTENSIONS, "image", key),
        view=transforms.ViewConfig.from_data_config(d),
    )


def video_shape(d: Mapping[str, Any]) -> tuple[int, ...]:
    """(T, S, S, 3) of a video source's clips."""
    size = int(d["image_size"])
    return (int(d["num_frames"]), size, size, 3)


def image_shape(d: Mapping[str, Any]) -> tuple[int, ...]:
    """(S, S, 3) of an image source's examples."""
    size = int(d["image_size"])
    return (size, size, 3)
