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
    build_jepa_predictor,
    compute_dtype,
    token_grid,
)
from jepa_jax.models.projector import TokenProjector
from jepa_jax.sharding import batch_sharding, create_mesh, logical_rules
from jepa_jax.train import optim
from jepa_jax.train.objective import LOSS_TYPES, JepaObjective
from jepa_jax.train.regularizers import regularizer_from_config, target_mode_from_config
from jepa_jax.train.state import abstract_state, create_state, load_pretrained, make_init_fn
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
    # Joint image + video training (config.images): the image stream's masks, else None.
    image_sampler: MaskSampler | None = None

    @property
    def unit(self) -> str:
        """What one example is called in throughput figures."""
        return "clips" if len(self.example_shape) == 4 else "images"

    @property
    def mask_names(self) -> Sequence[str]:
        """Names of the per-mask losses, in the objective's loss_per_mask order (the image
        stream's masks prefixed "image_")."""
        names = [s.name for s in self.sampler.specs]
        if self.image_sampler is not None:
            names += [f"image_{s.name}" for s in self.image_sampler.specs]
        return names

    def create_state(self, seed: int | None = None) -> tuple[dict, Any]:
        """Fresh sharded state and its shardings (seed defaults to config.seed); with
        config.init_from, the encoder (and predictor) weights come from that export."""
        seed = int(self.config.seed) if seed is None else seed
        state, shardings = create_state(self.init_fn, jax.random.key(seed), self.mesh, self.rules)
        if self.config.get("init_from"):  # start from exported / imported weights
            state = load_pretrained(
                state, shardings, self.config.init_from, bool(self.config.init_predictor)
            )
        return state, shardings

    def abstract_state(self) -> Any:
        """Shape/dtype/sharding structs of the state, for restoring a checkpoint."""
        return abstract_state(self.init_fn, self.mesh, self.rules)

    def abstract_batch(self) -> dict:
        """ShapeDtypeStructs (with the batch sharding) of one global training batch, for
        compiling without data."""
        sharding = batch_sharding(self.mesh)
        sds = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

        def stream(b: int, example_shape: tuple[int, ...], sampler: MaskSampler) -> dict:
            masks = tuple(
                {
                    "context": sds((b, spec.num_context), jnp.int32),
                    "target": sds((b, sampler.target_groups(spec), spec.num_target), jnp.int32),
                }
                for spec in sampler.specs
            )
            return {"pixels": sds((b,) + example_shape, jnp.uint8), "masks": masks}

        batch = stream(int(self.config.batch_size), self.example_shape, self.sampler)
        if self.image_sampler is not None:
            image_shape = (1,) + pipeline.input_shape(self.config.images.data)
            batch["image"] = stream(
                int(self.config.images.batch_size), image_shape, self.image_sampler
            )
        return batch

    def train_dataset(self, process_index: int | None = None, process_count: int | None = None):
        return pipeline.train_dataset(
            self.config, self.sampler, process_index, process_count, self.image_sampler
        )

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
    # Momentum 1 throughout never moves the target encoder from its initialisation, and the
    # end-of-training probe, `eval` and exports read the target encoder: they would report an
    # untrained encoder as the trained one.
    need(
        not (config.target.ema and all(float(m) == 1.0 for m in ema)),
        "ema",
        ema,
        "a start or end momentum below 1 with target.ema=True (momentum 1 throughout freezes "
        "the target encoder, which the probes and exports read, at its initialisation)",
    )


def image_stream_from_config(
    config: Mapping[str, Any], example_shape: tuple[int, ...], num_video_masks: int
) -> MaskSampler | None:
    """The image stream's mask sampler for joint image + video training (config.images), or
    None when images.batch_size is 0; ConfigError for settings that cannot work."""
    images = config.get("images")  # absent from configs saved before joint training
    if images is None:
        return None
    need = need_under("images")
    batch = images.batch_size
    need(int(batch) == batch and batch >= 0, "batch_size", batch, "an integer >= 0 (0: off)")
    if not batch:
        return None
    share = images.loss_share
    need(0.0 < float(share) < 1.0, "loss_share", share, "a fraction in (0, 1)")
    enc = config.model.encoder
    need(
        len(example_shape) == 4 and bool(enc.get("image_tokenizer", False)),
        "batch_size",
        batch,
        "0 unless config.data is video and model.encoder.image_tokenizer is True (images enter "
        "a video encoder as one-frame clips through its image tokenizer)",
    )
    image_shape = tuple(pipeline.input_shape(images.data))
    need(
        len(image_shape) == 3,
        "data.name",
        images.data.name,
        f"an image source (it gives {image_shape} examples)",
    )
    grid = token_grid((1, 1) + image_shape, int(enc.patch_size), 1)
    sampler = build_mask_sampler(images.mask, grid)
    need(
        len(sampler.specs) <= num_video_masks,
        "mask.blocks",
        sorted(images.mask.blocks),
        f"at most {num_video_masks} mask configs (the predictor has one mask token per video "
        "mask config; image masks use them in order, as the reference)",
    )
    return sampler


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
    image_sampler = image_stream_from_config(config, example_shape, len(sampler.specs))
    encoder = build_encoder(config.model)
    context_weight, context_ramp = dense_loss_from_config(config)
    predictor = build_jepa_predictor(config, encoder)
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
    regularizer = regularizer_from_config(config)
    projector = None
    if regularizer is not None and regularizer.projector:
        hidden, out = regularizer.projector
        projector = TokenProjector(hidden, out, dtype=compute_dtype(config.model))
    objective = JepaObjective(
        encoder=encoder,
        predictor=predictor,
        patch_size=int(enc_cfg.patch_size),
        tubelet_size=int(enc_cfg.tubelet_size),
        loss_type=config.loss.type,
        compute_dtype=compute_dtype(config.model),
        ema_target=ema_target,
        stop_gradient=stop_gradient,
        regularizer=regularizer,
        regularizer_seed=int(config.seed) + 3,  # its own stream, apart from init and data
        context_weight=context_weight,
        context_ramp=context_ramp,
        context_distance_weighting=bool(config.loss.context_distance_weight),
        image_loss_share=float(config.images.loss_share) if image_sampler else 0.0,
        projector=projector,
    )
    init_fn = make_init_fn(encoder, predictor, tx, example_shape, sampler, projector)
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
        image_sampler=image_sampler,
    )
