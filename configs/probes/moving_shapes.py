"""Probes of a moving-shapes encoder (the default job's) on the built-in labels.

Linear, attentive (V-JEPA probe, a 5 x 4 grid of learning rates x weight decays) and kNN probes
on 2000 labelled train clips, scored on 1000 test clips, for the checkpoint's encoder and, as
baselines, a random-init encoder and raw pixels. The data match configs/default.py (8-frame
32x32 clips). Arguments (`:key=value,...`):

  task=direction   the label to predict (shape, color, direction, position_cell)
  clips=1          temporal clips per video (>1 renders 16-frame videos, cut into 8-frame clips)
  views=1          spatial crops per clip (>1 renders 40x40 frames, cut into 32x32 crops)
  vjepa2           V-JEPA 2's probe (3 self-attention blocks first; slow on CPU)
  runlocal         a seconds-long smoke run (few examples, epochs and probes)

  jepa-jax eval --config=configs/probes/moving_shapes.py --workdir=workdirs/default/eval \\
      --checkpoint=workdirs/default
"""

from jepa_jax import config_lib


def get_config(arg=None):
    args = config_lib.parse_arg(
        arg, task="direction", clips=1, views=1, vjepa2=False, runlocal=False
    )
    c = config_lib.base_config()
    c.seed = 0
    c.data.name = "moving_shapes"
    c.data.num_frames = 8
    c.data.image_size = 32

    p = c.probe
    p.task = args.task
    p.num_train = 2000
    p.num_test = 1000
    p.batch_size = 64
    p.probes = ("linear", "attentive", "knn")
    p.baselines = ("random_init", "pixels")
    p.num_clips = args.clips
    p.num_views = args.views
    if args.clips > 1:
        c.data.num_frames = 16
        p.clip_frames = 8
    if args.views > 1:
        c.data.image_size = 40
        p.crop_size = 32
    p.attentive.epochs = 20
    if args.vjepa2:
        p.attentive.num_self_blocks = 3

    if args.runlocal:
        p.num_train = 64
        p.num_test = 32
        p.batch_size = 32
        p.attentive.epochs = 2
        p.attentive.batch_size = 16
        p.attentive.lrs = (1e-3, 1e-4)
        p.attentive.weight_decays = (0.01,)
        p.linear.steps = 50
    return c
