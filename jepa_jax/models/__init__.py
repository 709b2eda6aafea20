"""Flax linen models: the ViT encoder and the JEPA predictor, built from `config.model`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jepa_jax.errors import ConfigError
from jepa_jax.models.predictor import Predictor
from jepa_jax.models.rope import ROPE_EMBEDS
from jepa_jax.models.vit import (
    ENCODER_PRESETS,
    POS_EMBEDS,
    VisionTransformer,
    check_output_levels,
    patchify,
    resolve_encoder_spec,
    token_grid,
)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config: Mapping[str, Any]):
    """The activation dtype named by `model.dtype`."""
    name = model_config["dtype"]
    if name not in DTYPES:
        raise ConfigError(f"model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _common(model_config: Mapping[str, Any]) -> dict[str, Any]:
    return dict(
        dtype=compute_dtype(model_config),
        gelu_approximate=bool(model_config["gelu_approximate"]),
        scan=bool(model_config["scan_layers"]),
        remat_policy=str(model_config["remat_policy"]),
        attention_impl=str(model_config["attention_impl"]),
    )


def encoder_pos_embed(model_config: Mapping[str, Any]) -> str:
    """`model.encoder.pos_embed`, checked ("sincos" for configs saved before the key existed)."""
    value = model_config["encoder"].get("pos_embed", "sincos")
    if value not in POS_EMBEDS:
        raise ConfigError(
            f"config.model.encoder.pos_embed={value!r} is invalid: expected one of {POS_EMBEDS}"
        )
    return value


def rope_reference_grid(model_config: Mapping[str, Any]) -> int:
    """`model.encoder.rope_reference_grid`, checked (0, off, for configs saved before it)."""
    value = model_config["encoder"].get("rope_reference_grid", 0)
    if int(value) != value or value < 0:
        raise ConfigError(
            f"config.model.encoder.rope_reference_grid={value!r} is invalid: expected an integer "
            f">= 0 (0: off; V-JEPA 2.1: 16 at patch 16)"
        )
    # Interpolation rescales RoPE's positions; with an absolute table it would do nothing.
    if value and encoder_pos_embed(model_config) not in ROPE_EMBEDS:
        raise ConfigError(
            f"config.model.encoder.rope_reference_grid={value!r} is invalid with pos_embed="
            f"{encoder_pos_embed(model_config)!r}: expected 0 (it rescales RoPE positions only)"
        )
    return int(value)


def build_encoder(model_config: Mapping[str, Any]) -> VisionTransformer:
    """The ViT encoder of `model.encoder` (a size preset plus overrides)."""
    enc = model_config["encoder"]
    # Absent from configs saved before V-JEPA 2.1's joint image + video training: off.
    image_tokenizer = bool(enc.get("image_tokenizer", False))
    if image_tokenizer and int(enc["tubelet_size"]) < 2:
        raise ConfigError(
            "config.model.encoder.image_tokenizer=True needs a video encoder with "
            f"tubelet_size >= 2 (images get tubelet 1), got tubelet_size={enc['tubelet_size']}"
        )
    spec = resolve_encoder_spec(
        enc["size"],
        width=enc["width"],
        depth=enc["depth"],
        num_heads=enc["num_heads"],
        mlp_dim=enc["mlp_dim"],
    )
    return VisionTransformer(
        width=spec.width,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_dim=spec.mlp_dim,
        patch_size=int(enc["patch_size"]),
        tubelet_size=int(enc["tubelet_size"]),
        uniform_power=bool(enc["uniform_power"]),
        pos_embed=encoder_pos_embed(model_config),
        # Absent from configs saved before V-JEPA 2.1's deep self-supervision: none.
        output_levels=check_output_levels(
            tuple(enc.get("output_levels", ())), spec.depth, "config.model.encoder.output_levels"
        ),
        rope_reference_grid=rope_reference_grid(model_config),
        image_tokenizer=image_tokenizer,
        modality_embedding=bool(enc.get("modality_embedding", False)),
        **_common(model_config),
    )


def build_predictor(
    model_config: Mapping[str, Any],
    out_width: int,
    num_mask_tokens: int,
    context_head: bool = False,
    in_levels: int = 1,
) -> Predictor:
    """The predictor of `model.predictor`, projecting back to `out_width` (the encoder width
    times `in_levels`, the encoder's output levels, which a fusion MLP mixes at the input);
    `context_head` adds the dense loss's head for the context tokens."""
    pred = model_config["predictor"]
    width = int(pred["width"])
    return Predictor(
        width=width,
        depth=int(pred["depth"]),
        num_heads=int(pred["num_heads"]),
        mlp_dim=int(round(width * float(pred["mlp_ratio"]))),
        out_width=out_width,
        num_mask_tokens=num_mask_tokens,
        zero_init_mask_tokens=bool(pred["zero_init_mask_tokens"]),
        uniform_power=bool(model_config["encoder"]["uniform_power"]),
        pos_embed=encoder_pos_embed(model_config),
        rope_reference_grid=rope_reference_grid(model_config),
        context_head=context_head,
        in_levels=in_levels,
        modality_embedding=bool(model_config["encoder"].get("modality_embedding", False)),
        **_common(model_config),
    )


def build_jepa_predictor(
    config: Mapping[str, Any], encoder: VisionTransformer, **model_overrides: Any
) -> Predictor:
    """The predictor of a JEPA run's config beside its `encoder`: one mask token per mask config
    (`mask.blocks`), the dense loss's context head when `loss.context_weight` > 0, the encoder's
    output levels fused at its input; `model_overrides` replace `config.model` keys (e.g. the
    unscanned float32 layout exports use)."""
    model = {**config["model"], **model_overrides} if model_overrides else config["model"]
    return build_predictor(
        model,
        encoder.width * encoder.num_levels,
        len(config["mask"]["blocks"]),
        context_head=float(config["loss"].get("context_weight", 0.0)) > 0,
        in_levels=encoder.num_levels,
    )


__all__ = [
    "DTYPES",
    "ENCODER_PRESETS",
    "POS_EMBEDS",
    "Predictor",
    "VisionTransformer",
    "build_encoder",
    "build_jepa_predictor",
    "build_predictor",
    "compute_dtype",
    "patchify",
    "token_grid",
]
