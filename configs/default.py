"""The README's default job: a tiny V-JEPA on the built-in moving-shapes videos, on CPU.

Trains a 6-block ViT-tiny on 8-frame 32x32 clips (tubelet 2, patch 4: 256 tokens) with both
V-JEPA masks, then linear-probes the frozen encoder against a random-init one.

  jepa-jax train --config=configs/default.py --workdir=workdirs/default
  jepa-jax train --config=configs/default.py:runlocal --workdir=/tmp/smoke   # seconds, for tests
"""

from jepa_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(arg, runlocal=False)
    c = config_lib.base_config()
    c.seed = 0
    c.total_steps = 1200
    c.batch_size = 32

    c.data.name = "moving_shapes"
    c.data.num_frames = 8
    c.data.image_size = 32

    c.model.encoder.size = "tiny"
    c.model.encoder.depth = 6
    c.model.encoder.patch_size = 4
    c.model.encoder.tubelet_size = 2
    c.model.predictor.width = 96
    c.model.predictor.depth = 4
    c.model.predictor.num_heads = 3

    c.optim.lr = 1e-3
    c.optim.start_lr = 2e-4
    c.optim.final_lr = 1e-6
    c.optim.warmup_steps = 100
    c.ema = (0.996, 1.0)

    c.log_every = 50
    c.checkpoint_every = 400
    c.probe.enabled = True
    c.probe.task = "direction"
    c.probe.num_train = 2000
    c.probe.num_test = 1000

    if args.runlocal:  # a seconds-long smoke run
        c.total_steps = 4
        c.batch_size = 8
        c.model.encoder.depth = 2
        c.model.predictor.depth = 1
        c.optim.warmup_steps = 2
        c.log_every = 1
        c.checkpoint_every = 2
        c.probe.num_train = 64
        c.probe.num_test = 32
    return c
