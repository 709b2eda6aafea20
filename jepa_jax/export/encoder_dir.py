"""Export directories: a frozen encoder for downstream use, readable without any training config.

  DIR/encoder_config.json   EncoderConfig (models/encoder_config.py) + where the weights came from
  DIR/params/               orbax params-only checkpoint of the unscanned encoder params (float32)
  DIR/model.safetensors     the same weights under the PyTorch reference names
                            (`patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, ..., plus the
                            sin-cos `pos_embed` buffer), loadable into the reference ViT
and, when the source had one (a reference training checkpoint's `predictor`, or a run's):
  DIR/predictor_config.json the Predictor's fields (convert/reference_predictor.py)
  DIR/predictor/            orbax params of the unscanned predictor (float32)
  DIR/predictor.safetensors the predictor under the reference names (`predictor_embed.weight`,
                            `mask_tokens.0`, `predictor_blocks.0.*`, ...)

`write_encoder_dir` builds everything in a temporary sibling directory and renames it into place,
so DIR is either the complete old export or the complete new one, never a mix.
`load_encoder(DIR)` returns a jitted `apply_fn(params, pixels)` and the params.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jepa_jax import rundir
from jepa_jax.convert.reference import params_to_reference
from jepa_jax.convert.reference_predictor import (
    predictor_from_json,
    predictor_params_to_reference,
    predictor_to_json,
)
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.param_layout import check_same_shapes
from jepa_jax.models.predictor import Predictor
from jepa_jax.rundir import write_json_atomic

ENCODER_CONFIG_FILE = "encoder_config.json"
PARAMS_DIR = "params"
SAFETENSORS_FILE = "model.safetensors"
PREDICTOR_CONFIG_FILE = "predictor_config.json"
PREDICTOR_DIR = "predictor"
PREDICTOR_SAFETENSORS_FILE = "predictor.safetensors"


def is_encoder_dir(path: str) -> bool:
    """True if `path` looks like an export (has encoder_config.json)."""
    return os.path.isfile(os.path.join(path, ENCODER_CONFIG_FILE))


def write_encoder_dir(
    out_dir: str,
    cfg: EncoderConfig,
    params: Mapping[str, Any],
    source: Mapping[str, Any],
    overwrite: bool = False,
    predictor: tuple[Predictor, Mapping[str, Any]] | None = None,
) -> str:
    """Write an export directory (see the module docstring); returns its absolute path.

    Args:
      out_dir: the directory to create.
      cfg: the encoder's description.
      params: unscanned encoder params (arrays of any kind; stored as float32).
      source: provenance recorded in encoder_config.json (e.g. workdir and step).
      overwrite: replace an existing non-empty `out_dir` (else ConfigError).
      predictor: (spec, unscanned params) of a predictor to store beside the encoder.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        if not overwrite:
            raise ConfigError(f"--out={out_dir!r} exists and is not empty; pass --overwrite")
        if os.path.isdir(out_dir) and not is_encoder_dir(out_dir):
            raise ConfigError(f"--out={out_dir!r} is not an export directory; refusing to replace")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        host = jax.tree.map(lambda a: np.asarray(jax.device_get(a), np.float32), dict(params))
        check_same_shapes(
            _expected_shapes(cfg), host, "the encoder config", "the params", "config", "params"
        )
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(tmp, PARAMS_DIR), host)
        checkpointer.wait_until_finished()
        from safetensors.numpy import save_file

        meta = {"format": "pt", "jepa_jax_encoder_config": json.dumps(cfg.to_json())}
        save_file(params_to_reference(host, cfg), os.path.join(tmp, SAFETENSORS_FILE), meta)
        if predictor is not None:
            spec, pred_params = predictor
            pred_host = jax.tree.map(
                lambda a: np.asarray(jax.device_get(a), np.float32), dict(pred_params)
            )
            checkpointer.save(os.path.join(tmp, PREDICTOR_DIR), pred_host)
            checkpointer.wait_until_finished()
            save_file(
                predictor_params_to_reference(pred_host, spec, cfg),
                os.path.join(tmp, PREDICTOR_SAFETENSORS_FILE),
                {"format": "pt"},
            )
            write_json_atomic(os.path.join(tmp, PREDICTOR_CONFIG_FILE), predictor_to_json(spec))
        write_json_atomic(
            os.path.join(tmp, ENCODER_CONFIG_FILE), {**cfg.to_json(), "source": dict(source)}
        )
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "d"))
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _expected_shapes(cfg: EncoderConfig) -> Any:
    from jepa_jax.export.target_encoder import expected_encoder_shapes

    return expected_encoder_shapes(cfg)


def read_encoder_config(path: str) -> tuple[EncoderConfig, dict[str, Any]]:
    """(EncoderConfig, the whole encoder_config.json) of an export directory."""
    if not os.path.isdir(path):
        raise ConfigError(f"encoder directory not found: {path!r}")
    config_path = os.path.join(path, ENCODER_CONFIG_FILE)
    missing = (
        f"{config_path!r} not found: {path!r} is not an export directory (written by "
        f"`jepa-jax export` or `jepa-jax import`)"
    )
    data = rundir.read_json(config_path, missing)
    return EncoderConfig.from_json(data, config_path), data


def read_encoder_dir(
    path: str, sharding: jax.sharding.Sharding | None = None
) -> tuple[EncoderConfig, dict[str, Any]]:
    """(EncoderConfig, params) of an export directory; params placed with `sharding` (default:
    the first device).

    Raises:
      ConfigError: missing directory or files, or params that do not match the config (a
        checkpoint of another model size).
    """
    path = os.path.abspath(path)
    cfg, _ = read_encoder_config(path)
    params_dir = os.path.join(path, PARAMS_DIR)
    if not os.path.isdir(params_dir):
        raise ConfigError(f"{params_dir!r} not found: the export in {path!r} is incomplete")
    checkpointer = ocp.StandardCheckpointer()
    stored = checkpointer.metadata(params_dir).item_metadata.tree
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), stored
    )
    check_same_shapes(
        _expected_shapes(cfg),
        abstract,
        f"{ENCODER_CONFIG_FILE} (width {cfg.width}, depth {cfg.depth}, {cfg.num_heads} heads, "
        f"MLP {cfg.mlp_dim})",
        f"the params in {params_dir!r}",
        expected_short="config",
        actual_short="params",
    )
    return cfg, checkpointer.restore(params_dir, abstract)


def read_predictor(path: str) -> tuple[Predictor, dict[str, Any]] | None:
    """(Predictor, params on the first device) of an export directory's predictor, or None
    when it stores none."""
    config_path = os.path.join(path, PREDICTOR_CONFIG_FILE)
    if not os.path.isfile(config_path):
        return None
    spec = predictor_from_json(rundir.read_json(config_path, config_path), config_path)
    params_dir = os.path.join(path, PREDICTOR_DIR)
    if not os.path.isdir(params_dir):
        raise ConfigError(f"{params_dir!r} not found: the export in {path!r} is incomplete")
    return spec, ocp.StandardCheckpointer().restore(params_dir)


def encoder_apply_fn(cfg: EncoderConfig, dtype=jnp.float32) -> Callable:
    """jitted `apply_fn(params, pixels, token_idx=None) -> [B, N or K, width]` features.

    `pixels` are uint8 [B, (T,) H, W, 3] (normalised inside, ImageNet mean/std) or already
    normalised floats; `token_idx` optionally selects tokens as in training (a context mask).
    """
    from jepa_jax.models.inputs import normalize_pixels

    module = cfg.build(dtype)

    def apply_fn(params, pixels, token_idx=None):
        x = normalize_pixels(pixels, dtype) if pixels.dtype == jnp.uint8 else pixels.astype(dtype)
        return module.apply({"params": params}, x, token_idx)

    return jax.jit(apply_fn)


def load_encoder(path: str, dtype=jnp.float32) -> tuple[Callable, dict[str, Any]]:
    """`(apply_fn, params)` of an export directory, ready to call: `apply_fn(params, pixels)`.

    Example:
      apply_fn, params = jepa_jax.load_encoder("exports/default")
      tokens = apply_fn(params, clips_uint8)   # [B, N, D] frozen features
    """
    cfg, params = read_encoder_dir(path)
    return encoder_apply_fn(cfg, dtype), params
