"""Registers every data source under its `config.data.name` (jepa_jax.data.registry).

moving_shapes built-in procedural videos of a moving shape (synthetic; scene_style below)
shapes        built-in procedural still images of a shape (synthetic)
video_files   video files from a folder or index file, decoded with PyAV (file_sources)
image_folder  image files from a folder (class subfolders or flat) or index file (file_sources)
clip_shards   ArrayRecord shards written by `jepa-jax prepare` (clip_shards)
tfds_images   a TFDS image dataset in ArrayRecord format (tfds_source)
tfds_video    a TFDS video dataset in ArrayRecord format (tfds_source)
moving_mnist  Moving MNIST generated from a local MNIST file (moving_mnist)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jepa_jax.data import clip_shards, file_sources, moving_mnist, synthetic, tfds_source
from jepa_jax.data.registry import register_source
from jepa_jax.errors import need


def scene_style(d: Mapping[str, Any]) -> synthetic.SceneStyle:
    """The built-in shapes sets' scene richness from the data config (defaults: a plain scene)."""
    distractors = int(d.get("distractors", 0))
    need(distractors >= 0, "data.distractors", distractors, "an integer >= 0")
    return synthetic.SceneStyle(distractors=distractors, texture=bool(d.get("texture", False)))


def _shapes_args(d: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The arguments both built-in shapes sets take from the data config."""
    return dict(
        num_examples=int(d["num_examples"]),
        size=int(d["image_size"]),
        seed=int(d["seed"]),
        split=split,
        style=scene_style(d),
    )


register_source(
    "moving_shapes",
    lambda d, split: synthetic.MovingShapesVideo(
        num_frames=int(d["num_frames"]), **_shapes_args(d, split)
    ),
    lambda d: (int(d["num_frames"]), int(d["image_size"]), int(d["image_size"]), 3),
)
register_source(
    "shapes",
    lambda d, split: synthetic.ShapesImages(**_shapes_args(d, split)),
    lambda d: (int(d["image_size"]), int(d["image_size"]), 3),
)


register_source("video_files", file_sources.video_files_source, file_sources.video_shape)
register_source("image_folder", file_sources.image_files_source, file_sources.image_shape)
register_source("clip_shards", clip_shards.clip_shards_source, file_sources.video_shape)
register_source(
    "tfds_images",
    lambda d, split: tfds_source.tfds_source(d, split, is_video=False),
    file_sources.image_shape,
)
register_source(
    "tfds_video",
    lambda d, split: tfds_source.tfds_source(d, split, is_video=True),
    file_sources.video_shape,
)
register_source("moving_mnist", moving_mnist.moving_mnist_source, file_sources.video_shape)
