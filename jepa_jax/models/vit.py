"""ViT encoder for images (2D patches) and video (3D tubelets), as in I-JEPA / V-JEPA.

Patch embedding is a linear map of flattened pixel patches, which is exactly a convolution with
kernel = stride = patch. Flattening first lets a context encoder gather the visible patches
*before* embedding them: the gather then touches only input pixels, which need no gradient, so
the backward pass has no scatter.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn

from jepa_jax.errors import ConfigError
from jepa_jax.models.layers import (
    ModalityEmbedding,
    TransformerModel,
    dense,
    layer_norm,
    transformer_like,
)
from jepa_jax.models.pos_embed import sincos_table
from jepa_jax.models.rope import ROPE_EMBEDS, token_rope

# How token positions enter the encoder (`model.encoder.pos_embed`):
#   sincos     fixed sin-cos table added to the patch embeddings (V-JEPA; 2D: row channels first)
#   sincos_wh  the same with a 2D table's column channels first (the I-JEPA code's layout)
#   rope       no table; 3D rotary embedding of q and k in every attention layer (V-JEPA 2)
POS_EMBEDS = ("sincos", "sincos_wh") + ROPE_EMBEDS

# Reference widths, depths, heads and MLP hidden sizes (I-JEPA / V-JEPA / V-JEPA 2 vit_* presets).
ENCODER_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(width=192, depth=12, num_heads=3, mlp_dim=768),
    "small": dict(width=384, depth=12, num_heads=6, mlp_dim=1536),
    "base": dict(width=768, depth=12, num_heads=12, mlp_dim=3072),
    "large": dict(width=1024, depth=24, num_heads=16, mlp_dim=4096),
    "huge": dict(width=1280, depth=32, num_heads=16, mlp_dim=5120),
    "giant": dict(width=1408, depth=40, num_heads=16, mlp_dim=6144),
    # V-JEPA 2's vit_giant_xformers: same width/depth, 22 heads of 64.
    "giant_xformers": dict(width=1408, depth=40, num_heads=22, mlp_dim=6144),
}


def token_grid(input_shape: tuple[int, ...], patch_size: int, tubelet_size: int) -> tuple[int, ...]:
    """Token grid of an input batch shape.

    Args:
      input_shape: [B, H, W, C] (images) or [B, T, H, W, C] (video).
      patch_size: spatial patch side in pixels.
      tubelet_size: frames per tubelet (video only).

    Returns:
      (H/p, W/p) for images, (T/t, H/p, W/p) for video.
    """
    if len(input_shape) == 4:
        _, h, w, _ = input_shape
        dims = {"height": (h, patch_size), "width": (w, patch_size)}
    elif len(input_shape) == 5:
        _, t, h, w, _ = input_shape
        dims = {"frames": (t, tubelet_size), "height": (h, patch_size), "width": (w, patch_size)}
    else:
        raise ValueError(f"expected [B,H,W,C] images or [B,T,H,W,C] video, got shape {input_shape}")
    for name, (size, step) in dims.items():
        if size % step:
            raise ValueError(f"input {name} {size} is not divisible by its patch size {step}")
    return tuple(size // step for size, step in dims.values())


def patchify(x: jax.Array, patch_size: int, tubelet_size: int) -> jax.Array:
    """Flatten pixels into patch vectors in raster token order.

    Args:
      x: [B, H, W, C] or [B, T, H, W, C].

    Returns:
      [B, N, P] with N = prod(token_grid) and P = (tubelet*) patch*patch*C, the channel fastest.
    """
    grid = token_grid(x.shape, patch_size, tubelet_size)
    p = patch_size
    if x.ndim == 4:
        b, _, _, c = x.shape
        gh, gw = grid
        x = x.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, gh * gw, p * p * c)
    b, _, _, _, c = x.shape
    gt, gh, gw = grid
    t = tubelet_size
    x = x.reshape(b, gt, t, gh, p, gw, p, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, gt * gh * gw, t * p * p * c)


def gather_tokens(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x [B, N, ...] gathered at flat token indices idx [B, K] -> [B, K, ...]."""
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def reference_output_levels(depth: int) -> tuple[int, ...]:
    """V-JEPA 2.1's 4 deep-supervision levels for a `depth`-block encoder (its
    `hierarchical_layers`): evenly spaced block ends, except ViT-G's (depth 48) third level."""
    if depth == 48:
        return (11, 23, 37, 47)
    return tuple(sorted({max(0, round((i + 1) * depth / 4) - 1) for i in range(4)}))


def check_output_levels(levels: tuple[int, ...], depth: int, where: str) -> tuple[int, ...]:
    """`levels` as ints if they can be V-JEPA 2.1 output levels of a `depth`-block encoder:
    strictly increasing block indices ending at the last block (whose norm is the features'
    "norm"), or () for none. ConfigError naming `where` otherwise."""
    levels = tuple(int(k) for k in levels)
    if levels and (
        levels[-1] != depth - 1
        or levels[0] < 0
        or any(b <= a for a, b in zip(levels, levels[1:], strict=False))
    ):
        raise ConfigError(
            f"{where}={levels} is invalid: expected strictly increasing 0-based block indices "
            f"ending at the last block ({depth - 1}), e.g. {reference_output_levels(depth)}, "
            f"or () for none"
        )
    return levels


class VisionTransformer(TransformerModel):
    """ViT encoder: patch/tubelet embedding + fixed sin-cos positions (or 3D RoPE) + blocks +
    final LayerNorm.

    With `output_levels` (V-JEPA 2.1's deep self-supervision, 0-based block indices ending at
    the last block) each listed block's output has its own affine LayerNorm
    ("norm_level{k}"; the last block's is "norm", so the features probes read are unchanged),
    and `all_levels=True` returns them concatenated on channels.

    With `image_tokenizer` (V-JEPA 2.1's joint image + video training) a video encoder also
    takes images as one-frame clips [B, 1, H, W, C]: they go through a tubelet-1 patch embedding
    of their own ("patch_embed_img") onto a (1, H/p, W/p) token grid, and `modality_embedding`
    adds a learned image or video vector to every token.
    """

    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    tubelet_size: int = 2
    uniform_power: bool = True
    pos_embed: str = "sincos"  # one of POS_EMBEDS
    output_levels: tuple[int, ...] = ()
    rope_reference_grid: int = 0  # V-JEPA 2.1 RoPE position interpolation (0: off)
    image_tokenizer: bool = False
    modality_embedding: bool = False

    def is_image_input(self, shape: tuple[int, ...]) -> bool:
        """True for an input batch shape the image tokenizer takes: [B, 1, H, W, C]."""
        return self.image_tokenizer and len(shape) == 5 and shape[1] == 1

    def tubelet_for(self, shape: tuple[int, ...]) -> int:
        """Frames per token of an input batch shape: 1 for images through the image tokenizer,
        else `tubelet_size`."""
        return 1 if self.is_image_input(shape) else self.tubelet_size

    @property
    def num_levels(self) -> int:
        """Channel groups of the `all_levels` output (1 without output_levels)."""
        return max(1, len(self.output_levels))  # (last block,) alone is the plain encoder

    @nn.compact
    def __call__(
        self, x: jax.Array, token_idx: jax.Array | None = None, all_levels: bool = False
    ) -> jax.Array:
        """Encode normalised pixels.

        Args:
          x: float [B, H, W, C] images or [B, T, H, W, C] video (with `image_tokenizer`,
            [B, 1, H, W, C] is an image).
          token_idx: optional int [B, K] flat indices of the tokens to encode (a context mask);
            None encodes all N tokens.
          all_levels: return every output level (training targets with deep self-supervision).

        Returns:
          [B, K or N, width] token features after the final LayerNorm; with all_levels,
          [B, K or N, num_levels * width]: the normed levels in `output_levels` order.
        """
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed {self.pos_embed!r} is not one of {POS_EMBEDS}")
        image = self.is_image_input(x.shape)
        tubelet = self.tubelet_for(x.shape)
        grid = token_grid(x.shape, self.patch_size, tubelet)
        patches = patchify(x, self.patch_size, tubelet)
        if token_idx is not None:
            patches = gather_tokens(patches, token_idx)
        h = dense(self.width, ("patch", "embed"), self.dtype, self._embed_name(image))(patches)
        if self.image_tokenizer and self.is_initializing():
            # Init sees one modality; the other tokenizer's params must exist too.
            other_t = self.tubelet_size if image else 1
            other = jnp.zeros((1, 1, other_t * patches.shape[-1] // tubelet), patches.dtype)
            dense(self.width, ("patch", "embed"), self.dtype, self._embed_name(not image))(other)
        rope = None
        if self.pos_embed in ROPE_EMBEDS:
            rope = token_rope(
                grid,
                self.width // self.num_heads,
                token_idx,
                interleaved=self.pos_embed == "rope_interleaved",
                reference_grid=self.rope_reference_grid,
            )
        else:
            w_first = self.pos_embed == "sincos_wh"
            pos = jnp.asarray(sincos_table(self.width, grid, self.uniform_power, w_first))
            pos = pos[None] if token_idx is None else pos[token_idx]
            h = h + pos.astype(h.dtype)
        if self.modality_embedding:
            h = ModalityEmbedding(self.width, name="modality")(h, image)
        levels = check_output_levels(self.output_levels, self.depth, "output_levels")
        if len(levels) < 2:  # () or the last block alone: the plain encoder
            h = transformer_like(self)(h, None, rope)
            return layer_norm("norm", self.dtype)(h)
        h, kept = transformer_like(self)(h, None, rope, keep_layers=levels[:-1])
        # Every level's norm runs (cheap, and unused ones are dropped by XLA), so that init
        # creates all the params whichever output is asked for.
        normed = [
            layer_norm(f"norm_level{k}", self.dtype)(hk)
            for k, hk in zip(levels[:-1], kept, strict=True)
        ]
        normed.append(layer_norm("norm", self.dtype)(h))
        return jnp.concatenate(normed, axis=-1) if all_levels else normed[-1]

    @staticmethod
    def _embed_name(image: bool) -> str:
        return "patch_embed_img" if image else "patch_embed"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Resolved encoder hyper-parameters (a preset plus overrides)."""

    width: int
    depth: int
    num_heads: int
    mlp_dim: int


def resolve_encoder_spec(size: str, **overrides: int | None) -> EncoderSpec:
    """Preset by name, with any non-None override of width/depth/num_heads/mlp_dim applied."""
    if size not in ENCODER_PRESETS:
        raise ConfigError(
            f"unknown encoder size {size!r}; expected one of {sorted(ENCODER_PRESETS)}"
        )
    spec = dict(ENCODER_PRESETS[size])
    spec.update({k: v for k, v in overrides.items() if v is not None})
    return EncoderSpec(**spec)
