"""V-JEPA on Moving MNIST, generated on the fly from a local MNIST file (CPU- or GPU-sized).

The standard construction: 2 digits bouncing in 64x64 frames (jepa_jax/data/moving_mnist.py);
16-frame clips, a ViT-tiny with patch 8 and tubelet 2 (8x8x8 = 512 tokens), both V-JEPA masks.
Every sequence is new (100,000 per epoch) and carries its latent labels: the probe tasks
`digit_0`, `digit_1` (each digit's class) and `digit_sum`; positions and velocities are stored
too (regression targets, not probe tasks).

Get an MNIST file first (nothing is downloaded at run time), either of
  mnist.npz (Keras):   https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz
  idx (LeCun format):  train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz, side by side,
                       e.g. from https://ossci-datasets.s3.amazonaws.com/mnist/
then
  jepa-jax train --config=configs/vjepa_moving_mnist.py:mnist=/data/mnist.npz --workdir=runs/mm
  jepa-jax train --config=configs/vjepa_moving_mnist.py:mnist=/data/mnist.npz,runlocal \
      --workdir=/tmp/mm
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, mnist="", runlocal=False)
    c = config_lib.base_config()
    c.batch_size = 32
    c.total_steps = 5000

    c.data.name = "moving_mnist"
    c.data.path = args.mnist
    c.data.num_frames = 16
    c.data.image_size = 64
    c.data.num_examples = 100_000

    c.model.encoder.update(size="tiny", depth=6, patch_size=8, tubelet_size=2)
    c.model.predictor.update(width=96, depth=4, num_heads=3)

    c.mask = config_recipes.vjepa_mask()
    c.loss.type = "l1"

    c.optim.update(lr=1e-3, start_lr=2e-4, final_lr=1e-6, warmup_steps=300)
    c.ema = (0.996, 1.0)

    c.log_every = 50
    c.checkpoint_every = 1000
    c.probe.enabled = False  # the end-of-training probe needs the built-in labelled sets

    if args.runlocal:
        config_recipes.shrink_to_smoke_run(c, patch_size=8)  # 64 px: an 8x8 patch grid
        c.data.num_frames = 4
    return c
