"""Per-example mask sampling from a config, for the grain pipeline.

Config (`config.mask`):
  kind: "multiblock3d" (V-JEPA) or "multiblock2d" (I-JEPA).
  count_quantile: quantile of the reference count distribution used for auto counts.
  context_scale: (2D only) scale range of the context block.
  blocks: named mask configs, each a BlockConfig's fields plus optional `num_context` and
    `num_target` (None = calibrated). Configs are used in sorted-name order; the i-th one uses
    the predictor's i-th mask token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jepa_jax.masking import multiblock
from jepa_jax.masking.multiblock import BlockConfig, MaskError

KINDS = ("multiblock2d", "multiblock3d")


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """One resolved mask config: its blocks and fixed token counts."""

    name: str
    blocks: BlockConfig
    num_context: int
    num_target: int


@dataclasses.dataclass(frozen=True)
class MaskSampler:
    """Draws every mask config's (context, target) indices for one example.

    Output of `__call__`: a tuple, one dict per config in `specs` order:
      {"context": int32 [num_context], "target": int32 [groups, num_target]}.
    """

    kind: str
    grid: tuple[int, ...]
    specs: tuple[MaskSpec, ...]
    context_scale: tuple[float, float] | None = None

    def __call__(self, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], ...]:
        out = []
        for spec in self.specs:
            if self.kind == "multiblock3d":
                m = multiblock.sample_3d(
                    rng, self.grid, spec.blocks, spec.num_context, spec.num_target
                )
            else:
                m = multiblock.sample_2d(
                    rng,
                    self.grid,
                    spec.blocks,
                    self.context_scale,
                    spec.num_context,
                    spec.num_target,
                )
            out.append(m)
        return tuple(out)

    def sample_for_index(self, seed: int, index: int) -> tuple[dict[str, np.ndarray], ...]:
        """The masks of example `index` under `seed`: a pure function of (seed, index)."""
        return self(np.random.default_rng([seed, index]))

    def target_groups(self, spec: MaskSpec) -> int:
        """Rows of the target array: I-JEPA's num_blocks separate blocks, else 1."""
        return spec.blocks.num_blocks if self.kind == "multiblock2d" else 1

    def describe(self) -> str:
        """One line per config: name, counts, grid."""
        n = int(np.prod(self.grid))
        lines = []
        for i, s in enumerate(self.specs):
            g = self.target_groups(s)
            tgt = f"{g}x{s.num_target}" if g > 1 else f"{s.num_target}"
            lines.append(
                f"mask[{i}] {s.name}: context {s.num_context}, target {tgt} of {n} tokens "
                f"(grid {'x'.join(map(str, self.grid))})"
            )
        return "\n".join(lines)


def _as_pair(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise MaskError(f"{name} must be a (min, max) pair of numbers, got {value!r}") from e
    return lo, hi


def build_mask_sampler(mask_config: Mapping[str, Any], grid: Sequence[int]) -> MaskSampler:
    """Resolve a `config.mask` block for a token grid, calibrating counts left as None."""
    kind = mask_config["kind"]
    if kind not in KINDS:
        raise MaskError(f"mask.kind must be one of {KINDS}, got {kind!r}")
    grid = tuple(int(g) for g in grid)
    want_dims = 3 if kind == "multiblock3d" else 2
    if len(grid) != want_dims:
        raise MaskError(
            f"mask.kind {kind!r} needs a {want_dims}D token grid but the data gives {grid}; "
            f"use {'multiblock3d for video' if want_dims == 2 else 'multiblock2d for images'}"
        )
    context_scale = None
    if kind == "multiblock2d":
        context_scale = _as_pair(mask_config["context_scale"], "mask.context_scale")
    blocks = mask_config["blocks"]
    if not blocks:
        raise MaskError("mask.blocks is empty; give at least one named mask config")
    if kind == "multiblock2d" and len(blocks) != 1:
        raise MaskError(f"multiblock2d takes one target-block config, got {sorted(blocks)}")
    quantile = float(mask_config.get("count_quantile", 0.1))
    specs = []
    for name in sorted(blocks):
        b = dict(blocks[name])
        num_context = b.pop("num_context", None)
        num_target = b.pop("num_target", None)
        cfg = BlockConfig(
            num_blocks=int(b.pop("num_blocks")),
            spatial_scale=_as_pair(b.pop("spatial_scale"), f"mask.blocks.{name}.spatial_scale"),
            aspect_ratio=_as_pair(
                b.pop("aspect_ratio", (0.75, 1.5)), f"mask.blocks.{name}.aspect_ratio"
            ),
            temporal_scale=_as_pair(
                b.pop("temporal_scale", (1.0, 1.0)), f"mask.blocks.{name}.temporal_scale"
            ),
            max_temporal_keep=float(b.pop("max_temporal_keep", 1.0)),
            full_complement=bool(b.pop("full_complement", False)),
        )
        if b:
            raise MaskError(f"mask.blocks.{name} has unknown fields {sorted(b)}")
        if num_context is None or num_target is None:
            auto_c, auto_t = multiblock.calibrate_counts(grid, cfg, context_scale, quantile)
            num_context = auto_c if num_context is None else num_context
            num_target = auto_t if num_target is None else num_target
        n = int(np.prod(grid))
        if not (1 <= num_context < n and 1 <= num_target < n):
            raise MaskError(
                f"mask.blocks.{name}: num_context={num_context} and num_target={num_target} must "
                f"each be in [1, {n}) for a grid of {n} tokens"
            )
        specs.append(MaskSpec(name, cfg, int(num_context), int(num_target)))
    return MaskSampler(kind, grid, tuple(specs), context_scale)
