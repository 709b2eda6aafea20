"""The V-JEPA 2 ViT-g/16 phase-1 recipe (vjepa2 `configs/train/vitg16/pretrain-256px-16f.yaml`).

ViT-giant as V-JEPA 2 builds it (1408 wide, 40 deep, 22 heads of 64, MLP 6144: ~1B params),
patch 16, tubelet 2, 16 frames at 256 px (2048 tokens); predictor 384 wide, 12 deep, 12 heads;
both V-JEPA masks; L1 loss; global batch 3072; 800 epochs x 300 = 240,000 steps with a 40-epoch
(12,000-step) warm-up from 1e-4 to a constant 5.25e-4 (phase 1 has lr == final_lr); weight decay
0.04 and EMA 0.99925, both constant; bf16. Mask counts at the 0.04 quantile, as
vjepa_vitl16.py explains (24 clips per GPU in the reference).

Positions are V-JEPA 2's 3D RoPE with its tiled frequency tables, in the encoder and the
predictor. Differences from the reference: clips come at frame_step 4 rather than 4 fps (see
vjepa_video_data); the released recipe then anneals in a cooldown phase at 64 frames, not
included here.

  jepa-jax train --config=configs/vjepa2_vitg16.py:videos=/data/mix.csv --workdir=gs://...
  jepa-jax compile --config=configs/vjepa2_vitg16.py --topology=v5p-256
  jepa-jax train --config=configs/vjepa2_vitg16.py:runlocal --workdir=/tmp/smoke    # seconds
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, videos="", shards="", runlocal=False)
    c = config_lib.base_config()
    c.batch_size = 3072
    c.total_steps = 800 * 300

    config_recipes.vjepa_video_data(c.data, args.videos, args.shards)
    c.data.image_size = 256
    c.data.num_threads = 4

    c.model.encoder.size = "giant_xformers"
    c.model.encoder.patch_size = 16
    c.model.encoder.tubelet_size = 2
    c.model.encoder.pos_embed = "rope"
    c.model.predictor.update(width=384, depth=12, num_heads=12, zero_init_mask_tokens=True)
    c.model.dtype = "bfloat16"
    # Scale: FSDP over every chip, scanned blocks, full activation recomputation (the reference
    # checkpoints every block too). `jepa-jax compile --topology=v5p-256` checks the fit.
    c.mesh.update(data=1, fsdp=-1)
    c.model.scan_layers = True
    c.model.remat_policy = "full"

    c.mask = config_recipes.vjepa_mask(count_quantile=0.04)
    c.loss.type = "l1"
    c.optim.update(
        lr=5.25e-4,
        start_lr=1e-4,
        final_lr=5.25e-4,
        warmup_steps=40 * 300,
        weight_decay=0.04,
        final_weight_decay=0.04,
        schedule_scale=1.0,
    )
    c.ema = (0.99925, 0.99925)
    c.log_every = 50
    c.checkpoint_every = 1000
    c.probe.enabled = False

    if args.runlocal:
        config_recipes.shrink_to_smoke_run(c)
        c.data.update(name="moving_shapes", num_frames=4, image_size=32)
        c.mask.count_quantile = 0.2
    return c
