"""The train-step benchmark's default: the configuration the PyTorch reference was timed at.

vit_tiny encoder (192 wide, 12 deep, 3 heads), predictor 96 wide, 6 deep (3 heads, as the
reference: predictor heads = encoder heads), 16 frames of 64x64, patch 8, tubelet 2
(512 tokens), batch 4, fp32, both V-JEPA masks every step.

  python benchmarks/train_step.py                      # this config
  python benchmarks/train_step.py --config=configs/vjepa_vitl16.py:runlocal
"""

from jepa_jax import config_lib


def get_config(arg=None):
    del arg
    c = config_lib.base_config()
    c.batch_size = 4
    c.data.name = "moving_shapes"
    c.data.num_frames = 16
    c.data.image_size = 64
    c.model.encoder.size = "tiny"
    c.model.encoder.patch_size = 8
    c.model.encoder.tubelet_size = 2
    c.model.predictor.update(width=96, depth=6, num_heads=3)
    c.model.dtype = "float32"
    return c
