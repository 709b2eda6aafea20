"""The I-JEPA ViT-H/14 ImageNet-1k recipe (ijepa `configs/in1k_vith14_ep300.yaml`).

ViT-huge, patch 14, 224 px; predictor 384 wide, 12 deep, 16 heads with a trunc-normal mask
token; multi-block masks (4 targets at 0.15-0.2, context 0.85-1.0); smooth-L1 loss; global batch
2048 (128 per GPU x 16 A100s in the reference); 300 epochs x 625 steps = 187,500 steps with 40
warm-up epochs (25,000 steps); lr 2e-4 -> 1e-3 -> 1e-6 (cosine); weight decay 0.04 -> 0.4; EMA
0.996 -> 1.0; bf16 compute. Augmentation: RandomResizedCrop scale (0.3, 1.0), no flip.

Data: an ImageNet train folder with one subfolder per class (ImageFolder layout), or an index
file of `path label` lines:

  jepa-jax train --config=configs/ijepa_vith14_in1k.py:train=/data/imagenet/train --workdir=...
  jepa-jax train --config=configs/ijepa_vith14_in1k.py:train=/data/in1k/train,val=/data/in1k/val
  jepa-jax train --config=configs/ijepa_vith14_in1k.py:runlocal --workdir=/tmp/smoke  # seconds

`:runlocal` keeps the recipe's structure but swaps in the built-in shapes images and a tiny
model, for smoke tests on a laptop.
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, train="", val="", runlocal=False)
    c = config_lib.base_config()
    c.seed = 0
    c.batch_size = 2048
    c.total_steps = 300 * 625

    c.data.name = "image_folder"
    c.data.path = args.train
    c.data.test_path = args.val
    c.data.image_size = 224
    c.data.crop_scale = (0.3, 1.0)
    c.data.flip = False
    c.data.num_workers = 8
    c.data.num_threads = 4

    c.model.encoder.size = "huge"
    c.model.encoder.patch_size = 14
    c.model.encoder.tubelet_size = 1
    c.model.predictor.update(width=384, depth=12, num_heads=16, zero_init_mask_tokens=False)
    c.model.dtype = "bfloat16"
    # Scale: FSDP over the slice, scanned blocks, recomputed activations (see vjepa_vitl16.py).
    c.mesh.update(data=1, fsdp=-1)
    c.model.scan_layers = True
    c.model.remat_policy = "full"

    c.mask = config_recipes.ijepa_mask()
    c.loss.type = "smooth_l1"

    c.optim.update(
        lr=1e-3,
        start_lr=2e-4,
        final_lr=1e-6,
        warmup_steps=40 * 625,
        weight_decay=0.04,
        final_weight_decay=0.4,
        schedule_scale=1.0,
    )
    c.ema = (0.996, 1.0)

    c.log_every = 50
    c.checkpoint_every = 2500
    c.probe.enabled = False  # the end-of-training probe needs the built-in labelled sets

    if args.runlocal:
        config_recipes.shrink_to_smoke_run(c)
        c.data.update(name="shapes", image_size=32)
    return c
