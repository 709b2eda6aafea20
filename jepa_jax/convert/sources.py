"""One entry point for every weight source `jepa-jax import` reads: `convert_source(path)`."""

from __future__ import annotations

import os
from typing import Any

from jepa_jax.convert import huggingface, reference, reference_predictor
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.predictor import Predictor

TORCH_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")


def reference_family(cfg: EncoderConfig) -> str:
    """Which Meta model a reference-layout encoder looks like, for messages."""
    if cfg.pos_embed == "rope_interleaved":
        return "V-JEPA 2.1"
    if cfg.pos_embed == "rope":
        return "V-JEPA 2"
    if cfg.pos_embed == "sincos_wh":
        return "I-JEPA"
    return "V-JEPA" if cfg.is_video else "V-JEPA-style image"


def convert_source(
    path: str,
    *,
    entry: str | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    num_heads: int | None = None,
    size: str | None = None,
    predictor_heads: int | None = None,
) -> tuple[EncoderConfig, dict[str, Any], dict[str, Any], tuple[Predictor, Any] | None]:
    """(EncoderConfig, our unscanned encoder params, provenance, predictor) of a weight source;
    predictor is (Predictor, its unscanned params) when a reference training checkpoint
    holds a `predictor` entry, else None.

    Args:
      path: a Hugging Face model directory, a reference-layout `.safetensors` file, or a
        reference PyTorch checkpoint (`.pth.tar` / `.pt`, read with torch).
      entry: checkpoint entry ("target_encoder", "ema_encoder" or "encoder"); default the
        first of those the checkpoint has.
      num_frames, image_size, num_heads: what the weights do not record (see
        reference.infer_encoder_config); for Hugging Face they override its config.
      size: expected preset ("large", ...); a different size is a ConfigError.
      predictor_heads: the predictor's attention heads (default: 12 under RoPE, else the
        encoder's; see reference_predictor.infer_predictor).
    """
    if not os.path.exists(path):
        raise ConfigError(f"weights not found: {path!r}")
    info: dict[str, Any] = {"path": os.path.abspath(path)}
    kw = dict(num_frames=num_frames, image_size=image_size, num_heads=num_heads, size=size)
    if os.path.isdir(path):
        state, hf_config = huggingface.load_hf_directory(path)
        hf_config = dict(hf_config)
        overrides = {"frames_per_clip": num_frames, "num_attention_heads": num_heads}
        overrides["crop_size" if hf_config.get("model_type") == "vjepa2" else "image_size"] = (
            image_size
        )
        hf_config.update({k: v for k, v in overrides.items() if v is not None})
        cfg, params, skipped = huggingface.convert_hf_state_dict(state, hf_config, size=size)
        info.update(format=f"Hugging Face {hf_config['model_type']}", skipped_keys=skipped)
        return cfg, params, info, None
    checkpoint: Any = {}
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        sd = reference.encoder_state_dict(load_file(path), entry)
    elif path.endswith(TORCH_SUFFIXES):
        checkpoint = reference.load_torch_checkpoint(path)
        sd = reference.encoder_state_dict(checkpoint, entry)
        info["entry"] = entry or next(
            (e for e in reference.ENCODER_ENTRIES if e in checkpoint), None
        )
    else:
        raise ConfigError(
            f"cannot tell the format of {path!r}: expected a Hugging Face model directory, a "
            f".safetensors file or a PyTorch checkpoint ({', '.join(TORCH_SUFFIXES)})"
        )
    cfg = reference.infer_encoder_config(sd, **kw)
    info["format"] = f"{reference_family(cfg)} reference"
    predictor = None
    pred_sd = reference_predictor.predictor_state_dict(checkpoint)
    if pred_sd is not None:
        spec = reference_predictor.infer_predictor(pred_sd, cfg, predictor_heads)
        predictor = (spec, reference_predictor.reference_to_predictor_params(pred_sd, spec))
    return cfg, reference.reference_to_params(sd, cfg), info, predictor
