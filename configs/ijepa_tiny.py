"""Tiny I-JEPA on the built-in shapes images (CPU-sized).

A 6-block ViT-tiny on 32x32 images with patch 4 (an 8x8 token grid), I-JEPA multi-block masks
(4 target blocks, 1 context block), then a linear probe of the shape class. Collapse
prevention is configs/default.py's: SIGReg on a projection of the context tokens, weighted by
pixel deviation, no EMA target (the reference's EMA recipe collapses at this scale: on a folder
of hand-written digits its effective rank fell 12.6 -> 3.1 in 1000 steps, README "My run
collapsed").

  jepa-jax train --config=configs/ijepa_tiny.py --workdir=workdirs/ijepa_tiny
  jepa-jax train --config=configs/ijepa_tiny.py:runlocal --workdir=/tmp/ijepa_smoke
  jepa-jax eval --checkpoint=workdirs/ijepa_tiny --workdir=workdirs/ijepa_tiny/curve --all_steps \\
      --config.probe.probes="('linear',)" --config.probe.baselines="('random_init','pixels')"
      # its learning curve: the linear probe of every kept checkpoint (8, one per 125 steps)
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, runlocal=False)
    c = config_lib.base_config()
    c.total_steps = 1000
    c.batch_size = 64

    c.data.name = "shapes"
    c.data.image_size = 32

    c.model.encoder.size = "tiny"
    c.model.encoder.depth = 6
    c.model.encoder.patch_size = 4
    c.model.encoder.tubelet_size = 1
    c.model.predictor.width = 96
    c.model.predictor.depth = 4
    c.model.predictor.num_heads = 3
    c.model.predictor.zero_init_mask_tokens = False  # I-JEPA: trunc-normal mask token

    c.mask = config_recipes.ijepa_mask()
    c.loss.type = "smooth_l1"  # the I-JEPA code's loss

    c.optim.lr = 1e-3
    c.optim.start_lr = 2e-4
    c.optim.warmup_steps = 100
    c.ema = (0.996, 1.0)  # unused without an EMA target; kept for --config.target.ema=True
    c.target.ema = False
    c.regularizer.type = "sigreg"
    c.regularizer.token_weighting = "pixel_deviation"
    # configs/default.py's projector. Measured 2026-12-04 (2-core AMD EPYC, 1000 steps, linear
    # on pooled tokens, 2000 / 1000 images): shape .699, colour 1.000, start cell .903 (random
    # init .352 / .935 / .740, unpooled pixels .382 / .980 / .922) against .606 / .979 / .766
    # without it (2026-12-03, 2-core AVX-512).
    c.regularizer.projector = (768, 192)

    c.probe.enabled = True
    c.probe.task = "shape"
    # Eight checkpoints kept: `jepa-jax eval --all_steps` draws a learning curve from them
    # (docs/default_job_experiments.md, I-JEPA).
    c.checkpoint_every = 125
    c.keep_checkpoints = 8

    if args.runlocal:
        config_recipes.shrink_to_smoke_run(c)
        c.probe.num_train = 64
        c.probe.num_test = 32
    return c
