"""Evaluation views: several temporal clips and spatial crops of each video (or image).

As in the V-JEPA evaluations, a video longer than the encoder's clip is covered by `num_clips`
evenly spaced clips, and each clip by `num_views` spatial crops; probes score every view and
average the class probabilities per video. Crops are evenly spaced from the top-left to the
bottom-right corner (a single view is the centre crop). The reference's three crops slide along
the longer side of a frame resized to the crop height; on square frames a diagonal moves along
both axes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jepa_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """How to cut views: clip length (video only) and count, crop side and count."""

    clip_frames: int | None  # None for images
    num_clips: int
    crop_size: int
    num_views: int


def evenly_spaced(total: int, length: int, count: int) -> list[int]:
    """`count` start offsets of windows of `length` in [0, total), first at 0, last at the end
    (a single window is centred)."""
    if count == 1:
        return [(total - length) // 2]
    return [int(round(i * (total - length) / (count - 1))) for i in range(count)]


def check_views(spec: ViewSpec, example_shape: tuple[int, ...], patch: int, tubelet: int) -> None:
    """ConfigError naming the key if views cannot be cut from examples of `example_shape`
    ((T, H, W, 3) or (H, W, 3)) or do not fit the encoder's patch and tubelet sizes."""
    h, w = example_shape[-3], example_shape[-2]
    if spec.num_clips < 1 or spec.num_views < 1:
        raise ConfigError(
            f"config.probe.num_clips={spec.num_clips} / num_views={spec.num_views} are invalid: "
            f"expected integers >= 1"
        )
    if not (0 < spec.crop_size <= min(h, w)) or spec.crop_size % patch:
        raise ConfigError(
            f"config.probe.crop_size={spec.crop_size} is invalid: expected a multiple of the "
            f"patch size {patch} no larger than the {h}x{w} frames of config.data"
        )
    if len(example_shape) == 4:
        t = example_shape[0]
        if (
            spec.clip_frames is None
            or not (0 < spec.clip_frames <= t)
            or spec.clip_frames % tubelet
        ):
            raise ConfigError(
                f"config.probe.clip_frames={spec.clip_frames} is invalid: expected a multiple of "
                f"the tubelet size {tubelet} no larger than config.data.num_frames={t}"
            )
    elif spec.num_clips != 1:
        raise ConfigError(
            f"config.probe.num_clips={spec.num_clips} is invalid for images: expected 1"
        )


def cut_views(pixels: np.ndarray, spec: ViewSpec) -> np.ndarray:
    """All views of every example.

    Args:
      pixels: uint8 [N, T, H, W, 3] video or [N, H, W, 3] images.

    Returns:
      uint8 [N, V, (clip_frames,) crop, crop, 3] with V = num_clips * num_views, clip-major.
    """
    video = pixels.ndim == 5
    h, w = pixels.shape[-3], pixels.shape[-2]
    c = spec.crop_size
    ys = evenly_spaced(h, c, spec.num_views)
    xs = evenly_spaced(w, c, spec.num_views)
    if video:
        starts = evenly_spaced(pixels.shape[1], spec.clip_frames, spec.num_clips)
        clips = [pixels[:, s : s + spec.clip_frames] for s in starts]
    else:
        clips = [pixels]
    views = [
        clip[..., y : y + c, x : x + c, :] for clip in clips for y, x in zip(ys, xs, strict=True)
    ]
    return np.stack(views, axis=1)
