"""Action-conditioned world model on the built-in Two Rooms environment, then planning with it.

A small ViT encoder (64x64x2 frames, one 64-px patch: 1 token) is trained jointly with a
block-causal action-conditioned predictor on exploratory trajectories generated on the fly
(random walls), with teacher-forcing + rollout L1 and the collapse regularisers. Sized to train
on a 2-core CPU in well under an hour.

  jepa-jax train --config=configs/ac_two_rooms.py --workdir=workdirs/ac_two_rooms
  jepa-jax plan --config=configs/ac_two_rooms.py --checkpoint=workdirs/ac_two_rooms --episodes=50
  jepa-jax train --config=configs/ac_two_rooms.py:runlocal --workdir=/tmp/ac   # seconds

`:arch=conv_gru` trains eb_jepa's architecture instead: a small conv encoder (one 32-d latent
per frame, input standardised per channel) and a residual GRU predictor, with eb_jepa's loss
rescaled to our units: squared error over an 8-step rollout; variance 16; covariance
8 / (D - 1) (ours sums the squared off-diagonal covariances / D, theirs averages over D (D - 1));
time similarity 48 / chunk^2 (eb_jepa's 12, x4 for the narrower latent; a model step here moves
the agent `action_chunk` env steps, and squared latent differences grow with the square of the
move); inverse dynamics 10 (ours regresses the chunk's mean action in units of max_norm =
2.5 px, eb_jepa the raw action in px, ~6-10x larger squared):

  jepa-jax train --config=configs/ac_two_rooms.py:arch=conv_gru --workdir=workdirs/ac_conv_gru

`:arch=conv_gru,local_view=24` adds what the plain model lacks, knowing the wall: the predictor
also reads the agent's position (a proprioceptive state, as V-JEPA 2-AC reads the arm's) and a
24 x 24 px window of the start frame's walls around it; the next position is free-space
kinematics braked by a passability learned from that window, and the latent's cell (an MLP of
128 units) reads the window and the predicted move (models/local_view.py):

  jepa-jax train --config=configs/ac_two_rooms.py:arch=conv_gru,local_view=24 --workdir=W

`distance_head=32` also learns a planning distance that counts model steps, through the door
(models/distance_head.py), and plans by a wavefront search in the model's imagination
(`plan.planner="search"`, planning/search.py) that trusts that distance only next to the goal
(`plan.distance="head"`): 98% of 50 random-wall episodes at under 1 s/episode:

  jepa-jax train --config=configs/ac_two_rooms.py:arch=conv_gru,local_view=24,distance_head=32 \
      --workdir=W
"""

from jepa_jax import config_lib, config_recipes


def get_config(arg=None):
    args = config_recipes.parse_arg(
        arg, runlocal=False, arch="vit_ac", local_view=0, distance_head=0
    )
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
        # One episode at a time: a replan is already a batch of 256 rollouts, and vmapped
        # episodes all run as long as the slowest (the failures' whole budget), so batching
        # them doubled the time per episode of the conv_gru recipes.
        parallel_episodes=1,
    )

    if args.arch == "conv_gru":
        # Latent size: the conv encoder's output and the GRU's hidden state. 32, not eb_jepa's
        # 512: with the variance hinge on every dimension, a wide latent fills its dimensions
        # with local, high-frequency features whose distance saturates a few px from the goal
        # (measured: D = 128 -> Spearman of latent distance vs distance-to-go 0.64 after 2000
        # steps; D = 32 -> 0.86 after 500).
        d = 32
        c.model.encoder.width = d
        chunk = c.world_model.action_chunk
        c.world_model.update(
            prediction_distance="l2",
            rollout_steps=8,
            teacher_forcing_weight=0.0,  # the rollout's first step is the teacher-forced one
            variance_weight=16.0,
            covariance_weight=8.0 / (d - 1),
            time_similarity_weight=48.0 / chunk**2,
            inverse_dynamics_weight=10.0,
        )
        c.total_steps = 1000
        c.optim.warmup_steps = 100
        # eb_jepa plans with the squared distance; a longer horizon and more iterations than the
        # token model's are affordable because a GRU step is a single cell application.
        c.plan.update(distance="l2", horizon=24, iterations=8)
    c.world_model.architecture = args.arch
    if args.local_view:  # conv_gru only: validation says so for the other architecture
        c.world_model.update(
            use_state=True, local_view=args.local_view, predictor_cell="mlp", predictor_hidden=128
        )
        # A model that knows the wall is accurate far enough to plan 48 steps ahead (192 env
        # steps; the reference plans 90), and with the L1 distance the summed energy grows
        # linearly with the distance, not quadratically, so the detour through the door costs
        # less than staying pressed against the wall near the goal (measured: horizon 24 / 48
        # with l2 74% / 80%, with l1 80% / 88%).
        c.plan.update(horizon=48, distance="l1")
    if args.distance_head:  # plan with a learned distance that knows the way round the wall
        c.world_model.distance_head = args.distance_head
        # Planned by the wavefront search (planning/search.py), not MPPI: MPPI follows the
        # head's distance downhill and sticks to the wall wherever it leaks through it
        # (measured, 50 episodes: MPPI horizon 24 88% at 2.0 s/episode, 48 86%); the search
        # trusts the head only within a step of the goal and finds the door through the
        # model's own dynamics: 98% at 0.9 s/episode. Depth 16 model steps (160 px at full
        # speed) reaches round the wall from anywhere in the arena.
        c.plan.update(distance="head", planner="search", horizon=16)

    c.log_every = 100
    c.checkpoint_every = 1000
    c.keep_checkpoints = 2

    if args.runlocal:  # a seconds-long smoke run
        c.total_steps = 4
        c.batch_size = 8
        c.world_model.num_steps = 4
        c.world_model.rollout_steps = min(c.world_model.rollout_steps, 4)
        c.model.encoder.update(depth=1, width=32, num_heads=2, mlp_dim=64)
        c.model.predictor.update(width=32, depth=1, num_heads=2)
        c.optim.warmup_steps = 2
        c.log_every = 1
        c.checkpoint_every = 2
        c.plan.update(horizon=4, samples=16, elites=4, iterations=2, max_steps=16)
        c.plan.update(episodes=2, parallel_episodes=2)
    return c
