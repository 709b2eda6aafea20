"""The config schema: every key a training config has, per method, and the run-level checks.

A config file defines `get_config(arg=None)` returning an `ml_collections.ConfigDict`; it starts
from `base_config(method)` and changes what differs (recipes and the `:arg` parser are in
jepa_jax/config_recipes.py), so every config has every key of its method and a typo'd override
(`--config.optim.lrr=1`) is an error rather than a silently new field. The run's keys (steps,
batch, model, optimizer, mesh, logging, checkpoints) are shared; each method adds its own
sections, so a JEPA run carries no planning keys and a world-model run no masks or probes.
Method-specific checks live beside the code they protect (train/setup.py,
world_model/setup.py, train/regularizers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from jepa_jax import config_recipes
from jepa_jax.errors import ConfigError, need

METHODS = ("jepa", "world_model")  # config.method: the training loop `jepa-jax train` runs
# The sections each method adds to the run's keys (see base_config).
METHOD_SECTIONS = {
    "jepa": ("data", "images", "mask", "loss", "ema", "target", "regularizer", "probe"),
    "world_model": ("env", "world_model", "plan"),
}


def base_config(method: str = "jepa") -> ml_collections.ConfigDict:
    """Every key a training config of `method` has (one of METHODS: "jepa" for I-JEPA / V-JEPA
    pretraining, the values of a tiny CPU V-JEPA run; "world_model" for the action-conditioned
    Two Rooms world model and its planner); ConfigError for another method."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not a training method: expected one of {METHODS}")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 32  # global, over all processes and devices
    # Gradient accumulation: each step runs the batch as this many equal slices (same result,
    # ~1/microbatches of the activation memory).
    c.microbatches = 1
    # A step whose loss or gradient is not finite is never applied (train.nonfinite). "stop":
    # end the run with one line naming the step and the last good checkpoint; "skip_step": go on
    # with the next batch (stopping after 10 such steps in a row).
    c.nan_policy = "stop"
    # JAX's persistent compilation cache (jepa_jax/compile_cache.py): "workdir" =
    # <workdir>/compile_cache (a resumed run loads its executables instead of compiling), a path
    # = a cache shared by every run that names it, "" = off.
    c.compile_cache_dir = "workdir"
    # Collapse guard (train/runner.py): a logged step whose effective rank of the target features
    # is below collapse_rank_fraction x the run's first logged rank is flagged ("collapse" in
    # metrics.jsonl / TensorBoard, a warning once); stop_on_collapse ends the run there.
    c.collapse_rank_fraction = 0.3
    c.stop_on_collapse = False

    c.model = ml_collections.ConfigDict()
    c.model.encoder = ml_collections.ConfigDict(
        dict(
            size="tiny",
            width=config_dict.placeholder(int),  # overrides of the preset
            depth=config_dict.placeholder(int),
            num_heads=config_dict.placeholder(int),
            mlp_dim=config_dict.placeholder(int),
            patch_size=4,
            tubelet_size=2,
            uniform_power=True,
            # sincos | sincos_wh (I-JEPA's 2D channel order) | rope (V-JEPA 2 3D RoPE in every
            # attention layer of the encoder and predictor, no absolute table; its tiled
            # frequencies) | rope_interleaved (V-JEPA 2.1's fixed frequencies); models/rope.py
            pos_embed="sincos",
            # RoPE only: rescale row/column positions to this grid side (V-JEPA 2.1's
            # interpolate_rope: 16 for patch 16); 0 = off.
            rope_reference_grid=0,
            # V-JEPA 2.1 deep self-supervision: 0-based block indices (ending at the last block)
            # whose normed outputs are all predicted; () = the last block only. The reference's
            # are 4 levels, e.g. (2, 5, 8, 11) at depth 12; probes read the last level.
            output_levels=(),
            # V-JEPA 2.1: a tubelet-1 patch embedding for images (one-frame clips) beside the
            # video one, and learned image / video vectors added to every token of the encoder
            # and predictor (joint image + video training, config.images).
            image_tokenizer=False,
            modality_embedding=False,
        )
    )
    c.model.predictor = ml_collections.ConfigDict(
        dict(width=96, depth=6, num_heads=3, mlp_ratio=4.0, zero_init_mask_tokens=True)
    )
    c.model.dtype = "float32"  # compute dtype; params and optimizer state stay float32
    c.model.gelu_approximate = False  # the reference uses exact (erf) GELU
    c.model.scan_layers = False
    c.model.remat_policy = "none"
    # auto: cuDNN's fused attention on GPU where jax accepts it (bf16/fp16), else XLA's; einsum
    # elsewhere (faster than dot_product_attention's generic XLA path on CPU). models/layers.py.
    c.model.attention_impl = "auto"

    c.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-3,
            start_lr=2e-4,
            final_lr=1e-6,
            warmup_steps=100,
            weight_decay=0.04,
            final_weight_decay=0.4,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip_norm=0.0,  # 0 = off
            schedule_scale=1.0,  # the reference's ipe_scale: schedules span scale*total_steps
        )
    )
    # Mesh axis sizes within a slice (ICI); -1 fills the rest. dcn_* multiply them across slices
    # (multi-slice TPU) or hosts (GPU nodes): axis size = ici * dcn, with the DCN part outermost.
    c.mesh = ml_collections.ConfigDict(
        dict(data=-1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1, dcn_tensor=1)
    )
    from jepa_jax.sharding import DEFAULT_LOGICAL_AXIS_RULES  # local: sharding imports jax

    c.logical_axis_rules = DEFAULT_LOGICAL_AXIS_RULES

    c.log_every = 50
    c.checkpoint_every = 500
    c.keep_checkpoints = 3

    c.method = method
    if method == "jepa":
        _add_jepa_sections(c)
    else:
        c.env = env_config()
        c.world_model = world_model_config()
        c.plan = plan_config()
    return c


def data_section(name: str = "moving_shapes") -> ml_collections.ConfigDict:
    """A `data` section: which source and how it is read (config.data, config.images.data)."""
    d = ml_collections.ConfigDict()
    d.name = name  # a source registered in jepa_jax.data.sources
    d.num_frames = 8  # video only (ignored by image sources)
    d.image_size = 32
    d.num_examples = 100_000
    d.seed = 0  # seeds the procedural content of the built-in sets
    # Richness of the built-in shapes sets' scenes (data/synthetic.py SceneStyle): smaller
    # distractor objects moving their own ways (clutter, occlusion) and a random texture over
    # the background. Labels always describe the one large object.
    d.distractors = 0
    d.texture = False
    d.num_threads = 2  # grain reader threads (per worker process when num_workers > 0)
    d.prefetch = 4  # batches prefetched by grain (per worker process when num_workers > 0)
    # grain worker processes that decode, crop and mask (0: in the training process). Same
    # batches for any value; the workers' positions are saved in checkpoints.
    d.num_workers = 0
    # File-backed sources (jepa_jax/data/sources.py). path: the train split's folder / index
    # file (video_files, image_folder), `jepa-jax prepare` output (clip_shards), MNIST file
    # (moving_mnist) or TFDS data dir (tfds_*, "" = TFDS default); test_path: the same for the
    # 'test' split (probes).
    d.path = ""
    d.test_path = ""
    d.tfds_name = ""  # tfds_images / tfds_video: "name[/config][:version]"
    d.train_split = "train"  # TFDS split names (slices allowed: "train[:90%]")
    d.test_split = "test"
    d.pixels_key = "image"  # TFDS feature with the pixels ("video" for video sets)
    d.label_key = "label"  # TFDS int feature kept as labels["label"]; "" = none
    # Clips: num_frames frames frame_step apart from a random start; fps > 0 instead sets the
    # step per video to round(video fps / fps). clips_per_video > 1 splits each video into that
    # many segments, one example each (the reference's num_clips).
    d.frame_step = 4
    d.fps = 0.0
    d.clips_per_video = 1
    # Views of decoded sources: random-resized crop to image_size (torchvision's algorithm, area
    # fraction and aspect ranges), optional horizontal flip; eval views centre-crop this fraction
    # of the short side. Pixels stay uint8; the train step normalises on device.
    d.crop_scale = (0.3, 1.0)
    d.crop_aspect = (3 / 4, 4 / 3)
    d.flip = False
    d.eval_crop_fraction = 0.875
    # Unreadable inputs are replaced by others and counted (data/replaced); more than this
    # fraction of failed reads stops the run with an error naming files.
    d.max_bad_fraction = 0.01
    return d


def _add_jepa_sections(c: ml_collections.ConfigDict) -> None:
    """The sections of a JEPA pretraining run (method "jepa"): data, masks, loss, EMA target,
    collapse regularizer and probes."""
    c.data = data_section()

    # Start a fresh run from the weights of an export directory (`jepa-jax export`, or released
    # weights converted by `jepa-jax import`): its encoder becomes the online and target encoder
    # and, with init_predictor, its predictor (when it stores one) the predictor; they must fit
    # config.model. "" = random init. A resumed run reads its checkpoint instead.
    c.init_from = ""
    c.init_predictor = True

    c.mask = config_recipes.vjepa_mask()
    # V-JEPA 2.1's joint image + video training (train/objective.py): with batch_size > 0 every
    # step also trains on batch_size images of images.data (an image source), fed as one-frame
    # clips through the encoder's image tokenizer (model.encoder.image_tokenizer) and masked
    # with images.mask on their 1 x H/p x W/p token grid. Loss = (1 - loss_share) * video loss
    # + loss_share * image loss (the reference reads images on half of its ranks: 0.5).
    c.images = ml_collections.ConfigDict(dict(batch_size=0, loss_share=0.5))
    c.images.data = data_section("shapes")
    c.images.mask = config_recipes.image_mask()

    # type: l1 | l2 | smooth_l1. context_weight > 0 turns on V-JEPA 2.1's dense predictive loss
    # (train/objective.py): the predictor also predicts the context tokens' target features,
    # weighted by lambda ramped from 0 to context_weight over the steps context_ramp=(start, end)
    # (constant when end <= start), optionally 1/sqrt(distance to the nearest target token).
    c.loss = ml_collections.ConfigDict(
        dict(type="l1", context_weight=0.0, context_ramp=(0, 0), context_distance_weight=False)
    )

    c.ema = (0.998, 1.0)  # EMA momentum, linear from ema[0] to ema[1] over the schedule
    # Target encoder. ema=False: the target is the online encoder (target_params then track
    # params exactly, momentum 0, so exports still read target_params); stop_gradient=False
    # (needs ema=False) also lets the gradient flow through the target features.
    c.target = ml_collections.ConfigDict(dict(ema=True, stop_gradient=True))
    # Collapse regularizer on the context encoder's output tokens (train/regularizers.py):
    # none | vicreg (variance hinge + vicreg_covariance_weight * covariance) | sigreg (LeJEPA:
    # Epps-Pulley statistic of num_slices random 1-D projections, trapezoid on [0, t_max] with
    # num_points nodes, odd). Loss = prediction loss + weight * regularizer.
    c.regularizer = ml_collections.ConfigDict(
        dict(
            type="none",
            weight=0.05,
            num_slices=256,
            t_max=3.0,
            num_points=17,
            vicreg_covariance_weight=0.04,
            # SIGReg's samples: "uniform" (every context token alike) or "pixel_deviation"
            # (tokens weighted by how far their pixels stand out from their clip's mean patch,
            # so content rather than plain background fills the regularized distribution).
            token_weighting="uniform",
            # (hidden, out): the regularizer acts on an MLP projection of each token
            # (models/projector.py, LeJEPA's projector) instead of on the tokens themselves,
            # so the encoder's output, which probes and exports read, is not forced to be an
            # isotropic Gaussian. () = on the tokens.
            projector=(),
        )
    )

    # Probes of frozen features. enabled/task/num_train/num_test/batch_size also drive the
    # end-of-training linear probe; the rest is for `jepa-jax eval` (eval/suite.py), which reads
    # labelled examples of config.data.
    c.probe = ml_collections.ConfigDict(
        dict(
            enabled=False,
            task="shape",  # the class label to predict (jepa_jax.data.labels: any int label)
            num_train=2000,  # labelled examples of the train split the probes learn from
            num_test=1000,  # examples of the test split they are scored on
            batch_size=64,  # examples per encoder forward pass
            num_classes=config_dict.placeholder(int),  # None: the built-in count, else max label+1
            # Which probes `jepa-jax eval` runs: linear, attentive, knn, and dense (a linear
            # classifier per token on the per-pixel label `dense_label`, pooled to the token
            # grid, scored by mean IoU: eval/dense_probe.py).
            probes=("linear", "attentive", "knn"),
            dense_label="shape_map",
            # The same probes on comparison features: "random_init" (the same encoder, randomly
            # initialised) and "pixels" (raw pixels: patches as tokens for the attentive probe,
            # every pixel flattened, unpooled, for the linear probe and kNN).
            baselines=(),
            # Views per example: num_clips evenly spaced clips of clip_frames frames, each cut
            # into num_views crop_size crops along the diagonal; probabilities are averaged.
            clip_frames=config_dict.placeholder(int),  # None: the encoder's training clip length
            num_clips=1,
            crop_size=config_dict.placeholder(int),  # None: the encoder's training image size
            num_views=1,
            # Linear probe on average-pooled tokens, standardised with train statistics; the
            # averages of the last last_k_blocks blocks (each final-normed) are concatenated.
            linear=dict(last_k_blocks=1, l2=(1e-4, 1e-3, 1e-2, 1e-1), steps=2000, lr=0.01),
            # Attentive probe grid (lrs x weight_decays trained in parallel, AdamW, cosine):
            # num_self_blocks 0 is V-JEPA's probe, 3 V-JEPA 2's; num_heads None: the encoder's.
            attentive=dict(
                num_self_blocks=0,
                num_heads=config_dict.placeholder(int),
                lrs=(3e-2, 1e-2, 5e-3, 3e-3, 1e-3, 3e-4, 1e-4),
                weight_decays=(0.01, 0.1, 0.4, 0.8),
                epochs=20,
                # At least this many optimizer steps (more epochs on small sets): measured on
                # 640 clips (10 steps per epoch), 20 epochs left a random encoder's shape probe
                # at .39 +- .11 over seeds and 60 epochs gave .88 +- .02.
                min_steps=600,
                batch_size=64,
                val_fraction=0.2,  # held out of the train examples to pick (lr, wd)
            ),
            knn=dict(k=20, temperature=0.07),  # cosine kNN; votes weighted exp(sim/temperature)
            # Also linear / kNN on all tokens flattened (unpooled), reported as linear_flat /
            # knn_flat, when tokens x width is at most this (0: off). Pooling discards where
            # things are; this is the fair comparison with the unpooled pixel baseline.
            flat_tokens_max_dim=65536,
        )
    )


def env_config() -> ml_collections.ConfigDict:
    """The built-in Two Rooms environment (jepa_jax.envs.two_rooms); lengths in pixels."""
    return ml_collections.ConfigDict(
        dict(
            image_size=64,  # observations are [image_size, image_size, 2]: agent, walls
            border=2.0,  # border wall thickness
            wall_width=3.0,  # thickness of the middle wall
            door_height=9.0,  # height of the door in the middle wall
            wall_x_range=(20.0, 44.0),  # wall x drawn per episode (integers in range)
            door_y_range=(10.0, 54.0),  # door centre y drawn per episode
            fixed_wall=False,  # True: always the fixed_layout (wall_x, door_y)
            fixed_layout=(32.0, 18.0),
            max_norm=2.5,  # an action is a displacement; longer ones are clipped to this norm
            substeps=4,  # collision sub-steps per step
            dot_std=1.5,  # the agent is drawn as a Gaussian blob of this std
        )
    )


def world_model_config() -> ml_collections.ConfigDict:
    """Action-conditioned world model training (method "world_model"). The encoder and the
    predictor use `model.encoder` and `model.predictor`; data are exploratory trajectories made
    on the fly from (seed, step)."""
    return ml_collections.ConfigDict(
        dict(
            # vit_ac: ViT patch tokens + block-causal transformer predictor (V-JEPA 2-AC);
            # conv_gru: conv encoder, one latent per frame (size model.encoder.width) + GRU
            # predictor whose hidden state is the latent (eb_jepa's Two Rooms model).
            architecture="vit_ac",
            conv_channels=(16, 32, 32),  # conv_gru: channels of the stride-2 convolutions
            # conv_gru predictor: "gru" (eb_jepa's cell) or "mlp" (a residual MLP on [latent,
            # action features]), and its hidden width (0 = the latent size).
            predictor_cell="gru",
            predictor_hidden=0,
            prediction_distance="l1",  # l1 | l2: teacher-forcing and rollout loss
            action_chunk=4,  # env steps per model step: the action token is their k actions
            num_steps=8,  # model steps per training sequence (num_steps + 1 frames)
            heading_std=0.45,  # exploration: heading drift per env step, radians
            step_min=0.2,  # exploration: shortest step as a fraction of env.max_norm
            door_rate=0.35,  # exploration: fraction of trajectories aimed through the door
            use_state=False,  # add a proprioceptive state token (the agent's position)
            # conv_gru with use_state: side (px, even) of an egocentric window of the start
            # frame's walls around the agent that the predictor reads; the next state is then
            # free-space kinematics with a passability learned from it; 0 = none. See
            # models/local_view.py.
            local_view=0,
            encoder_trainable=True,  # False: frozen (random-init) encoder features
            rollout_steps=2,  # steps of the autoregressive rollout loss (V-JEPA 2-AC: 2)
            # Loss weights. The last four are the collapse regularisers for a jointly trained
            # encoder (eb_jepa): variance hinge, covariance, temporal similarity and an
            # inverse-dynamics head; they are ignored when the encoder is frozen.
            teacher_forcing_weight=1.0,
            rollout_weight=1.0,
            variance_weight=1.0,
            covariance_weight=0.5,
            time_similarity_weight=0.0,
            inverse_dynamics_weight=1.0,
            state_weight=0.01,  # local_view: squared error of the predicted states, px^2
            # A learned planning distance (plan.distance="head"): features of this size whose
            # distance counts the model steps between two frames of a scene, learned from the
            # transitions and `distance_goals` frames of random positions per sequence; 0 =
            # none. See models/distance_head.py.
            distance_head=0,
            distance_goals=8,
            distance_weight=1.0,
            variance_target=1.0,  # the variance hinge wants each latent dim's std >= this
            idm_hidden=256,  # inverse-dynamics MLP width
        )
    )


def plan_config() -> ml_collections.ConfigDict:
    """Planning in latent space with CEM or MPPI inside an MPC loop (`jepa-jax plan`)."""
    return ml_collections.ConfigDict(
        dict(
            planner="mppi",  # cem | mppi | search (planning/search.py)
            horizon=16,  # model steps planned ahead (search: its depth)
            samples=256,  # action sequences rolled out per iteration
            elites=32,  # best samples kept per iteration
            iterations=4,
            init_std=1.0,  # initial sampling std, in units of env.max_norm
            temperature=0.5,  # MPPI: weight exp(-(c - c_min) / (temperature * elite spread))
            energy="sum",  # sum: distance summed over the rollout | last: final step only
            # planner="search": breadth-first in imagination over `search_directions` headings x
            # `search_speeds` (units of max_norm); keeps up to `search_width` imagined states per
            # depth at least `search_merge_px` apart; trusts the distance head below
            # `search_goal_steps` model steps (needs distance="head" and world_model.local_view).
            search_width=96,
            search_merge_px=3.0,
            search_goal_steps=1.0,
            search_directions=8,
            search_speeds=(1.0, 0.5),
            # l1 | l2: latent distance to the goal embedding; head: the world model's learned
            # distance head (world_model.distance_head > 0)
            distance="l1",
            context_steps=1,  # latents the predictor sees during rollouts (a sliding window)
            replan_every=1,  # model steps executed before replanning
            warm_start=True,  # start from the previous plan, shifted, instead of mean 0
            hold_actions=True,  # one action per model step, repeated for its env steps
            # Model steps each planned action is held for: horizon / action_repeat actions are
            # searched, so the same samples explore farther (e.g. around the wall).
            action_repeat=1,
            max_steps=200,  # env steps allowed per episode
            success_radius=4.5,  # success: within this distance of the goal (pixels)
            # True: the agent stops on arrival (first-arrival success); False: every episode
            # runs max_steps, replanning at the goal, as eb_jepa's evaluation (whose success is
            # the position after the last step); both rules are reported either way.
            stop_at_goal=True,
            start_margin=2.6,  # start and goal at least this far from walls
            episodes=50,
            parallel_episodes=10,  # episodes vmapped together
            seed=0,  # seeds the tasks (layouts, starts, goals) and the planner's sampling
        )
    )


NAN_POLICIES = ("stop", "skip_step")


def validate_config(config: Mapping[str, Any], num_devices: int, process_count: int = 1) -> None:
    """Check the values the training loop depends on; raise ConfigError naming the bad key."""

    need(config.method in METHODS, "method", config.method, f"one of {METHODS}")
    # A method's sections come from base_config(method): overriding method alone leaves them out.
    sections = METHOD_SECTIONS[config.method]
    need(
        all(k in config for k in sections),
        "method",
        config.method,
        f"a config with its sections {sections} (start it from config_lib.base_config("
        f"{config.method!r}))",
    )
    need(int(config.total_steps) >= 1, "total_steps", config.total_steps, "an integer >= 1")
    need(int(config.batch_size) >= 1, "batch_size", config.batch_size, "an integer >= 1")
    need(
        config.batch_size % process_count == 0,
        "batch_size",
        config.batch_size,
        f"a multiple of the process count {process_count}",
    )
    for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
        need(int(config[key]) >= 1, key, config[key], "an integer >= 1")
    need(
        config.model.dtype in ("float32", "bfloat16"),
        "model.dtype",
        config.model.dtype,
        "'float32' or 'bfloat16'",
    )
    o = config.optim
    for key in (
        "lr",
        "start_lr",
        "final_lr",
        "weight_decay",
        "final_weight_decay",
        "grad_clip_norm",
    ):
        need(float(o[key]) >= 0, f"optim.{key}", o[key], "a number >= 0")
    need(int(o.warmup_steps) >= 0, "optim.warmup_steps", o.warmup_steps, "an integer >= 0")
    # A warmup longer than the run never reaches the peak lr: almost always a typo, or a
    # shortened run that kept a long recipe's warmup.
    need(
        int(o.warmup_steps) <= int(config.total_steps),
        "optim.warmup_steps",
        o.warmup_steps,
        f"at most total_steps={config.total_steps} (the peak lr is reached after the warmup)",
    )
    need(
        0.0 <= float(config.get("collapse_rank_fraction", 0.3)) < 1.0,
        "collapse_rank_fraction",
        config.get("collapse_rank_fraction"),
        "a fraction in [0, 1) (0 turns the collapse guard off)",
    )
    need(
        config.get("nan_policy", "stop") in NAN_POLICIES,
        "nan_policy",
        config.get("nan_policy"),
        f"one of {NAN_POLICIES}",
    )
    need(float(o.schedule_scale) >= 1.0, "optim.schedule_scale", o.schedule_scale, "a number >= 1")
    need(int(config.microbatches) >= 1, "microbatches", config.microbatches, "an integer >= 1")
    # The batch (each microbatch) must split evenly over the data-parallel devices (data x fsdp).
    from jepa_jax.sharding import MESH_AXES, mesh_shape  # local: sharding imports jax

    shape = mesh_shape(config.mesh, num_devices)
    dp = shape[0] * shape[1] * int(config.microbatches)
    need(
        config.batch_size % dp == 0,
        "batch_size",
        config.batch_size,
        f"a multiple of microbatches x data-parallel size (data*fsdp) = {dp} "
        f"(mesh {dict(zip(MESH_AXES, shape, strict=True))})",
    )
