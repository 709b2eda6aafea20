"""Which loss term trains the encoder: gradient norms of each term of the JEPA objective.

A JEPA loss with a collapse regularizer is a sum: prediction (+ dense context loss) +
regularizer. Adam rescales the sum's gradient per parameter, so what matters is each term's
share of it, not its value. This module takes each term's own gradient on one batch.

Measured on the default job (README, "What the default job learns"): the regularizer's gradient
on the encoder is ~500x the prediction term's over the whole run, so that recipe's encoder is
trained by SIGReg on the context tokens, and its predictor's depth or the SIGReg weight (0.01 to
5) change nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

TERMS = ("prediction", "dense", "regularizer")


def loss_term_gradient_norms(
    objective: Any, params: dict, target_params: dict, batch: dict, step: int = 0
) -> dict[str, dict[str, float]]:
    """Per term of `objective` (a train.objective.JepaObjective), its value and the L2 norms of
    its gradient on the encoder and predictor params, for one batch.

    One forward pass and one backward pass per term (`jax.jacrev` of the terms): each term's
    gradient is its own, not a difference of sums.

    Args:
      objective: the trainer's JepaObjective.
      params: {"encoder", "predictor"} as in the train state.
      target_params: {"encoder"} as in the train state.
      batch: one global batch as the train step takes it.
      step: the step the regularizer's random directions (and the dense loss's ramp) are for.

    Returns:
      {term: {"loss", "encoder", "predictor"}} for the terms the objective has, in TERMS order
      ("dense" only with config.loss.context_weight > 0, "regularizer" only with one; with
      joint image + video training each term is the streams' weighted sum), plus "total" (the
      objective's loss and gradient). Python floats.
    """

    def terms_and_loss(p):
        loss, aux = objective(p, target_params, batch, step)
        return objective_terms(aux["metrics"], loss, objective.image_loss_share), loss

    present = jax.eval_shape(lambda p: terms_and_loss(p)[0], params)
    names = [t for t in TERMS if t in present]

    @jax.jit
    def evaluate(p):
        def stacked(q):
            terms, loss = terms_and_loss(q)
            return jnp.stack([terms[n] for n in names] + [loss])

        return stacked(p), jax.jacrev(stacked)(p)

    values, jacobian = evaluate(params)
    out = {}
    for i, name in enumerate([*names, "total"]):
        grads = jax.tree.map(lambda g, i=i: g[i], jacobian)
        out[name] = {
            "loss": float(values[i]),
            "encoder": float(optax.tree.norm(grads["encoder"])),
            "predictor": float(optax.tree.norm(grads["predictor"])),
        }
    return out


def objective_terms(metrics: dict, loss: jax.Array, image_loss_share: float = 0.0) -> dict:
    """{term: scalar} from the objective's aux metrics, in TERMS order, summing to `loss`."""
    if "loss_image" not in metrics:
        return _stream_terms(metrics, "", loss)
    video = _stream_terms(metrics, "", metrics["loss_video"])
    image = _stream_terms(metrics, "image_", metrics["loss_image"])
    share = image_loss_share
    return {t: (1.0 - share) * video[t] + share * image[t] for t in video}


def _stream_terms(metrics: dict, prefix: str, stream_loss: jax.Array) -> dict:
    """One stream's terms (its metrics under `prefix`; `stream_loss` their sum)."""

    def get(key):
        return metrics[prefix + key]

    if prefix + "loss_context" in metrics:  # the dense loss: masked + weight x context
        terms = {
            "prediction": get("loss_masked"),
            "dense": get("context_weight") * get("loss_context"),
        }
    elif prefix + "loss_prediction" in metrics:  # a regularizer's split of the loss
        terms = {"prediction": get("loss_prediction")}
    else:
        terms = {"prediction": stream_loss}
    if prefix + "loss_regularizer" in metrics:
        terms["regularizer"] = get("loss_regularizer")
    return terms
