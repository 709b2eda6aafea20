"""Action-conditioned world model on the built-in Two Rooms environment, then planning with it.

A small ViT encoder (64x64x2 frames, one 64-px patch: 1 token) is trained jointly with a
block-causal action-conditioned predictor on exploratory trajectories generated on the fly
(random walls), with teacher-forcing + rollout L1 and the collapse regularisers. Sized to train
on a 2-core CPU in well under an hour.

  jepa-jax train --config=configs/ac_two_rooms.py --workdir=workdirs/ac_two_rooms
  jepa-jax plan --config=configs/ac_two_rooms.py --checkpoint=workdirs/ac_two_rooms --episodes=50
  jepa-jax train --config=configs/ac_two_rooms.py:runlocal --workdir=/tmp/ac   # seconds
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(arg, runlocal=False)
    c = config_lib.base_config("world_model")
    c.seed = 0
    c.total_steps = 6000
    c.batch_size = 64

    c.env.fixed_wall = False  # a new wall and door position for every trajectory and episode

    # One 64-px patch: the latent of a frame is one 128-d token, which keeps the planner's
    # rollouts (samples x iterations x horizon predictor steps per replan) cheap on a CPU.
    c.model.encoder.update(
        size="tiny", width=128, depth=2, num_heads=4, mlp_dim=256, patch_size=64, tubelet_size=1
    )
    c.model.predictor.update(width=64, depth=3, num_heads=4, mlp_ratio=4.0)

    c.world_model.update(
        action_chunk=4,
        num_steps=8,
        rollout_steps=3,
        encoder_trainable=True,
    )

    c.optim.update(
        lr=1e-3,
        start_lr=1e-4,
        final_lr=1e-5,
        warmup_steps=300,
        weight_decay=1e-5,
        final_weight_decay=1e-5,
        grad_clip_norm=2.0,
    )

    c.plan.update(
        planner="mppi",
        horizon=16,
        samples=256,
        elites=32,
        iterations=4,
        max_steps=200,
    )

    c.log_every = 100
    c.checkpoint_every = 1000
    c.keep_checkpoints = 2

    if args.runlocal:  # a seconds-long smoke run
        c.total_steps = 4
        c.batch_size = 8
        c.world_model.num_steps = 4
        c.model.encoder.update(depth=1, width=32, num_heads=2, mlp_dim=64)
        c.model.predictor.update(width=32, depth=1, num_heads=2)
        c.optim.warmup_steps = 2
        c.log_every = 1
        c.checkpoint_every = 2
        c.plan.update(horizon=4, samples=16, elites=4, iterations=2, max_steps=16)
        c.plan.update(episodes=2, parallel_episodes=2)
    return c
