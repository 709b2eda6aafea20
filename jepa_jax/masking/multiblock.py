"""Multi-block masks with a fixed number of context and target tokens.

I-JEPA (2D) and V-JEPA (3D) draw rectangular blocks whose union is the prediction target; the
context is what the blocks leave visible (V-JEPA: the complement; I-JEPA: one large context
block minus the targets). The reference then truncates every example's index list to the
shortest one in the batch, so token counts change every step (a recompile per shape under jit)
and the highest raster indices are dropped (a positional bias).

Here every mask has exactly `num_context` context and `num_target` target indices per block
group, fixed per config:
  1. draw block shapes and positions as the reference does (the reference's off-by-one that never
     reaches the last row/column is fixed);
  2. if a candidate set is smaller than its count, redraw (rare: counts sit at a low quantile of
     the reference distribution, see `calibrate_counts`);
  3. keep a uniformly random subset of exactly that many candidates, returned sorted.
Uniform subsampling, unlike truncation, favours no position.

Everything runs on the host in numpy and is a pure function of the generator passed in; use
`sample_for_index(seed, index)` for a mask reproducible from (seed, example index).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from jepa_jax.errors import ConfigError

MAX_TRIES = 200


class MaskError(ConfigError):
    """A mask config that cannot produce the requested token counts."""


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """One multi-block mask config (a V-JEPA 'mask config', or the I-JEPA target blocks).

    Attributes:
      num_blocks: blocks whose union is the target (V-JEPA) or separate target groups (I-JEPA).
      spatial_scale: (min, max) fraction of the h*w grid covered by one block.
      aspect_ratio: (min, max) of block height/width.
      temporal_scale: (min, max) fraction of the time steps a block spans (3D only).
      max_temporal_keep: context may only use the first fraction of time steps (3D only).
      full_complement: the target is every token outside the context (V-JEPA 2's option; with
        max_temporal_keep < 1 it includes all later time steps: "predict the future").
    """

    num_blocks: int
    spatial_scale: tuple[float, float]
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    max_temporal_keep: float = 1.0
    full_complement: bool = False

    def __post_init__(self):
        if self.num_blocks < 1:
            raise MaskError(f"num_blocks must be >= 1, got {self.num_blocks}")
        for name in ("spatial_scale", "aspect_ratio", "temporal_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise MaskError(f"{name} must satisfy 0 < min <= max, got {(lo, hi)}")
        if not 0 < self.max_temporal_keep <= 1:
            raise MaskError(f"max_temporal_keep must be in (0, 1], got {self.max_temporal_keep}")


def _block_hw(rng: np.random.Generator, grid_hw, scale, aspect, cap_inclusive: bool):
    """Block (h, w) from a scale and aspect draw, as in the reference."""
    gh, gw = grid_hw
    s = rng.uniform(*scale)
    a = rng.uniform(*aspect)
    keep = int(gh * gw * s)
    h = int(round(math.sqrt(keep * a)))
    w = int(round(math.sqrt(keep / a)))
    # V-JEPA caps at the grid size; I-JEPA keeps blocks strictly smaller than the grid.
    hmax, wmax = (gh, gw) if cap_inclusive else (gh - 1, gw - 1)
    return max(1, min(h, hmax)), max(1, min(w, wmax))


def _place(rng: np.random.Generator, size: int, extent: int) -> int:
    """Start offset of a block of `size` in [0, extent), every position reachable."""
    return int(rng.integers(0, extent - size + 1))


def _choose(rng: np.random.Generator, candidates: np.ndarray, k: int) -> np.ndarray:
    """Exactly k of the flat candidate indices, uniformly without replacement, sorted int32."""
    return np.sort(rng.choice(candidates, size=k, replace=False)).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# V-JEPA: multiblock3d
# ----------------------------------------------------------------------------------------------


def draw_target_3d(rng: np.random.Generator, grid: tuple[int, int, int], cfg: BlockConfig):
    """One raw V-JEPA draw: bool [T, H, W] target (union of blocks) and its context region."""
    gt, gh, gw = grid
    ts = rng.uniform(*cfg.temporal_scale)
    t = max(1, int(gt * ts))
    h, w = _block_hw(rng, (gh, gw), cfg.spatial_scale, cfg.aspect_ratio, cap_inclusive=True)
    target = np.zeros(grid, dtype=bool)
    for _ in range(cfg.num_blocks):
        t0, y0, x0 = _place(rng, t, gt), _place(rng, h, gh), _place(rng, w, gw)
        target[t0 : t0 + t, y0 : y0 + h, x0 : x0 + w] = True
    context = ~target
    keep_t = max(1, int(gt * cfg.max_temporal_keep))
    context[keep_t:] = False
    if cfg.full_complement:
        target = ~context
    return target, context


def sample_3d(
    rng: np.random.Generator,
    grid: tuple[int, int, int],
    cfg: BlockConfig,
    num_context: int,
    num_target: int,
) -> dict[str, np.ndarray]:
    """V-JEPA mask with fixed counts.

    Returns:
      {"context": int32 [num_context], "target": int32 [1, num_target]}: sorted flat (t, h, w)
      raster indices; context and target are disjoint.
    """
    for _ in range(MAX_TRIES):
        target, context = draw_target_3d(rng, grid, cfg)
        ctx, tgt = np.flatnonzero(context), np.flatnonzero(target)
        if ctx.size >= num_context and tgt.size >= num_target:
            return {
                "context": _choose(rng, ctx, num_context),
                "target": _choose(rng, tgt, num_target)[None],
            }
    raise MaskError(
        f"could not draw a mask with {num_context} context and {num_target} target tokens on grid "
        f"{grid} with {cfg} in {MAX_TRIES} tries; lower the counts (or leave them to calibration)"
    )


# ----------------------------------------------------------------------------------------------
# I-JEPA: multi-block 2D (npred target blocks + 1 context block)
# ----------------------------------------------------------------------------------------------


def draw_blocks_2d(
    rng: np.random.Generator,
    grid: tuple[int, int],
    cfg: BlockConfig,
    context_scale: tuple[float, float],
):
    """One raw I-JEPA draw: list of bool [H, W] target blocks and the context region.

    The context block (aspect 1) minus every target block (allow_overlap=False).
    """
    gh, gw = grid
    h, w = _block_hw(rng, grid, cfg.spatial_scale, cfg.aspect_ratio, cap_inclusive=False)
    blocks = []
    for _ in range(cfg.num_blocks):
        block = np.zeros(grid, dtype=bool)
        y0, x0 = _place(rng, h, gh), _place(rng, w, gw)
        block[y0 : y0 + h, x0 : x0 + w] = True
        blocks.append(block)
    ch, cw = _block_hw(rng, grid, context_scale, (1.0, 1.0), cap_inclusive=False)
    context = np.zeros(grid, dtype=bool)
    y0, x0 = _place(rng, ch, gh), _place(rng, cw, gw)
    context[y0 : y0 + ch, x0 : x0 + cw] = True
    for block in blocks:
        context &= ~block
    return blocks, context


def sample_2d(
    rng: np.random.Generator,
    grid: tuple[int, int],
    cfg: BlockConfig,
    context_scale: tuple[float, float],
    num_context: int,
    num_target: int,
) -> dict[str, np.ndarray]:
    """I-JEPA mask with fixed counts.

    Returns:
      {"context": int32 [num_context], "target": int32 [num_blocks, num_target]}: sorted flat
      (h, w) indices; each row is one target block; context is disjoint from every block.
    """
    for _ in range(MAX_TRIES):
        blocks, context = draw_blocks_2d(rng, grid, cfg, context_scale)
        ctx = np.flatnonzero(context)
        tgts = [np.flatnonzero(b) for b in blocks]
        if ctx.size >= num_context and min(t.size for t in tgts) >= num_target:
            return {
                "context": _choose(rng, ctx, num_context),
                "target": np.stack([_choose(rng, t, num_target) for t in tgts]),
            }
    raise MaskError(
        f"could not draw a mask with {num_context} context and {num_target} tokens per target "
        f"block on grid {grid} with {cfg} in {MAX_TRIES} tries; lower the counts"
    )


# ----------------------------------------------------------------------------------------------
# Count calibration
# ----------------------------------------------------------------------------------------------


def raw_counts(
    grid: Sequence[int],
    cfg: BlockConfig,
    context_scale: tuple[float, float] | None,
    num_draws: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Context and per-block target sizes of `num_draws` raw reference-style draws.

    Returns:
      (context_counts [num_draws], target_counts [num_draws]); for 2D the target count of a draw
      is its smallest block.
    """
    rng = np.random.default_rng(seed)
    ctx_counts, tgt_counts = [], []
    for _ in range(num_draws):
        if len(grid) == 3:
            target, context = draw_target_3d(rng, tuple(grid), cfg)
            ctx_counts.append(int(context.sum()))
            tgt_counts.append(int(target.sum()))
        else:
            blocks, context = draw_blocks_2d(rng, tuple(grid), cfg, context_scale)
            ctx_counts.append(int(context.sum()))
            tgt_counts.append(min(int(b.sum()) for b in blocks))
    return np.asarray(ctx_counts), np.asarray(tgt_counts)


def calibrate_counts(
    grid: Sequence[int],
    cfg: BlockConfig,
    context_scale: tuple[float, float] | None = None,
    quantile: float = 0.1,
    num_draws: int = 2000,
) -> tuple[int, int]:
    """Fixed (num_context, num_target) at a low quantile of the reference count distribution.

    The reference trains on counts truncated to the batch minimum, i.e. a low quantile of the
    per-example distribution (about 1/(B+1) for a per-device batch of B), so a low quantile keeps
    the work per step close to the reference's, while redraws (step 2 above) stay rare
    (about 2*quantile of draws). Deterministic: a fixed seed, so every process agrees.
    """
    if not 0 <= quantile < 0.5:
        raise MaskError(f"count quantile must be in [0, 0.5), got {quantile}")
    ctx, tgt = raw_counts(grid, cfg, context_scale, num_draws)
    num_context = int(np.floor(np.quantile(ctx, quantile)))
    num_target = int(np.floor(np.quantile(tgt, quantile)))
    if num_context < 1 or num_target < 1:
        raise MaskError(
            f"mask config {cfg} on grid {tuple(grid)} leaves too little context or target "
            f"(quantile {quantile}: context {num_context}, target {num_target}); widen the grid "
            "or change the block scales"
        )
    return num_context, num_target
