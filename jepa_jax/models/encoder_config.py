"""A self-contained description of a ViT encoder: everything needed to rebuild it and feed it.

Exports and imported checkpoints carry one as `encoder_config.json`, so `load_encoder(DIR)` needs
no training config. The input is described too: the per-example pixel shape the encoder was
trained at, and the pixel normalisation (ImageNet mean/std on 0..255 values, as the reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jepa_jax.errors import ConfigError
from jepa_jax.models.vit import POS_EMBEDS, VisionTransformer

FORMAT = "jepa-jax-encoder"
VERSION = 1
# The fields an EncoderConfig shares with VisionTransformer (the rest describe the input).
ARCHITECTURE_FIELDS = (
    "width",
    "depth",
    "num_heads",
    "mlp_dim",
    "patch_size",
    "tubelet_size",
    "uniform_power",
    "pos_embed",
    "gelu_approximate",
    "output_levels",
    "rope_reference_grid",
    "image_tokenizer",
    "modality_embedding",
)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of a `VisionTransformer` plus the input it was trained on."""

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    tubelet_size: int
    input_shape: tuple[int, ...]  # per example: (T, H, W, 3) video or (H, W, 3) images
    uniform_power: bool = True
    pos_embed: str = "sincos"
    gelu_approximate: bool = False
    output_levels: tuple[int, ...] = ()  # V-JEPA 2.1 deep self-supervision levels (params)
    rope_reference_grid: int = 0  # V-JEPA 2.1 RoPE position interpolation grid (0: off)
    image_tokenizer: bool = False  # V-JEPA 2.1: [1, H, W, 3] clips are images (patch_embed_img)
    modality_embedding: bool = False  # V-JEPA 2.1: learned image / video vectors

    def __post_init__(self):
        if self.pos_embed not in POS_EMBEDS:
            raise ConfigError(f"encoder pos_embed {self.pos_embed!r} is not one of {POS_EMBEDS}")
        if len(self.input_shape) not in (3, 4) or self.input_shape[-1] != 3:
            raise ConfigError(
                f"encoder input_shape {self.input_shape} is not (H, W, 3) or (T, H, W, 3)"
            )
        if self.width % self.num_heads:
            raise ConfigError(f"encoder width {self.width} is not divisible by {self.num_heads}")

    @property
    def is_video(self) -> bool:
        return len(self.input_shape) == 4

    @property
    def patch_dim(self) -> int:
        """Pixels per token: (tubelet *) patch * patch * 3."""
        t = self.tubelet_size if self.is_video else 1
        return t * self.patch_size * self.patch_size * 3

    def build(self, dtype=jnp.float32, attention_impl: str = "auto") -> VisionTransformer:
        """The flax module (unscanned layers, the layout exports store)."""
        architecture = {f: getattr(self, f) for f in ARCHITECTURE_FIELDS}
        return VisionTransformer(**architecture, dtype=dtype, attention_impl=attention_impl)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["output_levels"] = list(self.output_levels)
        return {"format": FORMAT, "version": VERSION, "encoder": out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "encoder config") -> EncoderConfig:
        """Inverse of `to_json`; ConfigError naming `where` for anything malformed."""
        if data.get("format") != FORMAT:
            raise ConfigError(
                f"{where} has format {data.get('format')!r}; expected {FORMAT!r} (written by "
                f"`jepa-jax export` or `jepa-jax import`)"
            )
        if int(data.get("version", -1)) > VERSION:
            raise ConfigError(
                f"{where} has version {data['version']}, newer than this jepa-jax ({VERSION})"
            )
        fields = dict(data["encoder"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        missing = sorted(n for n in ("width", "depth", "num_heads", "mlp_dim") if n not in fields)
        if unknown or missing:
            raise ConfigError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        fields["input_shape"] = tuple(int(v) for v in fields["input_shape"])
        fields["output_levels"] = tuple(int(v) for v in fields.get("output_levels", ()))
        return cls(**fields)

    @classmethod
    def from_train_config(cls, config: Mapping[str, Any]) -> EncoderConfig:
        """The target encoder of a training config (its model and data sections)."""
        from jepa_jax.data import pipeline  # local: the data pipeline imports grain
        from jepa_jax.models import build_encoder

        enc = build_encoder(config["model"])
        return cls(
            **{f: getattr(enc, f) for f in ARCHITECTURE_FIELDS},
            input_shape=tuple(pipeline.input_shape(config["data"])),
        )
