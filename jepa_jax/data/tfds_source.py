"""TFDS datasets as random-access sources: `tfds_images` and `tfds_video`.

Reads with `tfds.data_source(...)`, which needs the dataset prepared in ArrayRecord format in
`config.data.path` (the TFDS data dir; "" = TFDS's default, ~/tensorflow_datasets). Nothing is
downloaded at run time: prepare it beforehand, e.g.

  tfds build imagenette --file_format=array_record --data_dir=/data/tfds

Config (`config.data`): tfds_name ("name[/config][:version]"), train_split / test_split (TFDS
split names, slices allowed: "train[:90%]"), pixels_key (the image or video feature),
label_key (an int feature, or "" for none), plus the view keys (`data.transforms`) and, for
video, num_frames and frame_step (a clip of num_frames frames frame_step apart from a random
start; TFDS video has no frame rate, so data.fps must be 0).

Items: {"pixels": uint8 [S, S, 3] or [T, S, S, 3], "labels": {"label": int32 (or -1),
"record_index": int32}}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jepa_jax.data import transforms, video
from jepa_jax.data.file_index import NO_LABEL
from jepa_jax.data.file_sources import clip_spec
from jepa_jax.data.reading import BadExample, RecordSource
from jepa_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TfdsExamples(RecordSource):
    """A TFDS split; a decoded source (`data.reading`). `clip` is None for images."""

    name: str
    split: str
    records: Any  # tfds ArrayRecord data source
    pixels_key: str
    label_key: str
    view: transforms.ViewConfig
    clip: video.ClipSpec | None = None

    def describe(self, index: int) -> str:
        return f"tfds {self.name} {self.split} record {index}"

    def load(self, index: int, rng: np.random.Generator | None) -> dict:
        """Training view from `rng` (random clip start, crop, flip); eval view if None."""
        index = int(index)
        try:
            record = self.records[index]
            pixels = transforms.as_rgb(np.asarray(record[self.pixels_key]))
        except Exception as e:  # damaged record or undecodable image/video feature
            raise BadExample(self.describe(index), f"{type(e).__name__}: {e}") from e
        if self.clip is not None:
            try:
                idx = video.clip_indices(
                    len(pixels), self.clip.frame_step, self.clip.num_frames, rng
                )
            except ValueError as e:
                raise BadExample(self.describe(index), str(e)) from e
            pixels = pixels[idx]
        label = int(record[self.label_key]) if self.label_key else NO_LABEL
        return {
            "pixels": transforms.make_view(pixels, self.view, rng),
            "labels": {"label": np.int32(label), "record_index": np.int32(index)},
        }


def _open(d: Mapping[str, Any], split: str):
    from jepa_jax.startup import native_stderr_quieted

    with native_stderr_quieted():  # TensorFlow logs from C++ as it loads
        import tensorflow_datasets as tfds

    name = str(d["tfds_name"])
    if not name:
        raise ConfigError(
            "config.data.tfds_name is empty: expected a TFDS dataset name, e.g. 'imagenette'"
        )
    split_name = {"train": d["train_split"], "test": d["test_split"]}.get(split)
    if split_name is None:
        raise ConfigError(f"unknown split {split!r}; expected 'train' or 'test'")
    data_dir = str(d["path"]) or None
    try:
        records = tfds.data_source(name, split=split_name, data_dir=data_dir, download=False)
    except Exception as e:  # not found, not ArrayRecord, unknown split, ...
        raise ConfigError(
            f"cannot open TFDS dataset config.data.tfds_name={name!r} split {split_name!r} in "
            f"config.data.path={data_dir!r} without downloading ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); build it first with `tfds build "
            f"{name} --file_format=array_record --data_dir=...`"
        ) from e
    if not len(records):
        raise ConfigError(f"TFDS dataset {name!r} split {split_name!r} is empty")
    return name, split_name, records


def tfds_source(d: Mapping[str, Any], split: str, is_video: bool) -> TfdsExamples:
    """The TFDS source of a `config.data` block."""
    name, split_name, records = _open(d, split)
    clip = None
    if is_video:
        clip = clip_spec(d)
        if clip.fps > 0:
            raise ConfigError(
                f"config.data.fps={clip.fps} cannot be used with TFDS video (no frame rate is "
                f"stored); set data.fps=0 and use data.frame_step"
            )
    features = records[0]
    for key in (d["pixels_key"], d["label_key"]):
        if key and key not in features:
            raise ConfigError(
                f"TFDS dataset {name!r} has no feature {key!r} (config.data.pixels_key / "
                f"label_key); its features are {sorted(features)}"
            )
    return TfdsExamples(
        name=name,
        split=split_name,
        records=records,
        pixels_key=str(d["pixels_key"]),
        label_key=str(d["label_key"]),
        view=transforms.ViewConfig.from_data_config(d),
        clip=clip,
    )
