"""Registers the file-backed sources under their `config.data.name`s.

video_files   video files from a folder or index file, decoded with PyAV (file_sources)
image_folder  image files from a folder (class subfolders or flat) or index file (file_sources)
clip_shards   ArrayRecord shards written by `jepa-jax prepare` (clip_shards)
tfds_images   a TFDS image dataset in ArrayRecord format (tfds_source)
tfds_video    a TFDS video dataset in ArrayRecord format (tfds_source)
moving_mnist  Moving MNIST generated from a local MNIST file (moving_mnist)
"""

from __future__ import annotations

from jepa_jax.data import clip_shards, file_sources, moving_mnist, tfds_source
from jepa_jax.data.pipeline import register_source

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
