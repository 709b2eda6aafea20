"""Probes of a moving-shapes encoder (the default job's) on the built-in labels.

Linear, attentive (V-JEPA probe, a 7 x 4 grid of learning rates x weight decays) and kNN probes
on labelled train clips, scored on test clips, for the checkpoint's encoder and, as baselines, a
random-init encoder and raw pixels (unpooled for linear and kNN). The data section, the default
task and the example counts are configs/default.py's (read from that file, so the two stay in
step). Arguments
(`:key=value,...`):

  task=            the label to predict (shape, color, direction, position_cell); default: the
                   default run's config.probe.task
  clips=1          temporal clips per video (>1 renders videos `clips` times as long, cut into
                   clips of the training length)
  views=1          spatial crops per clip (>1 renders frames 1.25x as large, cut into crops of
                   the training size)
  vjepa2           V-JEPA 2's probe (3 self-attention blocks first; slow on CPU)
  runlocal         a seconds-long smoke run (few examples, epochs and probes)

  jepa-jax eval --config=configs/probes/moving_shapes.py --workdir=workdirs/default/eval \\
      --checkpoint=workdirs/default
"""

import importlib.util
import os

from jepa_jax import config_lib, config_recipes


def default_run_config():
    """configs/default.py's config (the run these probes evaluate)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "default.py")
    spec = importlib.util.spec_from_file_location("jepa_jax_default_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, task="", clips=1, views=1, vjepa2=False, runlocal=False)
    run = default_run_config()
    c = config_lib.base_config()
    c.seed = 0
    c.data = run.data
    frames, size = int(run.data.num_frames), int(run.data.image_size)

    p = c.probe
    p.task = args.task or run.probe.task
    p.num_train = run.probe.num_train
    p.num_test = run.probe.num_test
    p.batch_size = 64
    p.probes = ("linear", "attentive", "knn")
    p.baselines = ("random_init", "pixels")
    p.num_clips = args.clips
    p.num_views = args.views
    if args.clips > 1:
        c.data.num_frames = frames * args.clips
        p.clip_frames = frames
    if args.views > 1:
        c.data.image_size = size + size // 4
        p.crop_size = size
    p.attentive.epochs = 20
    if args.vjepa2:
        p.attentive.num_self_blocks = 3

    if args.runlocal:
        p.num_train = 64
        p.num_test = 32
        p.batch_size = 32
        p.attentive.epochs = 2
        p.attentive.min_steps = 0
        p.attentive.batch_size = 16
        p.attentive.lrs = (1e-3, 1e-4)
        p.attentive.weight_decays = (0.01,)
        p.linear.steps = 50
    return c
