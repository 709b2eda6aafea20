"""What `configs/*.py` files compose on top of the schema (config_lib.base_config): the `:arg`
parser, the reference mask recipes, the V-JEPA video data recipe and the smoke-run shrink."""

from __future__ import annotations

import ast
from typing import Any

import ml_collections
from ml_collections import config_dict

from jepa_jax.errors import ConfigError


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """Parse `key=value,flag` from `--config=file.py:arg` into a typed ConfigDict.

    Each keyword of `spec` is a known key with its default; values are cast to the default's type
    (bools accept true/false/1/0; a bare `key` sets a bool to True). Unknown keys are an error.

    Example: parse_arg("data_dir=/mnt/k710,steps=100", data_dir="", steps=1000, runlocal=False)
    """
    out = ml_collections.ConfigDict(dict(spec))
    if not arg:
        return out
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key not in spec:
            raise ConfigError(f"unknown config argument {key!r}; expected one of {sorted(spec)}")
        default = spec[key]
        if not sep:
            if not isinstance(default, bool):
                raise ConfigError(f"config argument {key!r} needs a value ({key}=...)")
            out[key] = True
            continue
        raw = raw.strip()
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1")
            elif isinstance(default, int | float):
                value = type(default)(ast.literal_eval(raw))
            else:
                value = raw
        except (ValueError, SyntaxError) as e:
            raise ConfigError(
                f"config argument {key}={raw!r} is not a valid {type(default).__name__}"
            ) from e
        out[key] = value
    return out


def _mask_block(
    num_blocks: int, scale: float, max_temporal_keep: float = 1.0, full_complement: bool = False
) -> dict:
    """One multiblock3d mask group (masking.multiblock.BlockConfig's fields) with the token
    counts left to calibration."""
    return dict(
        num_blocks=num_blocks,
        spatial_scale=(scale, scale),
        aspect_ratio=(0.75, 1.5),
        temporal_scale=(1.0, 1.0),
        max_temporal_keep=max_temporal_keep,
        full_complement=full_complement,
        num_context=config_dict.placeholder(int),
        num_target=config_dict.placeholder(int),
    )


def vjepa_mask(count_quantile: float = 0.2, future: bool = False) -> ml_collections.ConfigDict:
    """V-JEPA multiblock3d: short-range (8 blocks at 0.15) and long-range (2 blocks at 0.7).

    future=True puts a "predict the future" group in place of the long-range blocks: its context
    is the first half of the clip's time steps less one block at 0.15 (all time steps), its
    target every other token (that block and the whole second half; V-JEPA 2's full_complement
    with max_temporal_keep 0.5). To predict where things will be, the context tokens must carry
    how they move, which a ViT's tokens otherwise need not (the predictor can compare them)."""
    groups = dict(short_range=_mask_block(8, 0.15))
    if future:
        groups["future"] = _mask_block(1, 0.15, max_temporal_keep=0.5, full_complement=True)
    else:
        groups["long_range"] = _mask_block(2, 0.7)
    return ml_collections.ConfigDict(
        dict(
            kind="multiblock3d",
            count_quantile=count_quantile,
            context_scale=(0.85, 1.0),  # unused by 3D masks; kept so every config has the key
            blocks=groups,
        )
    )


def image_mask(count_quantile: float = 0.2) -> ml_collections.ConfigDict:
    """V-JEPA 2.1's image mask (`img_mask`): multiblock3d, 10 blocks at spatial scale 0.15, on
    the one-frame token grid of images through the image tokenizer."""
    mask = vjepa_mask(count_quantile)
    short = mask.blocks.short_range
    short.num_blocks = 10
    mask.blocks = ml_collections.ConfigDict(dict(short_range=short.to_dict()))
    return mask


def ijepa_mask(count_quantile: float = 0.2) -> ml_collections.ConfigDict:
    """I-JEPA multi-block 2D: 4 target blocks (scale 0.15-0.2, aspect 0.75-1.5), 1 context block."""
    return ml_collections.ConfigDict(
        dict(
            kind="multiblock2d",
            count_quantile=count_quantile,
            context_scale=(0.85, 1.0),
            blocks=dict(
                target=dict(
                    num_blocks=4,
                    spatial_scale=(0.15, 0.2),
                    aspect_ratio=(0.75, 1.5),
                    temporal_scale=(1.0, 1.0),
                    max_temporal_keep=1.0,
                    num_context=config_dict.placeholder(int),
                    num_target=config_dict.placeholder(int),
                )
            ),
        )
    )


def vjepa_video_data(data: ml_collections.ConfigDict, videos: str, shards: str) -> None:
    """Set `data` to the V-JEPA recipe's clips from user videos (video_files source) or, when
    `shards` is given, from `jepa-jax prepare` shards (clip_shards): 16 frames 4 apart at 224 px,
    random-resized crop scale (0.3, 1.0) and aspect (0.75, 1.35), horizontal flip."""
    data.name = "clip_shards" if shards else "video_files"
    data.path = shards or videos
    data.num_frames = 16
    data.frame_step = 4
    data.image_size = 224
    data.crop_scale = (0.3, 1.0)
    data.crop_aspect = (0.75, 1.35)
    data.flip = True
    data.num_workers = 8  # PyAV decoding needs processes to keep up with an accelerator


def shrink_to_smoke_run(c: ml_collections.ConfigDict, patch_size: int = 4) -> None:
    """Make `c` a seconds-long CPU run (the `:runlocal` config argument): 4 steps of batch 8,
    a 2-block ViT-tiny encoder (patch `patch_size`) and a 1-block predictor, data read in this
    process, a log line every step and a checkpoint every 2."""
    c.total_steps = 4
    c.batch_size = 8
    c.data.num_workers = 0
    c.data.num_threads = 1
    c.model.encoder.update(size="tiny", depth=2, patch_size=patch_size)
    c.model.predictor.update(width=32, depth=1, num_heads=2)
    c.optim.warmup_steps = 2
    c.log_every = 1
    c.checkpoint_every = 2
