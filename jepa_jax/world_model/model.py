"""The world model: frame encoder + action-conditioned predictor, and what is built from them
(latents, next-step predictions, autoregressive rollouts), as pure functions of params.

Two architectures (`world_model.architecture`):
  "vit_ac"   (V-JEPA 2-AC) a ViT encoder's patch tokens and a block-causal transformer predictor;
  "conv_gru" (eb_jepa) a small conv encoder with one latent per frame and a GRU predictor whose
             hidden state is the latent.
Latents are per-frame tokens [P, D] (P = 1 for conv_gru) after a non-affine LayerNorm (as V-JEPA
2-AC normalises both its targets and its predictions, and eb_jepa passes both through one
LayerNorm), so predictions can be fed back as inputs.

With `use_state` the predictor also reads a proprioceptive state (the agent's position, as V-JEPA
2-AC reads the arm's). Rollouts then need the state of every predicted step: by default it is
propagated analytically (free-space kinematics), and with `local_view` (conv_gru only) the
kinematics get a learned brake from the start frame's walls around the agent (models.local_view),
and the latent's predictor reads that view and the predicted move, so both can stop at a wall.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jepa_jax.envs.two_rooms import WALL_CHANNEL, TwoRooms, channel_statistics
from jepa_jax.models import build_encoder, compute_dtype, token_grid
from jepa_jax.models.ac_predictor import ActionConditionedPredictor
from jepa_jax.models.conv_encoder import ConvEncoder
from jepa_jax.models.distance_head import DistanceHead, feature_distance
from jepa_jax.models.gru_predictor import GRUPredictor
from jepa_jax.models.inputs import layer_norm_nonaffine
from jepa_jax.models.local_view import LocalViewEncoder, Passability
from jepa_jax.models.vit import VisionTransformer

ARCHITECTURES = ("vit_ac", "conv_gru")
DISTANCES = ("l1", "l2")
# What a planner may measure the distance to the goal with: a latent distance, or "head", the
# learned distance head (world_model.distance_head; models/distance_head.py).
PLAN_DISTANCES = DISTANCES + ("head",)


def latent_distance(pred: jax.Array, goal: jax.Array, kind: str) -> jax.Array:
    """Mean |pred - goal| (l1) or mean (pred - goal)^2 (l2) over the last two axes (tokens,
    dims): the prediction loss (goal = target latents [..., P, D]) and the planning energy
    (pred [..., H, P, D], goal [P, D] -> [..., H])."""
    diff = pred.astype(jnp.float32) - goal.astype(jnp.float32)
    if kind == "l1":
        return jnp.mean(jnp.abs(diff), axis=(-2, -1))
    if kind == "l2":
        return jnp.mean(jnp.square(diff), axis=(-2, -1))
    raise ValueError(f"unknown distance {kind!r}; expected one of {DISTANCES}")


class InverseDynamics(nn.Module):
    """MLP [z_t, z_{t+1}] (flattened) -> the mean action between them; a collapse regulariser:
    latents that forget the agent's position cannot explain the actions."""

    hidden: int
    action_dim: int

    @nn.compact
    def __call__(self, z_t: jax.Array, z_next: jax.Array) -> jax.Array:
        """z_t, z_next: [..., P, D] -> [..., action_dim]."""
        x = jnp.concatenate([z_t, z_next], axis=-1)
        x = x.reshape(x.shape[:-2] + (-1,))
        x = nn.gelu(nn.Dense(self.hidden, name="fc1")(x))
        x = nn.gelu(nn.Dense(self.hidden, name="fc2")(x))
        return nn.Dense(self.action_dim, name="out")(x)


@dataclasses.dataclass(frozen=True)
class WorldModel:
    """Modules and shapes of one world-model configuration.

    Units: an action token is the chunk of `action_chunk` env actions between two frames,
    divided by env.max_norm (so each 2-D part has norm <= 1); a state is the agent position
    mapped to [-1, 1].
    """

    env: TwoRooms
    encoder: VisionTransformer | ConvEncoder
    predictor: ActionConditionedPredictor | GRUPredictor
    idm: InverseDynamics
    action_chunk: int
    use_state: bool
    # The egocentric view (local_view > 0): with it the state is predicted, not propagated, and
    # the predictor's params are {"cell", "view", "passability"}.
    view_encoder: LocalViewEncoder | None = None
    passability: Passability | None = None
    # A learned planning distance (world_model.distance_head > 0); its params are "distance".
    distance_head: DistanceHead | None = None

    @property
    def local_view(self) -> int:
        """Side of the egocentric window, px (0: none)."""
        return 0 if self.view_encoder is None else self.view_encoder.size

    @property
    def action_dim(self) -> int:
        return 2 * self.action_chunk

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.env.size, self.env.size, 2)

    def mean_action(self, actions: jax.Array) -> jax.Array:
        """Action tokens [..., A] -> the mean of their `action_chunk` 2-D actions [..., 2]."""
        return actions.reshape(actions.shape[:-1] + (self.action_chunk, 2)).mean(-2)

    @property
    def state_half_range(self) -> float:
        """Pixels per unit of normalised state: half the free square's side."""
        return (self.env.hi - self.env.lo) / 2.0

    def normalise_state(self, position: jax.Array) -> jax.Array:
        """Agent positions [..., 2] (pixels) -> [-1, 1]."""
        half = self.state_half_range
        return (position - (self.env.lo + half)) / half

    def pixel_position(self, state: jax.Array) -> jax.Array:
        """Inverse of normalise_state: states [..., 2] in [-1, 1] -> positions in pixels."""
        half = self.state_half_range
        return state * half + (self.env.lo + half)

    def conditioning(
        self, predictor_params: Any, frame: jax.Array, position: jax.Array
    ) -> tuple[jax.Array | None, dict[str, jax.Array] | None]:
        """What a rollout from frame [..., H, W, 2] with the agent at position [..., 2] (px) needs
        beside the latent: (state [..., 2], or None without use_state; the scene map the view reads
        its windows from, or None without local_view). The scene is the frame's wall channel (it
        does not move), mapped once per rollout:
          frames [B, H, W, 2] (one per sequence: training, diagnostics) -> {"conv": the view
            encoder's convolution maps [B, ...]};
          one frame [H, W, 2] for every sequence (a planner's candidates) -> {"projected": the
            view features' pre-activation at every pixel [1, ...]}: more work per scene, a
            fraction of it per read (LocalViewEncoder.projected_map), the same predictions.
        """
        state = self.normalise_state(position) if self.use_state else None
        if not self.local_view:
            return state, None
        scene = frame[..., WALL_CHANNEL]
        if scene.ndim == 2:
            method, kind, scene = LocalViewEncoder.projected_map, "projected", scene[None]
        else:
            method, kind = LocalViewEncoder.scene_map, "conv"
        return state, {kind: self._view(predictor_params, method, scene)}

    def _view(self, predictor_params: Any, method: Any, *args: Any) -> jax.Array:
        return self.view_encoder.apply({"params": predictor_params["view"]}, *args, method=method)

    def scene_code(self, distance_params: Any, frames: jax.Array) -> jax.Array:
        """The distance head's code of the scenes of frames [N, H, W, 2] -> [N, F]."""
        return self.distance_head.apply(
            {"params": distance_params},
            frames[..., WALL_CHANNEL],
            method=DistanceHead.scene_code,
        )

    def distance_features(self, distance_params: Any, z: jax.Array, code: jax.Array):
        """The distance head's features of latents z [B, ..., P, D] in scenes code [B, F]:
        [B, ..., features]; their Euclidean distance counts model steps."""
        return self.distance_head.apply(
            {"params": distance_params}, z, code, method=DistanceHead.features_of
        )

    def goal_target(self, params: Any, goal_frame: jax.Array, kind: str) -> dict[str, jax.Array]:
        """What `distance_to_goal` compares with, from the goal image [H, W, 2] (once per
        episode): {"z": its latent [P, D]} for a latent distance (kind l1 | l2), or for kind
        "head" {"features": its distance-head features [F], "code": the scene's code [1, F']}
        (the goal image shows the same walls as every frame of the episode)."""
        z = self.encode(params["encoder"], goal_frame)
        if kind != "head":
            return {"z": z}
        code = self.scene_code(params["distance"], goal_frame[None])
        features = self.distance_features(params["distance"], z[None], code)[0]
        return {"features": features, "code": code}

    def distance_to_goal(
        self, params: Any, latents: jax.Array, target: dict[str, jax.Array], kind: str
    ) -> jax.Array:
        """The planning distance of latents [..., P, D] (e.g. rolled out [N, H, P, D]) to the goal
        `target` (goal_target): [...]; in model steps for "head"."""
        if kind != "head":
            return latent_distance(latents, target["z"], kind)
        flat = latents.reshape((1, -1) + latents.shape[-2:])  # one scene: code [1, F']
        features = self.distance_features(params["distance"], flat, target["code"])[0]
        return feature_distance(features, target["features"]).reshape(latents.shape[:-2])

    def encode(self, encoder_params: Any, frames: jax.Array) -> jax.Array:
        """Frames float [..., H, W, 2] in [0, 1] -> latents [..., P, D]."""
        lead = frames.shape[:-3]
        x = frames.reshape((-1,) + frames.shape[-3:])
        h = self.encoder.apply({"params": encoder_params}, x)
        z = layer_norm_nonaffine(h)
        return z.reshape(lead + z.shape[-2:])

    def predict(
        self,
        predictor_params: Any,
        latents: jax.Array,
        actions: jax.Array,
        states: jax.Array | None = None,
        scene_map: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Block-causal next-step predictions.

        Args:
          latents: [B, T, P, D]; actions: [B, T, A]; states: [B, T, 2] (use_state) or None;
          scene_map: from `conditioning` (local_view), or None.

        Returns:
          (normalised latent predictions [B, T, P, D] of z_1..z_T, predicted states [B, T, 2]
          of s_1..s_T with local_view, else None).
        """
        if self.local_view:
            return self._predict_with_view(predictor_params, latents, actions, states, scene_map)
        out = self.predictor.apply(
            {"params": predictor_params},
            latents,
            actions,
            states if self.use_state else None,
        )
        return layer_norm_nonaffine(out), None

    def _predict_with_view(self, params, latents, actions, states, scene_map):
        """`predict` with the egocentric view: the state moves by each env action of the chunk
        times its passability at the current (predicted) position; then the cell predicts the
        latent from the latent, the actions, the state, the view at the start of the step and
        the predicted move."""

        ((kind, smap),) = scene_map.items()
        read = LocalViewEncoder.read_projected if kind == "projected" else LocalViewEncoder.read

        def view_at(s):  # states [B, T, 2] -> view features [B, T, F]
            return self._view(params, read, smap, self.pixel_position(s))

        half = self.state_half_range
        moves = actions.reshape(actions.shape[:-1] + (self.action_chunk, 2))  # units of max_norm
        view0 = view_at(states)
        s = states
        for i in range(self.action_chunk):  # static: a few env actions per model step
            features = view0 if i == 0 else view_at(s)
            passed = self.passability.apply(
                {"params": params["passability"]}, features, moves[..., i, :]
            )
            s = s + passed * moves[..., i, :] * self.env.max_norm / half
        # The predicted move, x10: a full model step (10 px) is ~3 in these units.
        cell_input = jnp.concatenate([view0, (s - states) * 10.0], axis=-1)
        out = self.predictor.apply({"params": params["cell"]}, latents, actions, states, cell_input)
        return layer_norm_nonaffine(out), s

    def next_state(self, state: jax.Array, action: jax.Array) -> jax.Array:
        """Proprioceptive state after an action chunk, propagated analytically as in V-JEPA
        2-AC (free-space kinematics: walls ignored). state [..., 2], action [..., A]."""
        half = self.state_half_range
        moved = self.mean_action(action) * self.action_chunk
        return jnp.clip(state + moved * self.env.max_norm / half, -1.0, 1.0)

    def step(
        self,
        predictor_params: Any,
        z: jax.Array,
        state: jax.Array | None,
        action: jax.Array,
        scene_map: dict[str, jax.Array] | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """One model step from each of N latents without history (a rollout with context 1).

        Args:
          z: [N, P, D]; state: [N, 2] (use_state) or None; action: [N, A] tokens;
          scene_map: from `conditioning` (local_view).

        Returns:
          (next latents [N, P, D], next states [N, 2]: learned with local_view, else free-space
           kinematics; None without use_state).
        """
        states = None if state is None else state[:, None]
        pred, pred_states = self.predict(
            predictor_params, z[:, None], action[:, None], states, scene_map
        )
        if pred_states is not None:
            return pred[:, 0], pred_states[:, 0]
        return pred[:, 0], None if state is None else self.next_state(state, action)

    def rollout(
        self,
        predictor_params: Any,
        z0: jax.Array,
        actions: jax.Array,
        context: int,
        state0: jax.Array | None = None,
        scene_map: dict[str, jax.Array] | None = None,
    ) -> jax.Array:
        """Autoregressive rollout: each prediction is fed back as the next input.

        The predictor sees a sliding window of the last `context` steps (fixed shapes, so one
        compilation; with context >= the number of steps this is the full-history rollout).
        Steps not yet filled hold zeros, which the block-causal mask keeps out of every
        prediction that matters.

        Args:
          z0: [B, P, D] starting latents.
          actions: [B, H, A] action tokens.
          context: window length W >= 1 (static).
          state0: [B, 2] starting states (use_state only).
          scene_map: from `conditioning` (local_view only).

        Returns:
          [B, H, P, D] predicted latents z_1..z_H.
        """
        b, horizon = actions.shape[0], actions.shape[1]
        w = int(context)
        lat = jnp.zeros((b, w) + z0.shape[1:], z0.dtype).at[:, 0].set(z0)
        act = jnp.zeros((b, w, actions.shape[-1]), actions.dtype)
        states = None
        if self.use_state:
            states = jnp.zeros((b, w, 2), jnp.float32).at[:, 0].set(state0)

        def body(carry, inputs):
            lat, act, states, state = carry
            i, a = inputs  # step index, action [B, A]
            slot = jnp.minimum(i, w - 1)
            act = act.at[:, slot].set(a)
            pred, pred_states = self.predict(predictor_params, lat, act, states, scene_map)
            z_next = jax.lax.dynamic_index_in_dim(pred, slot, axis=1, keepdims=False)
            if pred_states is not None:  # learned (local_view)
                new_state = jax.lax.dynamic_index_in_dim(pred_states, slot, axis=1, keepdims=False)
            else:
                new_state = None if state is None else self.next_state(state, a)
            # Append z_next: into the next slot while the window fills, else shift left.
            full = i + 1 >= w
            lat = jnp.where(full, jnp.roll(lat, -1, axis=1), lat)
            act = jnp.where(full, jnp.roll(act, -1, axis=1), act)
            put = jnp.minimum(i + 1, w - 1)
            lat = jax.lax.dynamic_update_index_in_dim(lat, z_next, put, axis=1)
            if states is not None:
                states = jnp.where(full, jnp.roll(states, -1, axis=1), states)
                states = jax.lax.dynamic_update_index_in_dim(states, new_state, put, axis=1)
            return (lat, act, states, new_state), z_next

        state = state0 if self.use_state else None
        steps = jnp.arange(horizon)
        _, preds = jax.lax.scan(body, (lat, act, states, state), (steps, actions.swapaxes(0, 1)))
        return preds.swapaxes(0, 1)


def build_world_model(config: Mapping[str, Any], env: TwoRooms) -> WorldModel:
    """The world model of a config (`world_model`; for "vit_ac" also `model.encoder` and
    `model.predictor`; for "conv_gru" `model.encoder.width` is the latent size D)."""
    wm = config["world_model"]
    model_cfg = config["model"]
    chunk = int(wm["action_chunk"])
    idm = InverseDynamics(hidden=int(wm["idm_hidden"]), action_dim=2)
    use_state = bool(wm["use_state"])
    local_view = int(wm["local_view"])
    head = int(wm["distance_head"])
    distance_head = DistanceHead(features=head) if head else None
    if wm["architecture"] == "conv_gru":
        width = int(model_cfg["encoder"]["width"])
        mean, std = channel_statistics(env)
        return WorldModel(
            env=env,
            encoder=ConvEncoder(
                channels=tuple(int(c) for c in wm["conv_channels"]),
                width=width,
                input_mean=mean,
                input_std=std,
                dtype=compute_dtype(model_cfg),
            ),
            predictor=GRUPredictor(
                width=width,
                hidden=int(wm["predictor_hidden"]),
                cell=str(wm["predictor_cell"]),
                use_state=use_state,
                local_view=local_view > 0,
            ),
            idm=idm,
            action_chunk=chunk,
            use_state=use_state,
            view_encoder=LocalViewEncoder(size=local_view) if local_view else None,
            passability=Passability() if local_view else None,
            distance_head=distance_head,
        )
    encoder = build_encoder(model_cfg)
    grid = token_grid((1, env.size, env.size, 2), int(model_cfg["encoder"]["patch_size"]), 1)
    pred = model_cfg["predictor"]
    width = int(pred["width"])
    predictor = ActionConditionedPredictor(
        width=width,
        depth=int(pred["depth"]),
        num_heads=int(pred["num_heads"]),
        mlp_dim=int(round(width * float(pred["mlp_ratio"]))),
        out_width=encoder.width,
        grid=grid,
        use_state=use_state,
        dtype=compute_dtype(model_cfg),
        gelu_approximate=bool(model_cfg["gelu_approximate"]),
        scan=bool(model_cfg["scan_layers"]),
        remat_policy=str(model_cfg["remat_policy"]),
        attention_impl=str(model_cfg["attention_impl"]),
    )
    return WorldModel(
        env=env,
        encoder=encoder,
        predictor=predictor,
        idm=idm,
        action_chunk=chunk,
        use_state=use_state,
        distance_head=distance_head,
    )
