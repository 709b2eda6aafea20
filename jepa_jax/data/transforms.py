"""Spatial views of decoded frames: random-resized crop + flip (train), centre crop (eval).

Frames stay uint8 end to end: crops are resampled with Pillow on uint8 and the result is uint8,
because the train step normalises on device (`models.inputs.normalize_pixels`, ImageNet
mean/std), which is cheaper than shipping float32 from the host. Every random draw comes from the
generator passed in, so a view is a pure function of (frames, generator state).

A video clip gets one crop box and one flip decision for all its frames (as the reference's
video transforms), so motion is not distorted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

# (top, left, height, width) of a crop box, in source pixels.
Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How examples are cropped: the resolved `config.data` crop keys.

    size: output side, pixels (square).
    scale: random-resized-crop area fraction range of the source (reference: (0.3, 1.0)).
    aspect: random-resized-crop aspect (width / height) range; sampled log-uniformly.
    flip: horizontal flip with probability 1/2 (train views only).
    eval_crop_fraction: eval view = the centred square of side `fraction * short side`, resized
      to `size` (the same as resizing the short side to size / fraction, then centre-cropping).
    """

    size: int
    scale: tuple[float, float] = (0.3, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    eval_crop_fraction: float = 0.875

    @classmethod
    def from_data_config(cls, d: Mapping[str, Any]) -> ViewConfig:
        """The view of a `config.data` block."""
        from jepa_jax.errors import ConfigError

        scale = tuple(float(s) for s in d["crop_scale"])
        aspect = tuple(float(a) for a in d["crop_aspect"])
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ConfigError(
                f"config.data.crop_scale={scale} is invalid: expected (min, max) with "
                f"0 < min <= max <= 1"
            )
        if not (len(aspect) == 2 and 0 < aspect[0] <= aspect[1]):
            raise ConfigError(
                f"config.data.crop_aspect={aspect} is invalid: expected (min, max) with "
                f"0 < min <= max"
            )
        fraction = float(d["eval_crop_fraction"])
        if not 0 < fraction <= 1:
            raise ConfigError(
                f"config.data.eval_crop_fraction={fraction} is invalid: expected a number in (0, 1]"
            )
        return cls(int(d["image_size"]), scale, aspect, bool(d["flip"]), fraction)


def random_resized_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float],
    aspect: tuple[float, float],
) -> Box:
    """torchvision's RandomResizedCrop box: area fraction ~ U(scale), aspect ~ logU(aspect).

    Up to 10 tries for a box that fits; then the largest centred box whose aspect is clamped to
    the range (torchvision's fallback).
    """
    area = height * width
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * ratio)))
        h = int(round(math.sqrt(target_area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < aspect[0]:
        w, h = width, int(round(width / aspect[0]))
    elif in_ratio > aspect[1]:
        h, w = height, int(round(height * aspect[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, fraction: float) -> Box:
    """The centred square of side `fraction * min(height, width)`."""
    side = max(1, int(round(min(height, width) * fraction)))
    return (height - side) // 2, (width - side) // 2, side, side


def crop_resize(frames: np.ndarray, box: Box, size: int, flip: bool = False) -> np.ndarray:
    """Crop `box` out of every frame and resize it to size x size (bilinear, antialiased).

    Args:
      frames: uint8 [T, H, W, 3] or [H, W, 3].
      box: (top, left, height, width) in source pixels.
      size: output side in pixels.
      flip: mirror left-right.
    Returns:
      uint8 [T, size, size, 3] or [size, size, 3].
    """
    single = frames.ndim == 3
    clip = frames[None] if single else frames
    top, left, h, w = box
    if (h, w) == (size, size):  # nothing to resample
        out = clip[:, top : top + h, left : left + w]
    else:
        out = _resize_each(clip, size, size, box=(left, top, left + w, top + h))
    if flip:
        out = out[:, :, ::-1]
    out = np.ascontiguousarray(out)
    return out[0] if single else out


def resize_short_side(frames: np.ndarray, side: int) -> np.ndarray:
    """Downscale uint8 [T, H, W, 3] so min(H, W) = side (aspect kept); smaller clips unchanged."""
    height, width = frames.shape[-3], frames.shape[-2]
    if min(height, width) <= side:
        return frames
    scale = side / min(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return _resize_each(frames, new_w, new_h)


def _resize_each(
    frames: np.ndarray, width: int, height: int, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Bilinear (antialiased) resize of each uint8 frame [T, H, W, 3], optionally of a
    (left, top, right, bottom) region only -> [T, height, width, 3]."""
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BILINEAR, box))
            for f in frames
        ]
    )


def make_view(frames: np.ndarray, view: ViewConfig, rng: np.random.Generator | None) -> np.ndarray:
    """Train view (random-resized crop, optional flip) when `rng` is given, else eval view.

    Args:
      frames: uint8 [T, H, W, 3] or [H, W, 3] (any H, W).
      view: crop settings.
      rng: the example's generator; None for the deterministic eval view.
    Returns:
      uint8 [T, size, size, 3] or [size, size, 3].
    """
    height, width = frames.shape[-3], frames.shape[-2]
    if rng is None:
        return crop_resize(
            frames, center_crop_box(height, width, view.eval_crop_fraction), view.size
        )
    box = random_resized_crop_box(rng, height, width, view.scale, view.aspect)
    flip = bool(view.flip and rng.random() < 0.5)
    return crop_resize(frames, box, view.size, flip)


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W] (grey) or [..., H, W, C] with C in {1, 3, 4} -> uint8 [..., H, W, 3]."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 4:  # drop alpha
        return np.ascontiguousarray(pixels[..., :3])
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    raise ValueError(f"expected 1, 3 or 4 channels, got pixels of shape {pixels.shape}")
