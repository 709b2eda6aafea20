"""The PyTorch reference predictor layout (V-JEPA, V-JEPA 2, V-JEPA 2.1
`VisionTransformerPredictor`; I-JEPA's) <-> our `Predictor` params, both directions.

Reference keys (prefixes stripped as for the encoder):

  predictor_embed.{weight,bias}           Linear(D -> d); V-JEPA 2.1 with L levels instead
  predictor_embed.0.*, predictor_embed.2.*  Linear(L*D -> D), GELU, Linear(D -> d) (ours:
                                          fusion, embed)
  mask_tokens.{i} [1, 1, d]               one per mask config (I-JEPA: one `mask_token`)
  predictor_pos_embed [1, N, d]           fixed sin-cos buffer (absent under RoPE); checked
                                          against our table, not imported
  img_mod_embed, video_mod_embed [1, 1, d]  V-JEPA 2.1's modality vectors (ours modality/*)
  predictor_blocks.{i}.*                  as the encoder's blocks (ours transformer/blocks_i)
  predictor_norm.{weight,bias}            the final norm, shared by both heads (ours norm)
  predictor_proj.{weight,bias}            Linear(d -> L*D) (ours proj)
  predictor_proj_context.{weight,bias}    V-JEPA 2.1's context head (ours context_proj)

The reference sorts [context | targets] by position before its blocks; under RoPE and without
a causal mask that changes nothing (models/predictor.py), so the weights are all there is.
An export describes a predictor by the `Predictor` module's fields (PREDICTOR_FIELDS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jepa_jax.convert.reference import (
    MODALITIES,
    POS_EMBED_ATOL,
    _np,
    blocks_from_reference,
    blocks_to_reference,
    dense_from_reference,
    dense_to_reference,
    norm_from_reference,
    norm_to_reference,
    strip_prefixes,
)
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.predictor import Predictor
from jepa_jax.models.rope import ROPE_EMBEDS

PREDICTOR_ENTRY = "predictor"
_BLOCK_KEY = re.compile(r"^predictor_blocks\.(\d+)\.")
_MASK_TOKEN_KEY = re.compile(r"^mask_tokens\.(\d+)$")


# The `Predictor` fields an export stores (predictor_config.json): all that shapes its weights
# and its function, so the module can be rebuilt without a training config.
PREDICTOR_FIELDS = (
    "width",
    "depth",
    "num_heads",
    "mlp_dim",
    "out_width",
    "num_mask_tokens",
    "uniform_power",
    "pos_embed",
    "context_head",
    "in_levels",
    "rope_reference_grid",
    "modality_embedding",
    "gelu_approximate",
)


def predictor_to_json(predictor: Predictor) -> dict[str, Any]:
    """The PREDICTOR_FIELDS of a predictor module."""
    return {f: getattr(predictor, f) for f in PREDICTOR_FIELDS}


def predictor_from_json(data: Mapping[str, Any], where: str) -> Predictor:
    """The predictor module `predictor_to_json` described; ConfigError naming `where` for
    unknown or missing fields."""
    unknown = sorted(set(data) - set(PREDICTOR_FIELDS))
    missing = sorted(n for n in ("width", "depth", "num_heads", "out_width") if n not in data)
    if unknown or missing:
        raise ConfigError(f"{where}: unknown fields {unknown}, missing fields {missing}")
    return Predictor(**data)


def predictor_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The prefix-stripped `predictor` entry of a reference training checkpoint, or None."""
    entry = checkpoint.get(PREDICTOR_ENTRY)
    return None if entry is None else strip_prefixes(entry)


def _need(sd: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in sd:
        raise ConfigError(f"predictor state dict has no {key!r}: not a reference JEPA predictor")
    return _np(sd[key])


def _mask_token_keys(sd: Mapping[str, Any]) -> list[str]:
    """`mask_tokens.0 ..` in order, or I-JEPA's single `mask_token`."""
    ids = sorted(int(m.group(1)) for k in sd if (m := _MASK_TOKEN_KEY.match(k)))
    if ids:
        if ids != list(range(len(ids))):
            raise ConfigError(f"predictor mask_tokens are {ids}; expected mask_tokens.0 .. N-1")
        return [f"mask_tokens.{i}" for i in ids]
    if "mask_token" in sd:
        return ["mask_token"]
    raise ConfigError("predictor state dict has no mask_tokens: not a reference JEPA predictor")


def infer_predictor(
    sd: Mapping[str, Any], encoder: EncoderConfig, num_heads: int | None = None
) -> Predictor:
    """The predictor a reference state dict describes, beside its encoder `encoder`.

    Widths, depth and levels come from the weights; positions follow the encoder (RoPE, or the
    stored sin-cos table, which must be ours); heads come from `num_heads`, else 12 under RoPE
    (V-JEPA 2 / 2.1) and the encoder's heads otherwise (I-JEPA, V-JEPA).
    """
    levels = "predictor_embed.0.weight" in sd
    first = _need(sd, "predictor_embed.0.weight" if levels else "predictor_embed.weight")
    width = (_need(sd, "predictor_embed.2.weight") if levels else first).shape[0]
    in_levels = first.shape[1] // encoder.width if levels else 1
    if first.shape[1] != in_levels * encoder.width:
        raise ConfigError(
            f"predictor_embed reads {first.shape[1]} features; the encoder has width "
            f"{encoder.width}: the predictor does not belong to this encoder"
        )
    ids = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))})
    if not ids or ids != list(range(len(ids))):
        raise ConfigError(f"predictor blocks are {ids[:5]}...; expected predictor_blocks.0 .. N-1")
    rope = encoder.pos_embed in ROPE_EMBEDS
    spec = Predictor(
        width=width,
        depth=len(ids),
        num_heads=num_heads or (12 if rope else encoder.num_heads),
        mlp_dim=_need(sd, "predictor_blocks.0.mlp.fc1.weight").shape[0],
        out_width=_need(sd, "predictor_proj.weight").shape[0],
        num_mask_tokens=len(_mask_token_keys(sd)),
        uniform_power=encoder.uniform_power,
        pos_embed=encoder.pos_embed,
        context_head="predictor_proj_context.weight" in sd,
        in_levels=in_levels,
        rope_reference_grid=encoder.rope_reference_grid,
        modality_embedding="video_mod_embed" in sd,
        gelu_approximate=encoder.gelu_approximate,
    )
    if width % spec.num_heads:
        raise ConfigError(f"predictor width {width} is not divisible by {spec.num_heads} heads")
    if "predictor_pos_embed" in sd:
        _check_pos_embed(_np(sd["predictor_pos_embed"]).reshape(-1, width), spec, encoder)
    return spec


def _grid(encoder: EncoderConfig) -> tuple[int, ...]:
    from jepa_jax.models.vit import token_grid

    return token_grid((1,) + encoder.input_shape, encoder.patch_size, encoder.tubelet_size)


def _check_pos_embed(table: np.ndarray, spec: Predictor, encoder: EncoderConfig) -> None:
    """ConfigError unless the stored predictor table is our sin-cos table on the encoder's grid."""
    if spec.pos_embed in ROPE_EMBEDS:
        raise ConfigError("predictor stores a pos_embed but its encoder uses RoPE")
    ours = sincos_table(
        spec.width, _grid(encoder), spec.uniform_power, spec.pos_embed == "sincos_wh"
    )
    if ours.shape != table.shape or not np.allclose(ours, table, atol=POS_EMBED_ATOL):
        raise ConfigError(
            f"predictor_pos_embed {table.shape} is not the fixed sin-cos table of the encoder's "
            f"grid {_grid(encoder)}: learned or interpolated embeddings cannot be imported"
        )


def reference_to_predictor_params(sd: Mapping[str, Any], spec: Predictor) -> dict[str, Any]:
    """Our unscanned predictor params (float32 numpy) from a prefix-stripped reference state
    dict; a left-over key is an error, so nothing is silently dropped."""
    used = {"predictor_pos_embed"}

    def get(key: str) -> np.ndarray:
        used.add(key)
        return _need(sd, key)

    if spec.in_levels > 1:
        params = {
            "fusion": dense_from_reference(get, "predictor_embed.0"),
            "embed": dense_from_reference(get, "predictor_embed.2"),
        }
    else:
        params = {"embed": dense_from_reference(get, "predictor_embed")}
    tokens = [get(k).reshape(spec.width) for k in _mask_token_keys(sd)]
    params["mask_tokens"] = np.stack(tokens)
    params["transformer"] = blocks_from_reference(
        get, "predictor_blocks", spec.depth, spec.width, spec.num_heads
    )
    params["norm"] = norm_from_reference(get, "predictor_norm")
    params["proj"] = dense_from_reference(get, "predictor_proj")
    if spec.context_head:
        params["context_proj"] = dense_from_reference(get, "predictor_proj_context")
    if spec.modality_embedding:
        params["modality"] = {
            f"{m}_mod_embed": get(f"{m}_mod_embed").reshape(spec.width) for m in MODALITIES
        }
    leftover = sorted(set(sd) - used)
    if leftover:
        raise ConfigError(
            f"predictor state dict has {len(leftover)} keys a reference predictor does not, "
            f"e.g. {leftover[:3]}"
        )
    return params


def predictor_params_to_reference(
    params: Mapping[str, Any], spec: Predictor, encoder: EncoderConfig
) -> dict[str, np.ndarray]:
    """Reference-layout state dict (float32 numpy) of our unscanned predictor params, with the
    sin-cos `predictor_pos_embed` of the encoder's grid when positions are not RoPE."""
    out: dict[str, np.ndarray] = {}
    if spec.in_levels > 1:
        out.update(dense_to_reference("predictor_embed.0", params["fusion"]))
        out.update(dense_to_reference("predictor_embed.2", params["embed"]))
    else:
        out.update(dense_to_reference("predictor_embed", params["embed"]))
    for i, token in enumerate(_np(params["mask_tokens"])):
        out[f"mask_tokens.{i}"] = token.reshape(1, 1, spec.width)
    if spec.pos_embed not in ROPE_EMBEDS:
        w_first = spec.pos_embed == "sincos_wh"
        table = sincos_table(spec.width, _grid(encoder), spec.uniform_power, w_first)
        out["predictor_pos_embed"] = table[None]
    if spec.modality_embedding:
        for m in MODALITIES:
            out[f"{m}_mod_embed"] = _np(params["modality"][f"{m}_mod_embed"]).reshape(
                1, 1, spec.width
            )
    out.update(
        blocks_to_reference(params["transformer"], "predictor_blocks", spec.depth, spec.width)
    )
    out.update(norm_to_reference("predictor_norm", params["norm"]))
    out.update(dense_to_reference("predictor_proj", params["proj"]))
    if spec.context_head:
        out.update(dense_to_reference("predictor_proj_context", params["context_proj"]))
    return {k: np.ascontiguousarray(v) for k, v in out.items()}
