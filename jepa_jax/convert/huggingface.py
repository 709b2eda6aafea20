"""Hugging Face `IJepa` / `VJEPA2` state dicts -> the reference layout -> our encoder params.

Hugging Face splits the fused qkv projection into query/key/value and renames every module;
this module only renames and re-fuses (q, k, v stacked along the output axis is the reference's
qkv), then `convert.reference` does the layout maths once for both sources. Both the current
transformers names (`layers.{i}.attention.q_proj`, ...) and the older ones stored in hub
checkpoints (`encoder.layer.{i}.attention.attention.query`, ...) are understood.

Only the encoder is converted: a V-JEPA 2 predictor (`predictor.*`), a classification head
(`classifier.*`) and an attentive pooler (`pooler.*`) are skipped, and listed in the result.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jepa_jax import rundir
from jepa_jax.convert import reference
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig

MODEL_TYPES = ("ijepa", "vjepa2")
# Wrapper prefixes of the task models (IJepaForImageClassification, VJEPA2ForVideoClassification).
HF_PREFIXES = ("ijepa.", "vjepa2.")
SKIPPED_PREFIXES = ("predictor.", "classifier.", "pooler.", "embeddings.mask_token")

# (pattern on the prefix-stripped HF key, reference key template). q/k/v map to temporary
# `...attn.q/k/v` names that are fused into `attn.qkv` afterwards. Order matters: the attention
# output projection must match before the MLP's `output.dense`.
_LAYER = r"^(?:encoder\.)?(?:layer|layers)\.(\d+)\."
RENAMES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (
            r"^(?:encoder\.)?embeddings\.patch_embeddings\.(?:projection|proj)\.",
            "patch_embed.proj.",
        ),
        (r"^(?:encoder\.)?embeddings\.position_embeddings$", "pos_embed"),
        (_LAYER + r"(?:layernorm_before|norm1)\.", r"blocks.\1.norm1."),
        (_LAYER + r"(?:layernorm_after|norm2)\.", r"blocks.\1.norm2."),
        (_LAYER + r"attention\.(?:attention\.)?(?:query|q_proj)\.", r"blocks.\1.attn.q."),
        (_LAYER + r"attention\.(?:attention\.)?(?:key|k_proj)\.", r"blocks.\1.attn.k."),
        (_LAYER + r"attention\.(?:attention\.)?(?:value|v_proj)\.", r"blocks.\1.attn.v."),
        (_LAYER + r"attention\.(?:output\.dense|o_proj|proj)\.", r"blocks.\1.attn.proj."),
        (_LAYER + r"(?:intermediate\.dense|mlp\.fc1)\.", r"blocks.\1.mlp.fc1."),
        (_LAYER + r"(?:output\.dense|mlp\.fc2)\.", r"blocks.\1.mlp.fc2."),
        (r"^(?:encoder\.)?(?:layernorm|norm)\.", "norm."),
    )
)


def _rename(key: str) -> str | None:
    for pattern, template in RENAMES:
        if pattern.search(key):
            return pattern.sub(template, key, count=1)
    return None


def hf_to_reference(state_dict: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """(reference-layout encoder state dict, skipped keys) from a Hugging Face state dict.

    Raises:
      ConfigError: a key that is neither an encoder weight nor a known skipped part.
    """
    renamed: dict[str, np.ndarray] = {}
    skipped = []
    for key, value in state_dict.items():
        short = key
        for prefix in HF_PREFIXES:
            if short.startswith(prefix):
                short = short[len(prefix) :]
        if short.startswith(SKIPPED_PREFIXES):
            skipped.append(key)
            continue
        new = _rename(short)
        if new is None:
            raise ConfigError(
                f"Hugging Face key {key!r} is not part of an IJepa / VJEPA2 encoder this "
                f"converter knows"
            )
        renamed[new] = reference._np(value)
    # Fuse q, k, v (each [D, D] / [D]) into the reference's qkv ([3D, D] / [3D]).
    out = {}
    for key, value in renamed.items():
        if re.search(r"\.attn\.[qkv]\.", key):
            continue
        out[key] = value
    for key in [k for k in renamed if ".attn.q." in k]:
        prefix, suffix = key.split(".attn.q.")
        parts = []
        for name in "qkv":
            part_key = f"{prefix}.attn.{name}.{suffix}"
            if part_key not in renamed:
                raise ConfigError(f"state dict has {key!r} but no {part_key!r}")
            parts.append(renamed[part_key])
        out[f"{prefix}.attn.qkv.{suffix}"] = np.concatenate(parts, axis=0)
    # qkv_bias=False models: the reference layout always has biases; zeros are exact.
    for key in [k for k in out if k.endswith(".attn.qkv.weight")]:
        bias_key = key.replace(".weight", ".bias")
        out.setdefault(bias_key, np.zeros(out[key].shape[0], np.float32))
    return out, skipped


def encoder_config_from_hf(
    sd: Mapping[str, Any], hf_config: Mapping[str, Any], **kw
) -> EncoderConfig:
    """The EncoderConfig of a reference-layout state dict made by `hf_to_reference`, using the
    Hugging Face config (heads, input size, activation, LayerNorm eps) for what weights cannot
    tell. Extra keyword arguments (e.g. `size`) go to `reference.infer_encoder_config`.
    """
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"Hugging Face model_type {model_type!r} is not one of {MODEL_TYPES}")
    act = hf_config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_pytorch_tanh", "gelu_new"):
        raise ConfigError(f"hidden_act {act!r} is not supported (expected gelu or tanh-GELU)")
    eps = float(hf_config.get("layer_norm_eps", 1e-6))
    if abs(eps - 1e-6) > 1e-5:  # our LayerNorms use 1e-6, as the reference
        raise ConfigError(f"layer_norm_eps {eps} differs from the 1e-6 this encoder uses")
    if model_type == "ijepa":
        image_size = hf_config.get("image_size", 224)
        num_frames = None
    else:
        image_size = hf_config.get("crop_size", 256)
        num_frames = int(hf_config.get("frames_per_clip", 16))
    if isinstance(image_size, list | tuple):
        if len(set(image_size)) != 1:
            raise ConfigError(f"non-square image_size {image_size} is not supported")
        image_size = image_size[0]
    return reference.infer_encoder_config(
        sd,
        num_frames=num_frames,
        image_size=int(image_size),
        num_heads=int(hf_config["num_attention_heads"]),
        gelu_approximate=act != "gelu",
        **kw,
    )


def load_hf_directory(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, config) of a Hugging Face model directory (config.json plus
    model.safetensors, sharded safetensors with an index, or pytorch_model.bin via torch)."""
    config_path = os.path.join(path, "config.json")
    missing = f"{config_path!r} not found: {path!r} is not a Hugging Face model dir"
    config = rundir.read_json(config_path, missing)
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(path, s) for s in shards]
    elif os.path.isfile(os.path.join(path, "pytorch_model.bin")):
        return dict(
            reference.load_torch_checkpoint(os.path.join(path, "pytorch_model.bin"))
        ), config
    else:
        raise ConfigError(f"{path!r} has no model.safetensors, sharded index or pytorch_model.bin")
    from safetensors.numpy import load_file

    state: dict[str, Any] = {}
    for file in files:
        if not os.path.isfile(file):
            raise ConfigError(f"safetensors shard not found: {file!r}")
        state.update(load_file(file))
    return state, config


def convert_hf_state_dict(
    state_dict: Mapping[str, Any], hf_config: Mapping[str, Any], **kw
) -> tuple[EncoderConfig, dict[str, Any], list[str]]:
    """(EncoderConfig, our encoder params, skipped HF keys) of a Hugging Face IJepa / VJEPA2."""
    sd, skipped = hf_to_reference(state_dict)
    cfg = encoder_config_from_hf(sd, hf_config, **kw)
    return cfg, reference.reference_to_params(sd, cfg), skipped
