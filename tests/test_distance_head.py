"""The learned planning distance (models/distance_head.py): its objective finds path lengths,
not straight-line closeness; the world model trains it on its own goal frames without touching the
latent; planners and the energy diagnostic use it; bad settings are one-line config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_config

from jepa_jax.errors import ConfigError
from jepa_jax.models.distance_head import LOCAL_WEIGHT, distance_loss, feature_distance
from jepa_jax.world_model import data
from jepa_jax.world_model.setup import build_world_model_trainer, validate_world_model_config

AC_CONFIG = "configs/ac_two_rooms.py"


def test_objective_learns_path_lengths_not_initial_closeness():
    """Free 2-D features of the 10 states of a U-shaped corridor, started where the U lies (its
    two ends 1.5 apart): transitions held within 1 and all pairs pushed apart unfold the U into
    a line, so the ends end up as far apart as the path between them (9 links), not close.

    The transition constraint is a penalty, so links stretch where the pull of the pairs they
    join balances it: link i (between states i and i+1) is spanned by 2 (i+1) (n-1-i) of the n^2
    ordered pairs, each pulling 1/n^2, against 2 LOCAL_WEIGHT s / (n-1): s_i = (n-1) (i+1)
    (n-1-i) / (LOCAL_WEIGHT n^2), 0.08-0.23 here."""
    n = 10
    angles = jnp.linspace(0.0, 1.7 * jnp.pi, n)
    features = jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1) * 1.0  # a U, ends ~1.5 apart
    start_ends = float(feature_distance(features[0], features[-1]))
    tx = optax.adam(0.02)
    opt = tx.init(features)

    def loss(f):  # one sequence: the corridor; goals: every state of the same scene
        return distance_loss(f[None], f[None])

    @jax.jit
    def step(f, opt):
        g = jax.grad(loss)(f)
        u, opt = tx.update(g, opt)
        return optax.apply_updates(f, u), opt

    for _ in range(1500):
        features, opt = step(features, opt)
    links = np.asarray(feature_distance(features[1:], features[:-1]))
    ends = float(feature_distance(features[0], features[-1]))
    i = np.arange(n - 1)
    stretch = (n - 1) * (i + 1) * (n - 1 - i) / (LOCAL_WEIGHT * n**2)
    assert start_ends < 2.0
    np.testing.assert_allclose(links, 1.0 + stretch, atol=0.01)
    assert ends == pytest.approx(float(np.sum(1.0 + stretch)), abs=0.05)  # a straight line


def head_config():
    config = load_config(AC_CONFIG, "arch=conv_gru,local_view=12,distance_head=8,runlocal")
    config.world_model.distance_goals = 3
    return config


def test_goal_frames_show_the_sequences_scene_and_leave_its_trajectory_alone():
    config = head_config()
    trainer = build_world_model_trainer(config, jax.devices()[:1])
    env, policy = trainer.model.env, trainer.policy
    key = jax.random.key(0)
    plain = data.batch(env, policy, key, 2, 3, 4)
    with_goals = data.batch(env, policy, key, 2, 3, 4, goals=3)
    assert "goal_frames" not in plain
    assert with_goals["goal_frames"].shape == (2, 3) + plain["frames"].shape[2:]
    for k in ("frames", "actions", "positions"):
        np.testing.assert_array_equal(with_goals[k], plain[k])
    walls = with_goals["frames"][:, :1, ..., 1]
    np.testing.assert_array_equal(with_goals["goal_frames"][..., 1], jnp.repeat(walls, 3, 1))
    assert np.all(np.asarray(with_goals["goal_frames"][..., 0]).max(axis=(2, 3)) > 0.5)  # agents


def test_world_model_trains_the_head_without_moving_the_latent_and_plans_with_it():
    from jepa_jax.planning import evaluate

    config = head_config()
    trainer = build_world_model_trainer(config, jax.devices()[:1])
    state, shardings = trainer.create_state()
    assert set(state["params"]["distance"]) >= {"hidden0", "out", "scene_conv0"}
    batch = trainer.batch(jnp.int32(0))
    assert batch["goal_frames"].shape[:2] == (config.batch_size, 3)
    objective, params = trainer.objective, state["params"]
    # The head's loss has no gradient into the encoder (it reads stop-gradient latents).
    z = trainer.model.encode(params["encoder"], batch["frames"])

    def head_loss(encoder, distance):
        return objective.distance_term(distance, encoder, z, batch)

    g_enc, g_head = jax.grad(head_loss, argnums=(0, 1))(params["encoder"], params["distance"])
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_enc))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(g_head))
    with jax.set_mesh(trainer.mesh):
        step = trainer.make_step(shardings)
        for _ in range(2):
            state, metrics = step(state)
    assert np.isfinite(float(metrics["loss_distance"])) and float(metrics["loss_distance"]) > 0

    params = {k: state["params"][k] for k in ("encoder", "predictor", "distance")}
    results = evaluate.evaluate_all(config, trainer.model, params, ("model",), episodes=2)
    assert results["model"]["summary"]["episodes"] == 2
    env = trainer.model.env
    q = evaluate.energy_quality(trainer.model, params, env, "head", 0, 2, 6)
    assert q["latent"].shape == (2, 6) and np.all(np.asarray(q["latent"]) >= 0)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("distance_head", -1, "world_model.distance_head=-1"),
        ("distance_goals", 0, "world_model.distance_goals=0"),
        ("plan_without_head", "head", "plan.distance='head'"),
        ("search_without_view", "search", "world_model.local_view=0"),
    ],
)
def test_distance_head_bad_settings_are_config_errors(key, value, message):
    config = head_config()
    if key == "plan_without_head":
        config.world_model.distance_head = 0
        config.plan.distance = value
    elif key == "search_without_view":  # the search merges states by the predicted position
        config.world_model.update(local_view=0, use_state=False, predictor_cell="gru")
        config.plan.planner = value
    else:
        config.world_model[key] = value
    with pytest.raises(ConfigError, match=message):
        validate_world_model_config(config)
