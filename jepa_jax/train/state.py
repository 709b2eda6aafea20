"""Train state: a plain dict pytree, created directly sharded.

  {"params":        {"encoder": ..., "predictor": ...},   trained by the optimizer (and
                                                            "projector": the regularizer's)
   "target_params": {"encoder": ...},                      EMA of params["encoder"]; a separate
                                                            pytree that no gradient reaches
   "opt_state":     optax state of params,
   "step":          int32 scalar, optimizer steps taken}

Creation never materialises the state on one device: `jax.eval_shape` gives the boxed
(logically annotated) structure, the logical rules turn it into shardings, and `jax.jit(init,
out_shardings=...)` builds each shard where it lives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import Mesh

from jepa_jax.masking import MaskSampler
from jepa_jax.models import Predictor, VisionTransformer
from jepa_jax.models.init import init_encoder_params, init_predictor_params
from jepa_jax.models.layers import stack_layers
from jepa_jax.models.param_layout import check_same_shapes
from jepa_jax.models.projector import TokenProjector
from jepa_jax.sharding import check_divisible, tree_shardings


def new_state(params: Any, tx: optax.GradientTransformation, **buffers: Any) -> dict[str, Any]:
    """A training state at step 0, the plain dict every method's step and checkpoint use:
    {"params", "opt_state" (tx.init(params)), "step" int32 scalar} plus `buffers`, the method's
    own trees that the optimizer does not update (the EMA target, frozen modules)."""
    return {
        "params": params,
        **buffers,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
    }


def make_init_fn(
    encoder: VisionTransformer,
    predictor: Predictor,
    tx: optax.GradientTransformation,
    input_shape: tuple[int, ...],
    sampler: MaskSampler,
    projector: TokenProjector | None = None,
) -> Callable[[jax.Array], dict]:
    """rng -> boxed train state (leaves annotated with logical axis names); with a `projector`
    (the regularizer's, [..., encoder width] -> [..., out]) its params are params["projector"]."""
    spec = sampler.specs[0]

    def init(rng: jax.Array) -> dict:
        k_enc, k_pred = jax.random.split(rng)
        params = {
            "encoder": init_encoder_params(encoder, k_enc, input_shape),
            "predictor": init_predictor_params(
                predictor, k_pred, sampler.grid, spec.num_context, spec.num_target
            ),
        }
        if projector is not None:
            # Its own key, folded in so that the encoder's and predictor's keys (and so every
            # run without a projector) stay as they were.
            tokens = jnp.zeros((1, 1, encoder.width), jnp.float32)
            params["projector"] = projector.init(jax.random.fold_in(rng, 2), tokens)["params"]
        # The target starts as a copy of the context encoder, in its own buffers.
        target_params = {"encoder": jax.tree.map(jnp.copy, params["encoder"])}
        return new_state(params, tx, target_params=target_params)

    return init


def state_shardings(init_fn: Callable, mesh: Mesh, rules) -> tuple[Any, Any]:
    """(abstract unboxed state, NamedShardings of the state) without allocating it."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        # The key is made inside eval_shape too: nothing runs, so this also works for meshes of
        # devices that are not attached (ahead-of-time compilation for a TPU topology).
        boxed = jax.eval_shape(lambda: init_fn(jax.random.key(0)))
    check_divisible(boxed, mesh, rules)
    shardings = tree_shardings(boxed, mesh, rules)
    return nn.meta.unbox(boxed), shardings


def create_state(init_fn: Callable, rng: jax.Array, mesh: Mesh, rules) -> tuple[dict, Any]:
    """Initialise the train state sharded over `mesh`; returns (state, its shardings)."""
    _, shardings = state_shardings(init_fn, mesh, rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        state = jax.jit(lambda r: nn.meta.unbox(init_fn(r)), out_shardings=shardings)(rng)
    return state, shardings


def abstract_state(init_fn: Callable, mesh: Mesh, rules) -> Any:
    """ShapeDtypeStructs carrying the target shardings, for restoring a checkpoint in place."""
    shapes, shardings = state_shardings(init_fn, mesh, rules)
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


def load_pretrained(state: dict, shardings: Any, path: str, with_predictor: bool = True) -> dict:
    """`state` with its encoder (online and target) and, when the export stores one and
    `with_predictor`, its predictor replaced by the weights of the export directory `path`
    (`jepa-jax export` / `jepa-jax import`), placed with the state's shardings. The optimizer
    state stays fresh (Adam's moments do not depend on the params).

    Raises:
      ConfigError: `path` is not an export, or its weights do not fit the run's model (the
        message names the first differing params).
    """
    from jepa_jax.export.encoder_dir import read_encoder_dir, read_predictor

    _, encoder = read_encoder_dir(path)
    pieces = {("params", "encoder"): encoder, ("target_params", "encoder"): encoder}
    predictor = read_predictor(path) if with_predictor else None
    if predictor is not None:
        pieces[("params", "predictor")] = predictor[1]
    scanned = "blocks" in state["params"]["encoder"].get("transformer", {})
    state = {
        **state,
        "params": dict(state["params"]),
        "target_params": dict(state["target_params"]),
    }
    for (part, name), tree in pieces.items():
        if scanned:
            tree = stack_layers(tree)
        # One host float32 copy per leaf; every shard's callback slices it.
        tree = jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(tree))
        check_same_shapes(
            state[part][name],
            tree,
            f"the run's {name} (config.model)",
            f"the {name} weights of {path!r}",
            expected_short="model",
            actual_short="export",
        )
        state[part][name] = jax.tree.map(
            lambda x, s: jax.make_array_from_callback(x.shape, s, x.__getitem__),
            tree,
            shardings[part][name],
        )
    return state
