"""Tiny configs for tests: `tiny.py` (V-JEPA, video) or `tiny.py:image` (I-JEPA)."""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, image=False)
    c = config_lib.base_config()
    c.total_steps = 8
    c.batch_size = 8
    c.data.num_frames = 4
    c.data.image_size = 32
    c.data.num_examples = 512
    c.data.num_threads = 1
    c.data.prefetch = 2
    c.model.encoder.update(size="tiny", width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4)
    c.model.predictor.update(width=16, depth=1, num_heads=2)
    c.optim.update(lr=2e-3, start_lr=2e-3, warmup_steps=0)
    c.log_every = 1
    c.checkpoint_every = 4
    c.probe.update(num_train=64, num_test=32, batch_size=32)
    if args.image:  # I-JEPA on 32x32 images: an 8x8 token grid
        c.data.name = "shapes"
        c.model.encoder.tubelet_size = 1
        c.mask = config_recipes.ijepa_mask()
        c.probe.task = "shape"
    return c
