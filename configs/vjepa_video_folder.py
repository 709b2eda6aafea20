"""V-JEPA on your own videos: a folder (or index file) of video files, on one accelerator.

The V-JEPA recipe's data handling, masks and schedule shapes (16 frames 4 apart, 224 px,
random-resized crop scale (0.3, 1.0) and aspect (0.75, 1.35), flip, both multiblock-3D masks, L1
loss, EMA 0.998 -> 1.0) with a ViT-B/16 and a batch of 64 sized for one GPU; the learning rate is
a starting point, not tuned. Videos are decoded with PyAV in 8 grain worker processes; any format
FFmpeg reads works (mp4, mkv, webm, avi, mov). Files that cannot be decoded or are shorter than
a clip (61 frames) are skipped and counted (`data/replaced`); more than 1% of failed reads stops
the run with an error naming them.

  jepa-jax train --config=configs/vjepa_video_folder.py:videos=/data/my_videos --workdir=runs/v
  jepa-jax train --config=configs/vjepa_video_folder.py:videos=/data/list.csv --workdir=runs/v

Decode once with `jepa-jax prepare`, then train from the shards (faster when decoding is the
bottleneck; the clip start is then fixed per video, crops stay random):

  jepa-jax prepare --config=configs/vjepa_video_folder.py:videos=/data/my_videos \
      --output=/data/shards
  jepa-jax train --config=configs/vjepa_video_folder.py:shards=/data/shards --workdir=runs/v

`:runlocal` (with videos= or shards=) trains a tiny model on 4-frame 32 px clips for a few steps.
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, videos="", shards="", runlocal=False)
    c = config_lib.base_config()
    c.batch_size = 64
    c.total_steps = 20_000

    config_recipes.vjepa_video_data(c.data, args.videos, args.shards)
    c.data.num_threads = 2

    c.model.encoder.size = "base"
    c.model.encoder.patch_size = 16
    c.model.encoder.tubelet_size = 2
    c.model.predictor.update(width=384, depth=6, num_heads=12, zero_init_mask_tokens=True)
    c.model.dtype = "bfloat16"

    c.mask = config_recipes.vjepa_mask()
    c.loss.type = "l1"

    c.optim.update(lr=3e-4, start_lr=1e-4, final_lr=1e-6, warmup_steps=2000, grad_clip_norm=10.0)
    c.ema = (0.998, 1.0)

    c.log_every = 50
    c.checkpoint_every = 1000
    c.probe.enabled = False  # the end-of-training probe needs the built-in labelled sets

    if args.runlocal:
        config_recipes.shrink_to_smoke_run(c)
        c.data.update(num_frames=4, frame_step=2, image_size=32)
        c.model.dtype = "float32"
    return c
