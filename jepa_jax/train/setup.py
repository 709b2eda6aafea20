"""Everything a JEPA train step needs, built once from a config: `build_trainer(config)`.

Shared by the training loop, the benchmarks and the tests, so they all run the same step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jepa_jax.data import pipeline
from jepa_jax.errors import need, need_under
from jepa_jax.masking import MaskSampler, build_mask_sampler
from jepa_jax.models import (
    Predictor,
    VisionTransformer,
    build_encoder,
    build_predictor,
    compute_dtype,
    token_grid,
)
from jepa_jax.sharding import batch_sharding, create_mesh, logical_rules
from jepa_jax.train import optim
from jepa_jax.train.objective import LOSS_TYPES, JepaObjective
from jepa_jax.train.regularizers import regularizer_from_config, target_mode_from_config
from jepa_jax.train.state import abstract_state, create_state, make_init_fn
from jepa_jax.train.step import jit_train_step, train_step


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The resolved pieces of one training configuration."""

    config: Mapping[str, Any]
    mesh: Mesh
    rules: tuple
    example_shape: tuple[int, ...]  # per-example pixels: (T, H, W, 3) or (H, W, 3)
    sampler: MaskSampler
    encoder: VisionTransformer
    predictor: Predictor
    tx: optax.GradientTransformation
    schedules: dict[str, Callable]
    objective: JepaObjective
    init_fn: Callable[[jax.Array], dict]

    @property
    def unit(self) -> str:
        """What one example is called in throughput figures."""
        return "clips" if len(self.example_shape) == 4 else "images"

    @property
    def mask_names(self) -> Sequence[str]:
        return [s.name for s in self.sampler.specs]

    def create_state(self, seed: int | None = None) -> tuple[dict, Any]:
        """Fresh sharded state and its shardings (seed defaults to config.seed)."""
        seed = int(self.config.seed) if seed is None else seed
        return create_state(self.init_fn, jax.random.key(seed), self.mesh, self.rules)

    def abstract_state(self) -> Any:
        """Shape/dtype/sharding structs of the state, for restoring a checkpoint."""
        return abstract_state(self.init_fn, self.mesh, self.rules)

    def abstract_batch(self) -> dict:
        """ShapeDtypeStructs (with the batch sharding) of one global training batch, for
        compiling without data."""
        b = int(self.config.batch_size)
        sharding = batch_sharding(self.mesh)
        sds = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        masks = tuple(
            {
                "context": sds((b, spec.num_context), jnp.int32),
                "target": sds((b, self.sampler.target_groups(spec), spec.num_target), jnp.int32),
            }
            for spec in self.sampler.specs
        )
        return {"pixels": sds((b,) + self.example_shape, jnp.uint8), "masks": masks}

    def train_dataset(self, process_index: int | None = None, process_count: int | None = None):
        return pipeline.train_dataset(self.config, self.sampler, process_index, process_count)

    def make_step(self, state_shardings: Any, batch_example: Any) -> Callable:
        """The jitted train step (call inside `jax.set_mesh(self.mesh)`)."""
        step = functools.partial(
            train_step,
            objective=self.objective,
            tx=self.tx,
            schedules=self.schedules,
            mask_names=self.mask_names,
            microbatches=int(self.config.microbatches),
        )
        return jit_train_step(step, self.mesh, self.rules, state_shardings, batch_example)


def dense_loss_from_config(config: Mapping[str, Any]) -> tuple[float, tuple[int, int]]:
    """(context_weight, context_ramp) of `config.loss`; ConfigError for values that cannot work."""
    loss = config.loss
    need = need_under("loss")
    weight = float(loss.get("context_weight", 0.0))
    need(weight >= 0, "context_weight", loss.get("context_weight"), "a number >= 0")
    ramp = tuple(loss.get("context_ramp", (0, 0)))
    need(
        len(ramp) == 2 and all(int(r) == r and r >= 0 for r in ramp),
        "context_ramp",
        ramp,
        "(start, end) steps, integers >= 0",
    )
    return weight, (int(ramp[0]), int(ramp[1]))


def validate_jepa_config(config: Mapping[str, Any]) -> None:
    """Check the JEPA sections' values that no builder below checks (data reading, loss type,
    EMA momenta); ConfigError naming the bad key."""
    data = need_under("data")
    for key in ("num_workers", "num_threads", "prefetch"):
        data(int(config.data[key]) >= 0, key, config.data[key], "an integer >= 0")
    bad = config.data.max_bad_fraction
    data(0.0 <= float(bad) <= 1.0, "max_bad_fraction", bad, "a fraction in [0, 1]")
    loss_type = config.loss.type
    need_under("loss")(loss_type in LOSS_TYPES, "type", loss_type, f"one of {LOSS_TYPES}")
    ema = tuple(config.ema)
    need(
        len(ema) == 2 and all(0.0 <= float(m) <= 1.0 for m in ema),
        "ema",
        ema,
        "a pair (start, end) of momenta in [0, 1]",
    )


def build_trainer(config: Mapping[str, Any], devices: Sequence[Any] | None = None) -> Trainer:
    """Resolve a training config (raises ConfigError for values that cannot work).

    Args:
      config: a training ConfigDict (see config_lib.base_config).
      devices: the devices of the mesh (default: all).
    """
    validate_jepa_config(config)
    mesh = create_mesh(config.mesh, devices)
    rules = logical_rules(config.logical_axis_rules)
    example_shape = pipeline.input_shape(config.data)
    enc_cfg = config.model.encoder
    grid = token_grid((1,) + example_shape, int(enc_cfg.patch_size), int(enc_cfg.tubelet_size))
    sampler = build_mask_sampler(config.mask, grid)
    encoder = build_encoder(config.model)
    context_weight, context_ramp = dense_loss_from_config(config)
    predictor = build_predictor(
        config.model,
        encoder.width * encoder.num_levels,
        len(sampler.specs),
        context_head=context_weight > 0,
        in_levels=encoder.num_levels,
    )
    total_steps = int(config.total_steps)
    tx = optim.make_optimizer(config.optim, total_steps)
    ema_target, stop_gradient = target_mode_from_config(config)
    schedules = {
        "lr": optim.lr_schedule(config.optim, total_steps),
        "wd": optim.wd_schedule(config.optim, total_steps),
        # Without EMA, momentum 0 keeps target_params equal to the online encoder.
        "ema": optim.ema_schedule(
            config.ema if ema_target else (0.0, 0.0), config.optim, total_steps
        ),
    }
    objective = JepaObjective(
        encoder=encoder,
        predictor=predictor,
        patch_size=int(enc_cfg.patch_size),
        tubelet_size=int(enc_cfg.tubelet_size),
        loss_type=config.loss.type,
        compute_dtype=compute_dtype(config.model),
        ema_target=ema_target,
        stop_gradient=stop_gradient,
        regularizer=regularizer_from_config(config),
        regularizer_seed=int(config.seed) + 3,  # its own stream, apart from init and data
        context_weight=context_weight,
        context_ramp=context_ramp,
        context_distance_weighting=bool(config.loss.context_distance_weight),
    )
    init_fn = make_init_fn(encoder, predictor, tx, example_shape, sampler)
    return Trainer(
        config=config,
        mesh=mesh,
        rules=rules,
        example_shape=example_shape,
        sampler=sampler,
        encoder=encoder,
        predictor=predictor,
        tx=tx,
        schedules=schedules,
        objective=objective,
        init_fn=init_fn,
    )
