"""The V-JEPA 2.1 ViT-g/16 pretraining recipe (vjepa2 `app/vjepa_2_1`, its pretrain configs).

What 2.1 adds to V-JEPA 2 (../shared/reference/vjepa2_1_and_lam.md, section 1):
  * deep self-supervision: targets from blocks (9, 19, 29, 39), each with its own LayerNorm,
    a fusion MLP at the predictor input and predictions of all four levels;
  * the dense predictive loss: the predictor also predicts the visible tokens, weighted
    1/sqrt(distance to the nearest masked token), lambda 0.5 ramped in over steps 15k-30k;
  * fixed (interleaved) 3D RoPE with positions interpolated to a 16 x 16 reference grid, and a
    RoPE predictor 384 wide, 24 deep, 12 heads.
The rest is V-JEPA 2's: ViT-giant with 22 heads of 64 (~1B params), patch 16, tubelet 2, 16
frames at 256 px (2048 tokens), both multiblock-3D masks, L1, global batch 3072, AdamW with a
12k-step warm-up from 1e-4 to a constant 6e-4, weight decay 0.04 and EMA 0.99925 (both
constant), 1000 epochs x 300 = 300k steps with schedules stretched by ipe_scale 1.25, bf16.

Joint image + video training as the reference's: every step also trains on 4608 images at
256 px (the reference's 72 images on each of its 64 image ranks; 3072 clips on the 64 video
ranks), fed as one-frame clips through a tubelet-1 image tokenizer, with learned image / video
vectors on every token of the encoder and predictor, masked by 10 blocks at scale 0.15, the two
streams' losses weighted 0.5 / 0.5 (its rank_ratio). Images come from an image folder
(`images=DIR`) or, by default, TFDS imagenet2012 (the reference's ImageNet-1k).

Not reproduced: clips come at frame_step 4 rather than 4 fps; the 64-frame cooldown and the
384 px stage are not included.

  jepa-jax train --config=configs/vjepa21_vitg16.py:videos=/data/mix.csv,images=/data/in1k \
      --workdir=gs://...
  jepa-jax compile --config=configs/vjepa21_vitg16.py --topology=v5p-256
  jepa-jax train --config=configs/vjepa21_vitg16.py:cpu --workdir=/tmp/v21   # the default
      # job's size, data and positions with the 2.1 objective (minutes on a 2-core CPU)
  jepa-jax train --config=configs/vjepa21_vitg16.py:runlocal --workdir=/tmp/smoke   # seconds
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, videos="", shards="", images="", cpu=False, runlocal=False)
    c = config_lib.base_config()
    c.batch_size = 3072
    c.total_steps = 1000 * 300

    config_recipes.vjepa_video_data(c.data, args.videos, args.shards)
    c.data.image_size = 256
    c.data.num_threads = 4

    c.model.encoder.update(
        size="giant_xformers",
        patch_size=16,
        tubelet_size=2,
        pos_embed="rope_interleaved",
        rope_reference_grid=16,
        output_levels=(9, 19, 29, 39),
        image_tokenizer=True,
        modality_embedding=True,
    )
    c.images.update(batch_size=4608, loss_share=0.5)
    if args.images:
        c.images.data.update(name="image_folder", path=args.images)
    else:
        c.images.data.update(name="tfds_images", tfds_name="imagenet2012")
    c.images.data.update(image_size=256, crop_scale=(0.3, 1.0), flip=True, num_workers=8)
    c.images.mask = config_recipes.image_mask(count_quantile=0.04)
    c.model.predictor.update(width=384, depth=24, num_heads=12, zero_init_mask_tokens=True)
    c.model.dtype = "bfloat16"
    # Scale as the V-JEPA 2 ViT-g recipe: FSDP over every chip, scanned blocks, full
    # activation recomputation; `jepa-jax compile --topology=v5p-256` checks the fit.
    c.mesh.update(data=1, fsdp=-1)
    c.model.scan_layers = True
    c.model.remat_policy = "full"

    c.mask = config_recipes.vjepa_mask(count_quantile=0.04)
    c.loss.update(
        type="l1", context_weight=0.5, context_ramp=(15_000, 30_000), context_distance_weight=True
    )
    c.optim.update(
        lr=6e-4,
        start_lr=1e-4,
        final_lr=6e-4,
        warmup_steps=40 * 300,
        weight_decay=0.04,
        final_weight_decay=0.04,
        schedule_scale=1.25,
    )
    c.ema = (0.99925, 0.99925)
    c.log_every = 50
    c.checkpoint_every = 1000
    c.probe.enabled = False

    if args.cpu or args.runlocal:
        # configs/default.py's size, data, schedule and collapse prevention (SIGReg on the
        # context tokens, no EMA target: the EMA recipe collapses at this scale, see
        # docs/default_job_experiments.md), with the 2.1 objective and positions: four
        # levels of its 4 blocks, the dense loss ramped in over the first 100 steps, and
        # images beside the clips.
        c.batch_size, c.total_steps = 16, 350
        c.data.update(name="moving_shapes", num_frames=8, image_size=32, num_workers=0)
        c.data.update(num_threads=2, flip=False, crop_scale=(0.3, 1.0))
        # The image stream: the built-in still shapes at the clips' size, half the batch.
        c.images.update(batch_size=8)
        c.images.data.update(name="shapes", image_size=32, num_workers=0, flip=False)
        c.images.mask.count_quantile = 0.2
        c.model.encoder.update(size="tiny", depth=4, patch_size=4, output_levels=(0, 1, 2, 3))
        # Absolute sin-cos positions, not RoPE: at this scale a RoPE-only encoder gives every
        # patch of the smooth background nearly the same token wherever it is, which SIGReg
        # cannot spread (measured 2026-12-02: effective rank 37.6 -> 9 by step 75, the SIGReg
        # statistic ~180 against ~17 with sin-cos, the collapse guard firing).
        c.model.encoder.update(pos_embed="sincos", rope_reference_grid=0)
        c.model.predictor.update(width=96, depth=2, num_heads=3)
        c.model.update(dtype="float32", scan_layers=False, remat_policy="none")
        c.mesh.update(data=-1, fsdp=1)
        c.mask.count_quantile = 0.2
        c.loss.context_ramp = (0, 100)
        c.optim.update(lr=1e-3, start_lr=2e-4, final_lr=1e-6, warmup_steps=40, schedule_scale=1)
        c.optim.update(weight_decay=0.04, final_weight_decay=0.4)
        c.target.ema = False
        c.regularizer.type = "sigreg"
        c.log_every, c.checkpoint_every = 25, 50
    if args.runlocal:  # seconds; RoPE as the full recipe, so its code path is smoke-tested
        config_recipes.shrink_to_smoke_run(c)
        c.model.encoder.update(pos_embed="rope_interleaved", rope_reference_grid=16)
        c.data.update(num_frames=4)
        c.images.batch_size = 8
        c.model.encoder.output_levels = (0, 1)
        c.loss.context_ramp = (0, 2)
    return c
