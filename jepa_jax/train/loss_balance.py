"""Which loss term trains the encoder: gradient norms of each term of the JEPA objective.

A JEPA loss with a collapse regularizer is a sum: prediction (+ dense context loss) +
regularizer. Adam rescales the sum's gradient per parameter, so what matters is each term's
share of it, not its value. This module takes each term's own gradient, over a few batches.

Measured on the default job (docs/default_job_experiments.md): the regularizer's gradient
on the encoder is ~500x the prediction term's over the whole run, so that recipe's encoder is
trained by SIGReg on the context tokens, and its predictor's depth or the SIGReg weight (0.01 to
5) change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

TERMS = ("prediction", "dense", "regularizer")


def loss_term_gradient_norms(
    objective: Any,
    params: dict,
    target_params: dict,
    batches: Sequence[dict],
    first_step: int = 0,
) -> dict[str, dict[str, float]]:
    """Per term of `objective` (a train.objective.JepaObjective), its value and the L2 norms of
    its gradient on each trained module's params (encoder, predictor and, where the recipe has
    one, the regularizer's projector), each the mean over `batches`.

    The terms are the objective's own split of its loss (aux["terms"]); each gradient is the
    term's own (`jax.jacrev` over the terms), not a difference of sums. Compiled once for all
    batches.

    Args:
      objective: the trainer's JepaObjective.
      params: {"encoder", "predictor"(, "projector")} as in the train state.
      target_params: {"encoder"} as in the train state.
      batches: global batches as the train step takes them (at least one).
      first_step: the step of the first batch (the regularizer's random directions and the
        dense loss's ramp follow the step); batch i is taken at first_step + i.

    Returns:
      {term: {"loss", "encoder", "predictor"(, "projector")}} for the terms the objective
      has, in TERMS order ("dense" only with config.loss.context_weight > 0, "regularizer"
      only with one; with joint image + video training each term is the streams' weighted
      sum), plus "total" (the objective's loss and gradient). Python floats.
    """

    @jax.jit
    def values_and_norms(p, batch, step):
        def terms(q):
            loss, aux = objective(q, target_params, batch, step)
            values = {**aux["terms"], "total": loss}
            return values, values

        grads, values = jax.jacrev(terms, has_aux=True)(p)
        return {
            name: {"loss": values[name], **{m: optax.tree.norm(g[m]) for m in sorted(g)}}
            for name, g in grads.items()
        }

    rows = [
        values_and_norms(params, batch, jnp.int32(first_step + i))
        for i, batch in enumerate(batches)
    ]
    names = [t for t in (*TERMS, "total") if t in rows[0]]
    return {
        name: {k: float(np.mean([row[name][k] for row in rows])) for k in rows[0][name]}
        for name in names
    }
