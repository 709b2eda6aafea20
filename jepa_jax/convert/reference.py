"""The PyTorch reference ViT layout (I-JEPA, V-JEPA and V-JEPA 2 `VisionTransformer`) <-> our
encoder params, both directions.

Reference keys (after the DDP `module.` / wrapper `backbone.` prefixes are stripped):

  patch_embed.proj.weight  [D, C, t, p, p] Conv3d (video) or [D, C, p, p] Conv2d (images)
  patch_embed.proj.bias    [D]
  pos_embed                [1, N, D] fixed sin-cos buffer (absent under V-JEPA 2's RoPE)
  blocks.{i}.norm1.{weight,bias}, blocks.{i}.norm2.{weight,bias}
  blocks.{i}.attn.qkv.{weight [3D, D], bias [3D]}, blocks.{i}.attn.proj.{weight [D, D], bias}
  blocks.{i}.mlp.fc1.{weight [M, D], bias}, blocks.{i}.mlp.fc2.{weight [D, M], bias}
  norm.{weight,bias}        (V-JEPA 2.1 instead: norms_block.{i}.{weight,bias}, one per
                            deep-supervision level, the last the final norm; ours norm_level{k}
                            for block k, and norm)
  patch_embed_img.proj.{weight [D, C, 1, p, p], bias}   V-JEPA 2.1's image tokenizer (ours
                            patch_embed_img, image_tokenizer=True)
  img_mod_embed, video_mod_embed [1, 1, D]   V-JEPA 2.1's modality vectors (ours
                            modality/{img,video}_mod_embed [D], modality_embedding=True)

Ours: patch_embed is a Dense on patches flattened as (t, p, p, C) (== the convolution, see
models/vit.py), so its kernel [P, D] is the conv weight permuted and reshaped; the qkv kernel is
[D, 3, H, Dh] (qkv.weight.T reshaped), the proj kernel [H, Dh, D]; Dense kernels are torch
weights transposed; LayerNorm weight/bias are scale/bias.

The stored `pos_embed` is not imported (ours is computed on the fly) but is compared with our
tables, which decides the layout: I-JEPA's 2D table puts the column channels first
(`pos_embed="sincos_wh"`), V-JEPA's 3D table may or may not use `uniform_power`. A table that
matches none (learned or interpolated embeddings) is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.rope import ROPE_EMBEDS
from jepa_jax.models.vit import ENCODER_PRESETS, reference_output_levels

# DDP, the V-JEPA mask wrappers and torch.compile prefix parameter names with these.
PREFIXES = ("module.", "backbone.", "_orig_mod.")
# Entries of a reference training checkpoint that hold an encoder, the downstream one first
# (V-JEPA 2.1's distilled ViT-B / ViT-L checkpoints name their EMA encoder `ema_encoder`).
ENCODER_ENTRIES = ("target_encoder", "ema_encoder", "encoder")
POS_EMBED_ATOL = 1e-4
MODALITIES = ("img", "video")  # V-JEPA 2.1's {m}_mod_embed vectors
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove any leading `module.` / `backbone.` / `_orig_mod.` from every key."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def encoder_state_dict(checkpoint: Mapping[str, Any], entry: str | None = None) -> dict[str, Any]:
    """The encoder's state dict from a loaded reference checkpoint (keys prefix-stripped).

    Args:
      checkpoint: a `.pth.tar` / `.pt` dict ({"encoder", "target_encoder", "predictor", "opt",
        ...}) or directly an encoder state dict.
      entry: which entry to read; default "target_encoder" (the EMA encoder used downstream),
        else "ema_encoder" (V-JEPA 2.1's distilled models), else "encoder".
    """
    if any(isinstance(k, str) and k.endswith("patch_embed.proj.weight") for k in checkpoint):
        if entry is not None:
            raise ConfigError(f"checkpoint is a bare state dict; it has no {entry!r} entry")
        return strip_prefixes(checkpoint)
    names = (entry,) if entry else ENCODER_ENTRIES
    for name in names:
        if name in checkpoint:
            return strip_prefixes(checkpoint[name])
    raise ConfigError(
        f"checkpoint has no {' or '.join(repr(n) for n in names)} entry; its entries are "
        f"{sorted(map(str, checkpoint))}"
    )


def _np(x: Any) -> np.ndarray:
    """A float32 numpy copy of an array-like (numpy, jax or a CPU torch tensor)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def _need(sd: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in sd:
        raise ConfigError(f"state dict has no {key!r}: not a reference ViT encoder")
    return _np(sd[key])


def block_count(sd: Mapping[str, Any]) -> int:
    """Number of `blocks.{i}` in a reference state dict (checked to be 0..n-1)."""
    ids = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))})
    if not ids or ids != list(range(len(ids))):
        raise ConfigError(f"state dict blocks are {ids[:5]}...; expected blocks.0 .. blocks.N-1")
    return len(ids)


def default_num_heads(width: int, rope: bool) -> int:
    """Heads of the reference preset with this width (V-JEPA 2's RoPE giant has 22)."""
    if rope and width == ENCODER_PRESETS["giant_xformers"]["width"]:
        return ENCODER_PRESETS["giant_xformers"]["num_heads"]
    for name, preset in ENCODER_PRESETS.items():
        if preset["width"] == width and name != "giant_xformers":
            return preset["num_heads"]
    raise ConfigError(
        f"cannot tell the number of attention heads of a width-{width} encoder (no reference "
        f"preset has that width); give it explicitly (num_heads)"
    )


def check_size(cfg: EncoderConfig, size: str | None) -> None:
    """ConfigError if the converted encoder is not the preset `size` the user asked for."""
    if size is None:
        return
    if size not in ENCODER_PRESETS:
        raise ConfigError(
            f"unknown encoder size {size!r}; expected one of {sorted(ENCODER_PRESETS)}"
        )
    want = ENCODER_PRESETS[size]
    got = dict(width=cfg.width, depth=cfg.depth, mlp_dim=cfg.mlp_dim)
    diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    if diff:
        detail = ", ".join(f"{k} {g} (expected {w})" for k, (g, w) in diff.items())
        raise ConfigError(f"checkpoint encoder is not a ViT-{size}: it has {detail}")


def match_sincos_layout(table: np.ndarray, grid: tuple[int, ...]) -> tuple[str, bool] | None:
    """(pos_embed, uniform_power) whose sin-cos table equals `table` [N, D] on `grid`, or None."""
    dim = table.shape[-1]
    if len(grid) == 2:
        candidates = [("sincos", True, False), ("sincos_wh", True, True)]
    else:
        candidates = [("sincos", True, False), ("sincos", False, False)]
    for name, uniform_power, w_first in candidates:
        ours = sincos_table(dim, grid, uniform_power, w_first)
        if ours.shape == table.shape and np.allclose(ours, table, atol=POS_EMBED_ATOL):
            return name, uniform_power
    return None


def _match_pos_embed(
    table: np.ndarray, is_video: bool, tubelet: int, num_frames: int | None
) -> tuple[str, bool, tuple[int, ...]]:
    """(pos_embed, uniform_power, token grid) of a stored sin-cos table [N, D].

    The grid is square in space; for video its length is num_frames / tubelet when given, else
    every length that factors N is tried (only the true grid reproduces the table).
    """
    n = table.shape[0]
    if not is_video:
        lengths = [None]
    elif num_frames is not None:
        lengths = [num_frames // tubelet]
    else:
        lengths = [t for t in range(1, n + 1) if n % t == 0]
    tried = []
    for t in lengths:
        per_frame = n // (t or 1)
        side = math.isqrt(per_frame)
        if side * side != per_frame or (t is not None and t * per_frame != n):
            continue
        grid = (side, side) if t is None else (t, side, side)
        tried.append(grid)
        layout = match_sincos_layout(table, grid)
        if layout is not None:
            return layout[0], layout[1], grid
    given = "" if num_frames is None else f" (num_frames={num_frames} given)"
    raise ConfigError(
        f"pos_embed {table.shape} matches none of the fixed sin-cos layouts (V-JEPA 3D with or "
        f"without uniform_power, V-JEPA or I-JEPA 2D) on the grids {tried}{given}: learned or "
        f"interpolated position embeddings cannot be imported"
    )


def infer_encoder_config(
    sd: Mapping[str, Any],
    *,
    num_frames: int | None = None,
    image_size: int | None = None,
    num_heads: int | None = None,
    size: str | None = None,
    gelu_approximate: bool = False,
) -> EncoderConfig:
    """The encoder a reference state dict describes.

    Width, depth, MLP width, patch and tubelet sizes come from the weights; the positional
    scheme from `pos_embed` (absent: RoPE). Heads come from `num_heads` or the reference preset
    of that width. The input size comes from `pos_embed` when there is one (`image_size` must
    then agree; the clip length is found from the table unless `num_frames` is given), else
    from `image_size` and `num_frames` (default 16).

    Raises:
      ConfigError: missing keys, a layout we cannot reproduce, or a size other than `size`.
    """
    proj = _need(sd, "patch_embed.proj.weight")
    width = proj.shape[0]
    if proj.ndim == 5:  # Conv3d [D, C, t, p, p]
        is_video, tubelet, patch = True, proj.shape[2], proj.shape[3]
    elif proj.ndim == 4:  # Conv2d [D, C, p, p]
        is_video, tubelet, patch = False, 1, proj.shape[2]
    else:
        raise ConfigError(f"patch_embed.proj.weight has shape {proj.shape}; expected a conv weight")
    depth = block_count(sd)
    mlp_dim = _need(sd, "blocks.0.mlp.fc1.weight").shape[0]
    rope = "pos_embed" not in sd
    heads = num_heads or default_num_heads(width, rope)
    if rope:
        if image_size is None:
            raise ConfigError(
                "a RoPE (V-JEPA 2 / 2.1) checkpoint stores no input size; give image_size"
            )
        pos_embed, uniform_power, num_frames = "rope", True, num_frames or 16
    else:
        table = _np(sd["pos_embed"]).reshape(-1, width)
        pos_embed, uniform_power, grid = _match_pos_embed(table, is_video, tubelet, num_frames)
        side = grid[-1]
        if image_size is not None and image_size != side * patch:
            raise ConfigError(
                f"image_size {image_size} does not match the checkpoint's pos_embed, which is "
                f"for {side * patch}x{side * patch} inputs ({side}x{side} patches of {patch})"
            )
        image_size = side * patch
        num_frames = grid[0] * tubelet if is_video else None
    input_shape = (
        (num_frames, image_size, image_size, 3) if is_video else (image_size, image_size, 3)
    )
    # V-JEPA 2.1 stores one norm per deep-supervision level (norms_block.i) and no final norm;
    # its level indices are not in the weights but fixed per depth.
    num_norms = sum(1 for k in sd if k.startswith("norms_block.") and k.endswith(".weight"))
    levels = reference_output_levels(depth) if num_norms else ()
    reference_grid = 0
    if rope and num_norms:  # V-JEPA 2.1: fixed (interleaved) RoPE, positions interpolated
        pos_embed, reference_grid = "rope_interleaved", 256 // patch
    if num_norms and num_norms != len(levels):
        raise ConfigError(
            f"state dict has {num_norms} norms_block entries; V-JEPA 2.1 at depth {depth} has "
            f"{len(levels)} levels {levels}"
        )
    image_tokenizer = "patch_embed_img.proj.weight" in sd
    if image_tokenizer and not is_video:
        raise ConfigError("state dict has patch_embed_img but an image (Conv2d) patch_embed")
    cfg = EncoderConfig(
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=mlp_dim,
        patch_size=patch,
        tubelet_size=tubelet,
        input_shape=input_shape,
        uniform_power=uniform_power,
        pos_embed=pos_embed,
        gelu_approximate=gelu_approximate,
        output_levels=levels,
        rope_reference_grid=reference_grid,
        image_tokenizer=image_tokenizer,
        modality_embedding="video_mod_embed" in sd,
    )
    check_size(cfg, size)
    return cfg


def _patch_kernel_to_conv(kernel: np.ndarray, cfg: EncoderConfig, tubelet: int) -> np.ndarray:
    """Our patch kernel [P, D] -> torch conv weight [D, C, (tubelet,) p, p]."""
    p, d = cfg.patch_size, cfg.width
    if cfg.is_video:
        return kernel.reshape(tubelet, p, p, 3, d).transpose(4, 3, 0, 1, 2)
    return kernel.reshape(p, p, 3, d).transpose(3, 2, 0, 1)


def _conv_to_patch_kernel(weight: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """torch conv weight [D, C, (t,) p, p] -> our patch kernel [P, D]."""
    if weight.ndim == 5:
        return weight.transpose(2, 3, 4, 1, 0).reshape(-1, weight.shape[0])
    return weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])


def _patch_embed_names(cfg: EncoderConfig) -> list[tuple[str, str, int]]:
    """(our param name, reference key prefix, tubelet) of the encoder's patch embeddings: the
    video / image one, and V-JEPA 2.1's tubelet-1 image tokenizer when it has one."""
    names = [("patch_embed", "patch_embed", cfg.tubelet_size if cfg.is_video else 1)]
    if cfg.image_tokenizer:
        names.append(("patch_embed_img", "patch_embed_img", 1))
    return names


def _final_norm_names(cfg: EncoderConfig) -> list[tuple[str, str]]:
    """(our param name, reference key prefix) of the encoder's output norms: `norm` <-> `norm`,
    or with V-JEPA 2.1 levels `norm_level<k>` <-> `norms_block.<i>` per inner level and the last
    level's `norm` <-> the last `norms_block`."""
    if not cfg.output_levels:
        return [("norm", "norm")]
    names = [f"norm_level{k}" for k in cfg.output_levels[:-1]] + ["norm"]
    return [(ours, f"norms_block.{i}") for i, ours in enumerate(names)]


def dense_from_reference(get: Callable[[str], np.ndarray], key: str) -> dict[str, np.ndarray]:
    """Our Dense params of the reference Linear `key` (weight [out, in] transposed)."""
    return {"kernel": get(f"{key}.weight").T, "bias": get(f"{key}.bias")}


def norm_from_reference(get: Callable[[str], np.ndarray], key: str) -> dict[str, np.ndarray]:
    """Our LayerNorm params of the reference LayerNorm `key`."""
    return {"scale": get(f"{key}.weight"), "bias": get(f"{key}.bias")}


def dense_to_reference(key: str, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The reference Linear `key` of our Dense params."""
    return {f"{key}.weight": _np(p["kernel"]).T, f"{key}.bias": _np(p["bias"])}


def norm_to_reference(key: str, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The reference LayerNorm `key` of our LayerNorm params."""
    return {f"{key}.weight": _np(p["scale"]), f"{key}.bias": _np(p["bias"])}


def blocks_from_reference(
    get: Callable[[str], np.ndarray], prefix: str, depth: int, width: int, heads: int
) -> dict[str, Any]:
    """Our `blocks_{i}` params of a Transformer from the reference's `{prefix}.{i}` blocks
    (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2); `get(key)` reads a weight."""
    dh = width // heads
    dense = lambda key: dense_from_reference(get, key)
    norm = lambda key: norm_from_reference(get, key)
    blocks = {}
    for i in range(depth):
        b = f"{prefix}.{i}"
        qkv_w, qkv_b = get(f"{b}.attn.qkv.weight"), get(f"{b}.attn.qkv.bias")
        proj_w = get(f"{b}.attn.proj.weight")
        blocks[f"blocks_{i}"] = {
            "norm1": norm(f"{b}.norm1"),
            "attn": {
                "qkv": {
                    "kernel": qkv_w.T.reshape(width, 3, heads, dh),
                    "bias": qkv_b.reshape(3, heads, dh),
                },
                "proj": {
                    "kernel": proj_w.T.reshape(heads, dh, width),
                    "bias": get(f"{b}.attn.proj.bias"),
                },
            },
            "norm2": norm(f"{b}.norm2"),
            "mlp": {"fc1": dense(f"{b}.mlp.fc1"), "fc2": dense(f"{b}.mlp.fc2")},
        }
    return blocks


def blocks_to_reference(
    transformer: Mapping[str, Any], prefix: str, depth: int, width: int
) -> dict[str, np.ndarray]:
    """The reference's `{prefix}.{i}.*` weights of our unscanned Transformer params."""
    out: dict[str, np.ndarray] = {}
    for i in range(depth):
        blk, b = transformer[f"blocks_{i}"], f"{prefix}.{i}"
        for name in ("norm1", "norm2"):
            out.update(norm_to_reference(f"{b}.{name}", blk[name]))
        out[f"{b}.attn.qkv.weight"] = _np(blk["attn"]["qkv"]["kernel"]).reshape(width, -1).T
        out[f"{b}.attn.qkv.bias"] = _np(blk["attn"]["qkv"]["bias"]).reshape(-1)
        out[f"{b}.attn.proj.weight"] = _np(blk["attn"]["proj"]["kernel"]).reshape(-1, width).T
        out[f"{b}.attn.proj.bias"] = _np(blk["attn"]["proj"]["bias"])
        for name in ("fc1", "fc2"):
            out.update(dense_to_reference(f"{b}.mlp.{name}", blk["mlp"][name]))
    return out


def reference_to_params(sd: Mapping[str, Any], cfg: EncoderConfig) -> dict[str, Any]:
    """Our unscanned encoder params (float32 numpy) from a prefix-stripped reference state dict.

    Every weight of the reference encoder is used; a left-over key other than `pos_embed`
    (e.g. a classification head) is an error, so nothing is silently dropped.
    """
    d, h = cfg.width, cfg.num_heads
    used = {"pos_embed"}

    def get(key: str) -> np.ndarray:
        used.add(key)
        return _need(sd, key)

    blocks = blocks_from_reference(get, "blocks", cfg.depth, d, h)
    params = {
        ours: {
            "kernel": _conv_to_patch_kernel(get(f"{theirs}.proj.weight"), cfg),
            "bias": get(f"{theirs}.proj.bias"),
        }
        for ours, theirs, _ in _patch_embed_names(cfg)
    }
    params["transformer"] = blocks
    params.update(
        {ours: norm_from_reference(get, theirs) for ours, theirs in _final_norm_names(cfg)}
    )
    if cfg.modality_embedding:
        params["modality"] = {
            f"{m}_mod_embed": get(f"{m}_mod_embed").reshape(d) for m in MODALITIES
        }
    leftover = sorted(set(sd) - used)
    if leftover:
        raise ConfigError(
            f"state dict has {len(leftover)} keys a reference ViT encoder does not, e.g. "
            f"{leftover[:3]}: not (only) an encoder"
        )
    return params


def params_to_reference(params: Mapping[str, Any], cfg: EncoderConfig) -> dict[str, np.ndarray]:
    """Reference-layout state dict (float32 numpy, no prefixes) of our unscanned encoder params.

    Includes `pos_embed` [1, N, D] for the config's input grid when positions are sin-cos, so
    the dict loads strictly into the reference `VisionTransformer` of that size.
    """
    d = cfg.width
    out: dict[str, np.ndarray] = {}
    for ours, theirs, tubelet in _patch_embed_names(cfg):
        kernel = _np(params[ours]["kernel"])
        out[f"{theirs}.proj.weight"] = _patch_kernel_to_conv(kernel, cfg, tubelet)
        out[f"{theirs}.proj.bias"] = _np(params[ours]["bias"])
    if cfg.modality_embedding:
        for m in MODALITIES:
            out[f"{m}_mod_embed"] = _np(params["modality"][f"{m}_mod_embed"]).reshape(1, 1, d)
    if cfg.pos_embed not in ROPE_EMBEDS:
        from jepa_jax.models.vit import token_grid

        grid = token_grid((1,) + cfg.input_shape, cfg.patch_size, cfg.tubelet_size)
        table = sincos_table(d, grid, cfg.uniform_power, cfg.pos_embed == "sincos_wh")
        out["pos_embed"] = table[None]

    out.update(blocks_to_reference(params["transformer"], "blocks", cfg.depth, d))
    for ours, theirs in _final_norm_names(cfg):
        out.update(norm_to_reference(theirs, params[ours]))
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def load_torch_checkpoint(path: str) -> Mapping[str, Any]:
    """torch.load a reference `.pth.tar` / `.pt` on the CPU (needs the optional torch).

    Raises:
      ConfigError: missing file, or torch not installed.
    """
    import os

    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint file not found: {path!r}")
    try:
        import torch
    except ImportError as e:
        raise ConfigError(
            f"reading {path!r} needs PyTorch (pip install 'jepa-jax[parity]' or torch); "
            f"safetensors files need no torch"
        ) from e
    return torch.load(path, map_location="cpu", weights_only=True)
