"""The world-model objective: teacher-forcing L1 + rollout L1 (V-JEPA 2-AC), plus the collapse
regularisers when the encoder is trained jointly (eb_jepa).

With z_t = LN(encoder(frame_t)) for t = 0..T and the block-causal predictor P:
  teacher forcing  L_tf = mean |P(z_<=t, a_<=t)_t - z_{t+1}|          (all T steps, one pass)
  rollout          L_ro = mean |ẑ_n - z_n|, n = 1..R, where ẑ_1 = P(z_0, a_0) and
                   ẑ_{n+1} = P(z_0, ẑ_1..ẑ_n, a_0..a_n)_n (predictions fed back)
  regularisers     variance hinge and covariance of z, temporal similarity of z, and the
                   inverse-dynamics error |IDM(z_t, z_{t+1}) - mean(a_t)|^2 (joint training
                   only; the mean over the chunk's env actions, because only their net effect
                   shows between two frames).
  state            with a local view (the predictor also predicts the agent's next state): the
                   mean squared error in px^2 of the rolled-out states against the true ones.
  distance         with a distance head: its objective (models.distance_head.distance_loss) on
                   the stop-gradient latents of the sequence and of frames of random positions
                   in the same scenes (batch["goal_frames"]); it trains the head only.
|.| is L1 (V-JEPA 2-AC) or squared error (eb_jepa), `world_model.prediction_distance`.
Targets carry gradients into a jointly trained encoder, as in eb_jepa; with a frozen encoder
they are constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.models.distance_head import distance_loss
from jepa_jax.train.regularizers import vicreg_terms
from jepa_jax.world_model.model import WorldModel, latent_distance

LOSS_WEIGHTS = (
    "teacher_forcing",
    "rollout",
    "variance",
    "covariance",
    "time_similarity",
    "inverse_dynamics",
    "state",
    "distance",
)
REGULARISERS = ("variance", "covariance", "time_similarity", "inverse_dynamics")


def time_similarity(z: jax.Array) -> jax.Array:
    """Mean squared difference of consecutive latents: z [B, T, ...] -> scalar. Makes the latent
    change smoothly along a trajectory."""
    diff = z[:, 1:].astype(jnp.float32) - z[:, :-1].astype(jnp.float32)
    return jnp.mean(jnp.square(diff))


@dataclasses.dataclass(frozen=True)
class WorldModelObjective:
    """Binds the model and the loss settings; `__call__` is the differentiable loss."""

    model: WorldModel
    weights: Mapping[str, float]
    rollout_steps: int
    encoder_trainable: bool
    variance_target: float = 1.0
    distance: str = "l1"

    @classmethod
    def from_config(cls, model: WorldModel, wm: Mapping[str, Any]) -> WorldModelObjective:
        return cls(
            model=model,
            weights={k: float(wm[f"{k}_weight"]) for k in LOSS_WEIGHTS},
            rollout_steps=int(wm["rollout_steps"]),
            encoder_trainable=bool(wm["encoder_trainable"]),
            variance_target=float(wm["variance_target"]),
            distance=str(wm["prediction_distance"]),
        )

    def rollout_loss(
        self, predictor_params, z, actions, states, scene_map, first_pred, first_state
    ) -> tuple[jax.Array, jax.Array | None]:
        """Error of an R-step autoregressive rollout from z_0 against z_1..z_R.

        As V-JEPA 2-AC: ẑ_1 is the teacher-forced prediction of step 1 (`first_pred`, identical
        by block-causality), then the predictor runs on the growing sequence [z_0, ẑ_1..ẑ_n]
        (Python-unrolled: R is small and each length is its own static shape, which trains
        several times faster on CPU than a scanned fixed-size buffer). With a learned state
        (`first_state` [B, 2] not None) the predicted states are fed back the same way.

        Returns:
          (latent error, mean squared state error in px^2 or None).
        """
        seq = jnp.concatenate([z[:, :1], first_pred[:, None]], axis=1)
        learned = first_state is not None
        seq_s = jnp.concatenate([states[:, :1], first_state[:, None]], axis=1) if learned else None
        for n in range(2, self.rollout_steps + 1):
            s = seq_s if learned else (None if states is None else states[:, :n])
            pred, pred_s = self.model.predict(predictor_params, seq, actions[:, :n], s, scene_map)
            seq = jnp.concatenate([seq, pred[:, -1:]], axis=1)
            if learned:
                seq_s = jnp.concatenate([seq_s, pred_s[:, -1:]], axis=1)
        r = self.rollout_steps
        latent = latent_distance(seq[:, 1:], z[:, 1 : r + 1], self.distance).mean()
        if not learned:
            return latent, None
        err_px = (seq_s[:, 1:] - states[:, 1 : r + 1]) * self.model.state_half_range
        return latent, jnp.mean(jnp.sum(jnp.square(err_px), axis=-1))

    def distance_term(self, distance_params, encoder_params, z, batch) -> jax.Array:
        """The distance head's loss; the latents are constants to it (it reads, never shapes,
        the world model's latent)."""
        z = jax.lax.stop_gradient(z)
        goals = jax.lax.stop_gradient(self.model.encode(encoder_params, batch["goal_frames"]))
        code = self.model.scene_code(distance_params, batch["frames"][:, 0])
        features = self.model.distance_features(distance_params, z, code)
        goal_features = self.model.distance_features(distance_params, goals, code)
        return distance_loss(features, goal_features)

    def __call__(self, params: Any, frozen: Any, batch: Mapping[str, jax.Array]):
        """Loss of one batch.

        Args:
          params: trainable {"predictor", "idm"[, "encoder"][, "distance"]}.
          frozen: {"encoder"} when the encoder is frozen, else {}.
          batch: {"frames": [B, T+1, H, W, 2], "actions": [B, T, A], "positions": [B, T+1, 2],
            with a distance head also "goal_frames": [B, K, H, W, 2]}.

        Returns:
          (scalar loss, aux) with aux["terms"] (each unweighted loss term) and aux["latents"]
          [B, T+1, P, D].
        """
        enc = params["encoder"] if self.encoder_trainable else frozen["encoder"]
        z = self.model.encode(enc, batch["frames"])
        if not self.encoder_trainable:
            z = jax.lax.stop_gradient(z)
        actions = batch["actions"]
        states, scene_map = self.model.conditioning(
            params["predictor"], batch["frames"][:, 0], batch["positions"]
        )
        t = actions.shape[1]
        pred, pred_s = self.model.predict(
            params["predictor"],
            z[:, :t],
            actions,
            None if states is None else states[:, :t],
            scene_map,
        )
        terms = {"teacher_forcing": latent_distance(pred, z[:, 1:], self.distance).mean()}
        terms["rollout"], state_error = self.rollout_loss(
            params["predictor"],
            z,
            actions,
            states,
            scene_map,
            pred[:, 0],
            None if pred_s is None else pred_s[:, 0],
        )
        if state_error is not None:
            terms["state"] = state_error
        if self.model.distance_head is not None:
            terms["distance"] = self.distance_term(params["distance"], enc, z, batch)
        if self.encoder_trainable:
            terms["variance"], terms["covariance"] = vicreg_terms(z, self.variance_target)
            terms["time_similarity"] = time_similarity(z)
            idm = self.model.idm.apply({"params": params["idm"]}, z[:, :-1], z[:, 1:])
            terms["inverse_dynamics"] = jnp.mean(jnp.square(idm - self.model.mean_action(actions)))
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return loss, {"terms": terms, "latents": z}
