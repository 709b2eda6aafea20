"""Mask invariants: fixed counts, in bounds, sorted, disjoint, reproducible, no raster bias."""

import numpy as np
import pytest

from jepa_jax import config_recipes
from jepa_jax.masking import BlockConfig, MaskError, build_mask_sampler, multiblock

VIDEO_GRID = (8, 8, 8)
IMAGE_GRID = (14, 14)


@pytest.fixture(scope="module")
def video_sampler():
    return build_mask_sampler(config_recipes.vjepa_mask(), VIDEO_GRID)


@pytest.fixture(scope="module")
def image_sampler():
    return build_mask_sampler(config_recipes.ijepa_mask(), IMAGE_GRID)


def test_video_masks_fixed_counts_disjoint_in_bounds(video_sampler):
    n = int(np.prod(VIDEO_GRID))
    assert [s.name for s in video_sampler.specs] == ["long_range", "short_range"]
    for i in range(200):
        masks = video_sampler.sample_for_index(seed=3, index=i)
        assert len(masks) == 2
        for spec, m in zip(video_sampler.specs, masks, strict=True):
            ctx, tgt = m["context"], m["target"]
            assert ctx.shape == (spec.num_context,) and ctx.dtype == np.int32
            assert tgt.shape == (1, spec.num_target) and tgt.dtype == np.int32
            for idx in (ctx, tgt[0]):
                assert idx.min() >= 0 and idx.max() < n
                assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
            assert not np.intersect1d(ctx, tgt).size  # V-JEPA: target = union of blocks, ctx = rest


def test_future_mask_context_in_first_half_target_holds_the_future():
    # The default job's mask: the future group's context lies in the first half of the time
    # steps; its target is drawn from everything else, so every second-half token is reachable
    # and most of the target lies there.
    sampler = build_mask_sampler(config_recipes.vjepa_mask(future=True), VIDEO_GRID)
    assert [s.name for s in sampler.specs] == ["future", "short_range"]
    spec = sampler.specs[0]
    assert spec.blocks.full_complement and spec.blocks.max_temporal_keep == 0.5
    per_frame = VIDEO_GRID[1] * VIDEO_GRID[2]
    half = VIDEO_GRID[0] // 2 * per_frame  # first flat index of the second half
    hits = np.zeros(int(np.prod(VIDEO_GRID)))
    for i in range(100):
        future, _ = sampler.sample_for_index(seed=2, index=i)
        ctx, tgt = future["context"], future["target"][0]
        assert ctx.max() < half
        assert not np.intersect1d(ctx, tgt).size
        assert np.mean(tgt >= half) > 0.7
        np.add.at(hits, tgt, 1)
    assert hits[half:].min() > 0


def test_image_masks_fixed_counts_disjoint_per_block(image_sampler):
    n = int(np.prod(IMAGE_GRID))
    (spec,) = image_sampler.specs
    for i in range(200):
        (m,) = image_sampler.sample_for_index(seed=0, index=i)
        ctx, tgt = m["context"], m["target"]
        assert ctx.shape == (spec.num_context,)
        assert tgt.shape == (4, spec.num_target)  # 4 target blocks, each a group
        assert ctx.min() >= 0 and ctx.max() < n and tgt.min() >= 0 and tgt.max() < n
        for block in tgt:
            assert np.all(np.diff(block) > 0)
            assert not np.intersect1d(ctx, block).size  # allow_overlap=False


def test_counts_track_reference_distribution(video_sampler):
    # Calibrated counts sit at the 10% quantile of the reference's per-example counts:
    # for 16x64x64 clips at patch 8 the reference gives short-range context ~182 on average
    # (~139 after its batch-of-4 minimum) and long-range ~91 (~42).
    counts = {s.name: (s.num_context, s.num_target) for s in video_sampler.specs}
    assert 100 <= counts["short_range"][0] <= 160
    assert 16 <= counts["long_range"][0] <= 64
    assert counts["short_range"][0] + counts["short_range"][1] <= 512
    ctx, tgt = multiblock.raw_counts(VIDEO_GRID, video_sampler.specs[1].blocks, None, 1000, seed=5)
    assert np.mean(ctx >= counts["short_range"][0]) > 0.8
    assert np.mean(tgt >= counts["short_range"][1]) > 0.8


def test_reproducible_per_seed_and_index(video_sampler, image_sampler):
    for sampler in (video_sampler, image_sampler):
        a = sampler.sample_for_index(seed=7, index=11)
        b = sampler.sample_for_index(seed=7, index=11)
        c = sampler.sample_for_index(seed=8, index=11)
        d = sampler.sample_for_index(seed=7, index=12)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x["context"], y["context"])
            np.testing.assert_array_equal(x["target"], y["target"])
        assert any(
            not np.array_equal(x["context"], y["context"]) for x, y in zip(a, c, strict=True)
        )
        assert any(
            not np.array_equal(x["context"], y["context"]) for x, y in zip(a, d, strict=True)
        )


def test_edges_are_reachable_and_no_raster_bias(image_sampler):
    # The reference never covers the last row/column with a target and its truncation drops the
    # highest raster indices from the context; here every position is used.
    n = int(np.prod(IMAGE_GRID))
    tgt_hits = np.zeros(n)
    ctx_hits = np.zeros(n)
    for i in range(400):
        (m,) = image_sampler.sample_for_index(seed=1, index=i)
        np.add.at(tgt_hits, m["target"].ravel(), 1)
        np.add.at(ctx_hits, m["context"], 1)
    grid_t = tgt_hits.reshape(IMAGE_GRID)
    assert grid_t[-1].sum() > 0 and grid_t[:, -1].sum() > 0
    assert ctx_hits.min() > 0
    first_half, second_half = ctx_hits[: n // 2].sum(), ctx_hits[n // 2 :].sum()
    assert 0.8 < first_half / second_half < 1.25


def test_bad_mask_configs_are_clear_errors():
    with pytest.raises(MaskError, match="num_blocks"):
        BlockConfig(num_blocks=0, spatial_scale=(0.1, 0.2))
    with pytest.raises(MaskError, match="spatial_scale"):
        BlockConfig(num_blocks=1, spatial_scale=(0.3, 0.2))
    with pytest.raises(MaskError, match="needs a 3D token grid"):
        build_mask_sampler(config_recipes.vjepa_mask(), (8, 8))
    cfg = config_recipes.vjepa_mask()
    cfg.blocks.short_range.num_context = 10_000
    with pytest.raises(MaskError, match="num_context=10000"):
        build_mask_sampler(cfg, VIDEO_GRID)
    cfg = config_recipes.vjepa_mask()
    cfg.blocks.long_range.num_context = 400  # never this much context with 2 blocks at 0.7
    sampler = build_mask_sampler(cfg, VIDEO_GRID)
    with pytest.raises(MaskError, match="could not draw"):
        sampler.sample_for_index(0, 0)


def test_full_complement_with_temporal_keep_predicts_the_future():
    # V-JEPA 2's full_complement: the target is every token outside the context; with
    # max_temporal_keep 0.5 the context sees only the first half of the time steps and the
    # target holds every token of the second half.
    grid = (4, 6, 6)
    cfg = BlockConfig(
        num_blocks=2, spatial_scale=(0.15, 0.15), max_temporal_keep=0.5, full_complement=True
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        target, context = multiblock.draw_target_3d(rng, grid, cfg)
        np.testing.assert_array_equal(target, ~context)
        assert not context[2:].any() and target[2:].all()
        assert context[:2].any() and target[:2].any()  # the blocks still mask the past
    plain = BlockConfig(num_blocks=2, spatial_scale=(0.15, 0.15), max_temporal_keep=0.5)
    target, context = multiblock.draw_target_3d(np.random.default_rng(0), grid, plain)
    assert not target[2:].all()  # without it the future outside the blocks is dropped
