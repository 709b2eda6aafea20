"""The V-JEPA ViT-L/16 video recipe (jepa `configs/pretrain/vitl16.yaml`).

ViT-large, patch 16, tubelet 2, 16 frames 4 apart at 224 px; predictor 384 wide, 12 deep, 16
heads, zero-init mask tokens; both V-JEPA multiblock-3D masks every step; L1 loss; global batch
3072 (24 per GPU x 128 GPUs in the reference); 300 epochs x 300 steps = 90,000 steps with 40
warm-up epochs (12,000 steps), schedules stretched by ipe_scale 1.25; lr 2e-4 -> 6.25e-4 ->
1e-6; weight decay 0.04 -> 0.4; EMA 0.998 -> 1.0; gradient-norm clip 10 (the reference clips
only after warm-up; here from the start); bf16 compute; seed 234. Augmentation:
random-resized crop, scale (0.3, 1.0), aspect (0.75, 1.35), horizontal flip.

Mask counts: `mask.count_quantile=0.04`. The reference truncates every mask in a batch to the
smallest in it, i.e. to the minimum over 24 clips per GPU; the expected minimum of 24 draws sits
near the 1/(24+1) ~ 0.04 quantile of the per-clip count distribution, so fixed counts at that
quantile keep about the reference's tokens per step.

Data: a video folder or an index file of `path [label]` lines (the reference's CSVs work as
they are), or shards from `jepa-jax prepare`:

  jepa-jax train --config=configs/vjepa_vitl16.py:videos=/data/k710/train.csv --workdir=...
  jepa-jax prepare --config=configs/vjepa_vitl16.py:videos=/data/k710/train.csv \
      --output=/data/k710-shards
  jepa-jax train --config=configs/vjepa_vitl16.py:shards=/data/k710-shards --workdir=...
  jepa-jax train --config=configs/vjepa_vitl16.py:runlocal --workdir=/tmp/smoke    # seconds

`:runlocal` keeps the recipe's structure but swaps in the built-in moving-shapes videos and a
tiny model.
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, videos="", shards="", runlocal=False)
    c = config_lib.base_config()
    c.seed = 234
    c.batch_size = 3072
    c.total_steps = 300 * 300

    config_recipes.vjepa_video_data(c.data, args.videos, args.shards)
    c.data.num_threads = 4

    c.model.encoder.size = "large"
    c.model.encoder.patch_size = 16
    c.model.encoder.tubelet_size = 2
    c.model.predictor.update(width=384, depth=12, num_heads=16, zero_init_mask_tokens=True)
    c.model.dtype = "bfloat16"
    # Scale: FSDP over every chip of a slice (params, EMA target and Adam state split 1/N each),
    # one traced block per stack (fast compiles), activations recomputed in the backward pass.
    # `jepa-jax compile --topology=v5p-128` shows this fits in 8 GiB of a v5p's 95 GiB per chip.
    c.mesh.update(data=1, fsdp=-1)
    c.model.scan_layers = True
    c.model.remat_policy = "full"

    c.mask = config_recipes.vjepa_mask(count_quantile=0.04)
    c.loss.type = "l1"

    c.optim.update(
        lr=6.25e-4,
        start_lr=2e-4,
        final_lr=1e-6,
        warmup_steps=40 * 300,
        weight_decay=0.04,
        final_weight_decay=0.4,
        grad_clip_norm=10.0,
        schedule_scale=1.25,
    )
    c.ema = (0.998, 1.0)

    c.log_every = 50
    c.checkpoint_every = 1000
    c.probe.enabled = False  # the end-of-training probe needs the built-in labelled sets

    if args.runlocal:
        config_recipes.shrink_to_smoke_run(c)
        c.data.update(name="moving_shapes", num_frames=4, image_size=32)
        # On a 2x8x8 token grid the long-range blocks cover everything in >4% of draws.
        c.mask.count_quantile = 0.2
    return c
