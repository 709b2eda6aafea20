"""Everything a world-model train step needs, built once from a config: `build_world_model_trainer`.

Shared by the world-model training loop, `jepa-jax plan` (to restore a checkpoint) and the tests.

State (a plain dict, created directly sharded like the JEPA state):
  {"params": {"encoder" (if trained), "predictor", "idm" (if the encoder is trained),
              "distance" (with a distance head)},
   "frozen": {"encoder"} if the encoder is frozen, else {},
   "opt_state": optax state of params, "step": int32}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from jepa_jax import rundir
from jepa_jax.envs import trajectories, two_rooms
from jepa_jax.envs.trajectories import ExplorationPolicy
from jepa_jax.errors import need
from jepa_jax.models.conv_encoder import ConvEncoder
from jepa_jax.models.gru_predictor import PREDICTOR_CELLS
from jepa_jax.models.init import init_encoder_params
from jepa_jax.models.layers import rescale_residual_projections
from jepa_jax.sharding import batch_sharding, create_mesh, logical_rules, replicated
from jepa_jax.train import optim
from jepa_jax.train.monitors import feature_stats
from jepa_jax.train.nonfinite import all_finite, keep_if_not_finite
from jepa_jax.train.state import abstract_state, create_state, new_state
from jepa_jax.world_model import data
from jepa_jax.world_model.model import ARCHITECTURES, DISTANCES, WorldModel, build_world_model
from jepa_jax.world_model.objective import LOSS_WEIGHTS, WorldModelObjective

# The data stream's seed is derived from config.seed, apart from the init's.
DATA_SEED_OFFSET = 3


def validate_world_model_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError for world-model settings that cannot work."""
    wm = config["world_model"]

    need(int(wm.action_chunk) >= 1, "world_model.action_chunk", wm.action_chunk, "an integer >= 1")
    need(int(wm.num_steps) >= 1, "world_model.num_steps", wm.num_steps, "an integer >= 1")
    need(
        1 <= int(wm.rollout_steps) <= int(wm.num_steps),
        "world_model.rollout_steps",
        wm.rollout_steps,
        f"an integer in [1, world_model.num_steps={wm.num_steps}]",
    )
    for key in LOSS_WEIGHTS:
        value = wm[f"{key}_weight"]
        need(float(value) >= 0, f"world_model.{key}_weight", value, "a number >= 0")
    head = wm.distance_head
    need(int(head) >= 0, "world_model.distance_head", head, "an integer >= 0 (0: none)")
    if int(head):
        goals = wm.distance_goals
        need(int(goals) >= 1, "world_model.distance_goals", goals, "an integer >= 1")
    elif "plan" in config:
        need(
            config.plan.distance != "head",
            "plan.distance",
            config.plan.distance,
            "'l1' or 'l2' when world_model.distance_head=0 (no distance head to plan with)",
        )
    view = wm.local_view
    if "plan" in config and config.plan.planner == "search":
        need(
            int(view) > 0,
            "world_model.local_view",
            view,
            "> 0 with plan.planner='search' (imagined states are merged by the position the "
            "model predicts with its local view)",
        )
    need(
        int(view) >= 0 and int(view) % 2 == 0,
        "world_model.local_view",
        view,
        "an even integer >= 0",
    )
    if int(view):
        need(
            wm.architecture == "conv_gru",
            "world_model.architecture",
            wm.architecture,
            f"'conv_gru' when world_model.local_view={view} (a conv_gru cell input)",
        )
        need(
            bool(wm.use_state),
            "world_model.use_state",
            wm.use_state,
            f"True when world_model.local_view={view} (the view is cut around the agent's state)",
        )
    need(
        wm.architecture in ARCHITECTURES,
        "world_model.architecture",
        wm.architecture,
        f"one of {ARCHITECTURES}",
    )
    need(
        wm.prediction_distance in DISTANCES,
        "world_model.prediction_distance",
        wm.prediction_distance,
        f"one of {DISTANCES}",
    )
    if wm.architecture == "conv_gru":
        channels = tuple(wm.conv_channels)
        need(
            len(channels) >= 1 and all(int(c) >= 1 for c in channels),
            "world_model.conv_channels",
            channels,
            "a non-empty tuple of integers >= 1",
        )
        need(
            wm.predictor_cell in PREDICTOR_CELLS,
            "world_model.predictor_cell",
            wm.predictor_cell,
            f"one of {PREDICTOR_CELLS}",
        )
        value = wm.predictor_hidden
        need(
            int(value) >= 0,
            "world_model.predictor_hidden",
            value,
            "an integer >= 0 (0: latent size)",
        )
        return
    size, patch = int(config.env.image_size), int(config.model.encoder.patch_size)
    need(
        patch >= 1 and size % patch == 0,
        "model.encoder.patch_size",
        patch,
        f"a divisor of env.image_size={size}",
    )


@dataclasses.dataclass(frozen=True)
class WorldModelTrainer:
    """The resolved pieces of one world-model training configuration."""

    config: Mapping[str, Any]
    mesh: Mesh
    rules: tuple
    model: WorldModel
    policy: ExplorationPolicy
    objective: WorldModelObjective
    tx: optax.GradientTransformation
    lr: Callable[[jax.Array], jax.Array]
    init_fn: Callable[[jax.Array], dict]
    unit: str = "sequences"  # what one batch row is, in throughput figures

    def create_state(self, seed: int | None = None) -> tuple[dict, Any]:
        """Fresh sharded state and its shardings (seed defaults to config.seed)."""
        seed = int(self.config.seed) if seed is None else seed
        return create_state(self.init_fn, jax.random.key(seed), self.mesh, self.rules)

    def abstract_state(self) -> Any:
        """Shape/dtype/sharding structs of the state, for restoring a checkpoint."""
        return abstract_state(self.init_fn, self.mesh, self.rules)

    def batch(self, step: jax.Array) -> dict:
        """The training batch of a step: a pure function of (config.seed, step)."""
        key = jax.random.fold_in(jax.random.key(int(self.config.seed) + DATA_SEED_OFFSET), step)
        wm = self.config.world_model
        return data.batch(
            self.model.env,
            self.policy,
            key,
            int(self.config.batch_size),
            int(wm.num_steps),
            int(wm.action_chunk),
            int(wm.distance_goals) if self.model.distance_head is not None else 0,
        )

    def make_step(self, state_shardings: Any) -> Callable[[dict], tuple[dict, dict]]:
        """The jitted train step state -> (state, metrics); it makes its own batch on device,
        split over data x fsdp. Call inside `jax.set_mesh(self.mesh)`."""

        def step_fn(state):
            with nn.logical_axis_rules(self.rules):
                batch = jax.lax.with_sharding_constraint(
                    self.batch(state["step"]), batch_sharding(self.mesh)
                )
                return train_step(state, batch, objective=self.objective, tx=self.tx, lr=self.lr)

        return jax.jit(
            step_fn,
            in_shardings=(state_shardings,),
            out_shardings=(state_shardings, replicated(self.mesh)),
            donate_argnums=(0,),
        )


def train_step(
    state: dict,
    batch: dict,
    *,
    objective: WorldModelObjective,
    tx: optax.GradientTransformation,
    lr: Callable[[jax.Array], jax.Array],
) -> tuple[dict, dict]:
    """One optimizer step. Pure: (state, batch) -> (new state, float32 metrics).

    A non-finite loss or gradient leaves the state as it was (train.nonfinite). Metrics include
    each loss term, "finite", and "feature_stats" of the latents (`train.monitors.feature_stats`)
    from which the host computes the feature std and effective rank."""

    def loss_fn(params):
        return objective(params, state["frozen"], batch)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = dict(state, params=params, opt_state=opt_state, step=state["step"] + 1)
    grad_norm = optax.tree.norm(grads)
    finite = all_finite(loss, grad_norm, optax.tree.norm(updates))
    new_state = keep_if_not_finite(state, new_state, finite)
    metrics = {
        "loss": loss,
        "lr": lr(state["step"]),
        "grad_norm": grad_norm,
        "finite": finite,  # 0: the update was not applied (train.nonfinite)
        # Sufficient statistics; the host turns them into feature_std and effective_rank.
        "feature_stats": feature_stats(aux["latents"]),
        **{f"loss_{k}": v for k, v in aux["terms"].items()},
    }
    return new_state, jax.tree.map(lambda x: x.astype(jnp.float32), metrics)


def make_init_fn(
    model: WorldModel, tx: optax.GradientTransformation, num_steps: int, encoder_trainable: bool
) -> Callable[[jax.Array], dict]:
    """rng -> boxed world-model train state (see the module docstring)."""

    def init(rng):
        k_enc, k_pred, k_idm = jax.random.split(rng, 3)
        k_dist = jax.random.fold_in(rng, 3)  # the other params' init stays that of no head
        grid = model.predictor.grid
        z = jnp.zeros((1, num_steps, grid[0] * grid[1], model.encoder.width), jnp.float32)
        a = jnp.zeros((1, num_steps, model.action_dim), jnp.float32)
        s = jnp.zeros((1, num_steps, 2), jnp.float32) if model.use_state else None
        if model.local_view:  # {"cell", "view", "passability"} (WorldModel._predict_with_view)
            k_pred, k_view, k_pass = jax.random.split(k_pred, 3)
            scene = jnp.zeros((1,) + model.frame_shape[:2], jnp.float32)
            centers = model.pixel_position(s)
            view = model.view_encoder.init(k_view, scene, centers)["params"]
            features = model.view_encoder.apply({"params": view}, scene, centers)
            passability = model.passability.init(k_pass, features, a[..., :2])["params"]
            cell_input = jnp.concatenate([features, s], axis=-1)  # + the move [.., 2]
            cell = model.predictor.init(k_pred, z, a, s, cell_input)["params"]
            predictor = {"cell": cell, "view": view, "passability": passability}
        else:
            predictor = dict(model.predictor.init(k_pred, z, a, s)["params"])
        if isinstance(model.encoder, ConvEncoder):  # conv_gru
            frame = jnp.zeros((1,) + model.frame_shape, jnp.float32)
            encoder = model.encoder.init(k_enc, frame)["params"]
        else:  # vit_ac: the reference inits, residual projections rescaled by depth
            encoder = init_encoder_params(model.encoder, k_enc, model.frame_shape)
            predictor["transformer"] = rescale_residual_projections(
                predictor["transformer"], model.predictor.depth
            )
        params = {"predictor": predictor}
        if model.distance_head is not None:
            wall = jnp.zeros((1,) + model.frame_shape[:2], jnp.float32)
            params["distance"] = model.distance_head.init(k_dist, z, wall)["params"]
        frozen = {}
        if encoder_trainable:
            params["encoder"] = encoder
            params["idm"] = model.idm.init(k_idm, z[:, 0], z[:, 0])["params"]
        else:
            frozen["encoder"] = encoder
        return new_state(params, tx, frozen=frozen)

    return init


def build_world_model_trainer(config: Mapping[str, Any], devices=None) -> WorldModelTrainer:
    """Resolve a world-model training config (raises ConfigError for values that cannot work)."""
    validate_world_model_config(config)
    env = two_rooms.from_config(config.env)
    policy = trajectories.policy_from_config(config.world_model)
    model = build_world_model(config, env)
    objective = WorldModelObjective.from_config(model, config.world_model)
    total_steps = int(config.total_steps)
    tx = optim.make_optimizer(config.optim, total_steps)
    init_fn = make_init_fn(
        model, tx, int(config.world_model.num_steps), objective.encoder_trainable
    )
    return WorldModelTrainer(
        config=config,
        mesh=create_mesh(config.mesh, devices),
        rules=logical_rules(config.logical_axis_rules),
        model=model,
        policy=policy,
        objective=objective,
        tx=tx,
        lr=optim.lr_schedule(config.optim, total_steps),
        init_fn=init_fn,
    )


def restore_world_model(
    config: Mapping[str, Any], workdir: str, step: int | None = None
) -> tuple[WorldModelTrainer, dict, int]:
    """The trained world model of a run: (trainer, {"encoder", "predictor"[, "distance"]} params,
    step).

    Args:
      config: the run's config (it fixes the shapes to restore into).
      workdir: the run's directory, its checkpoints/ directory or a checkpoints/<step> one.
      step: the checkpoint step; None = the latest.

    Raises ConfigError if there is no checkpoint there.
    """
    from jepa_jax.checkpoint import Checkpointer  # orbax: only when restoring

    path, step = rundir.find_checkpoint(workdir, step)
    trainer = build_world_model_trainer(config, jax.devices()[:1])
    ckpt = Checkpointer(path, 1, 1, async_save=False)
    try:
        with jax.set_mesh(trainer.mesh):
            state = ckpt.restore(step, trainer.abstract_state(), None)
    finally:
        ckpt.close()
    encoder = state["params"].get("encoder", state["frozen"].get("encoder"))
    params = {"encoder": encoder, "predictor": state["params"]["predictor"]}
    if "distance" in state["params"]:
        params["distance"] = state["params"]["distance"]
    return trainer, params, int(step)
