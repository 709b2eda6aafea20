"""World model end to end: a short train -> plan smoke run through the CLI, exact resume, the
objective's terms, and one-line errors for bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, load_config
from helpers import cli, read_losses

from jepa_jax import config_lib
from jepa_jax.envs.two_rooms import WALL_CHANNEL
from jepa_jax.world_model import loop, objective
from jepa_jax.world_model.setup import build_world_model_trainer

AC_CONFIG = os.path.join(REPO, "configs", "ac_two_rooms.py")


def smoke_config():
    """configs/ac_two_rooms.py:runlocal (a tiny model, 4 steps, 2 short planning episodes)."""
    return load_config(AC_CONFIG, "runlocal")


def cli_one_device(*args, check=True):
    return cli(*args, env={"JAX_NUM_CPU_DEVICES": "1"}, check=check)  # planning: one device


def test_train_then_plan_smoke_and_exact_resume(tmp_path):
    config = smoke_config()
    # Train 4 steps on the 8 simulated devices (the batch split over them).
    full = str(tmp_path / "full")
    out = loop.train(config, full)
    assert not out["interrupted"] and np.isfinite(out["final_metrics"]["loss"])
    assert out["final_metrics"]["loss_inverse_dynamics"] > 0  # regularisers are on
    # Resume: 2 steps, then the rest from the checkpoint, reproduces the same losses.
    part = str(tmp_path / "part")
    config.total_steps = 2
    loop.train(config, part)
    config.total_steps = 4
    loop.train(config, part)
    a, b = read_losses(full), read_losses(part)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)

    # Plan with the trained model through the CLI, with the floor and ceilings, saving a GIF;
    # without --config: the run's own config.json.
    assert os.path.isfile(os.path.join(full, "config.json"))
    gif = str(tmp_path / "episode.gif")
    proc = cli_one_device(
        "plan",
        f"--checkpoint={full}",
        "--episodes=2",
        "--baselines",
        f"--save_episode={gif}",
    )
    for name in ("model", "random", "simulator", "simulator_geodesic", "simulator_latent"):
        assert any(line.startswith(name) and "success" in line for line in proc.stdout.splitlines())
    with open(os.path.join(full, "plan_results.json")) as f:
        results = json.load(f)
    assert results["checkpoint_step"] == 4
    for name in ("model", "random", "simulator", "simulator_geodesic"):
        assert results[name]["episodes"] == 2
        assert 0.0 <= results[name]["success_rate"] <= 1.0
        assert results[name]["seconds_per_episode"] > 0
    from PIL import Image

    with Image.open(gif) as img:
        assert img.n_frames >= 2 and img.size == (256, 256)
    # Overrides without --config change the run's own config.
    out = str(tmp_path / "cem.json")
    cli_one_device(
        "plan", f"--checkpoint={full}", "--episodes=1", f"--output={out}",
        "--config.plan.planner=cem", "--config.plan.samples=16",
    )  # fmt: skip
    with open(out) as f:
        plan = json.load(f)["plan"]
    assert plan["planner"] == "cem" and plan["samples"] == 16


def test_objective_terms_and_frozen_encoder():
    config = smoke_config()
    trainer = build_world_model_trainer(config, jax.devices()[:1])
    state, _ = trainer.create_state()
    batch = jax.jit(trainer.batch)(0)
    loss, aux = jax.jit(lambda p: trainer.objective(p, state["frozen"], batch))(state["params"])
    terms = aux["terms"]
    # Every term, the regularisers included; "state" only with a local view (its own test).
    assert set(terms) == set(objective.LOSS_WEIGHTS) - {"state", "distance"}
    weights = trainer.objective.weights
    np.testing.assert_allclose(loss, sum(weights[k] * v for k, v in terms.items()), rtol=1e-5)
    # A frozen encoder: not trained, no regularisers, and it receives no gradient.
    config.world_model.encoder_trainable = False
    frozen = build_world_model_trainer(config, jax.devices()[:1])
    state, _ = frozen.create_state()
    assert "encoder" not in state["params"] and "encoder" in state["frozen"]
    _, aux = frozen.objective(state["params"], state["frozen"], batch)
    assert set(aux["terms"]) == {"teacher_forcing", "rollout"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.plan.planner=ilqr"], "config.plan.planner='ilqr' is invalid"),
        (["--config.plan.planner=search"], "config.plan.distance='l1' is invalid: expected 'head'"),
        (["--episodes=0"], "--episodes=0 is invalid"),
        (["--checkpoint=/nonexistent/run"], "checkpoint path not found: '/nonexistent/run'"),
    ],
)
def test_plan_bad_input_is_one_line(args, message):
    base = [f"--config={AC_CONFIG}:runlocal", "--checkpoint=/nonexistent/run"]
    proc = cli_one_device("plan", *base, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], proc.stderr


def test_plan_names_the_planner_and_its_sizes():
    from jepa_jax.planning.mpc import planner_description

    plan = config_lib.plan_config()
    assert planner_description(plan, 4) == (
        "mppi with 256 samples x 4 iterations, horizon 16 model steps (64 env steps), energy sum l1"
    )
    plan.update(planner="search", distance="head")
    assert planner_description(plan, 4) == (
        "wavefront search 16 model steps (64 env steps) deep, 96 imagined states per depth, "
        "8 headings x speeds (1.0, 0.5), at the goal within 1.0 model steps by the head distance"
    )


def fresh_model_and_batch(config):
    """An untrained model of config on one device: (trainer, state, state shardings, the batch
    of step 0, its latents [B, T+1, P, D])."""
    trainer = build_world_model_trainer(config, jax.devices()[:1])
    state, shardings = trainer.create_state()
    batch = jax.jit(trainer.batch)(0)
    z = trainer.model.encode(state["params"]["encoder"], batch["frames"])
    return trainer, state, shardings, batch, z


def test_conv_gru_world_model_is_markov_and_plans():
    """The eb_jepa architecture: one latent per frame from the conv encoder, a GRU predictor
    whose prediction depends on the current latent and action only (so teacher forcing over a
    sequence equals one-step predictions), trainable, and usable by the planner."""
    from jepa_jax.planning import evaluate

    config = load_config(AC_CONFIG, "arch=conv_gru,runlocal")
    assert config.world_model.architecture == "conv_gru"
    trainer, state, shardings, batch, z = fresh_model_and_batch(config)
    model, params = trainer.model, state["params"]
    b, t1 = batch["frames"].shape[:2]
    assert z.shape == (b, t1, 1, config.model.encoder.width)
    seq, no_state = model.predict(params["predictor"], z[:, :-1], batch["actions"])
    one, _ = model.predict(params["predictor"], z[:, 2:3], batch["actions"][:, 2:3])
    assert no_state is None  # states are only predicted with a local view
    np.testing.assert_allclose(seq[:, 2:3], one, rtol=1e-5, atol=1e-5)
    # The rollout with a one-step window equals feeding predictions back by hand.
    roll = model.rollout(params["predictor"], z[:, 0], batch["actions"][:, :3], context=1)
    by_hand, zt = [], z[:, 0:1]
    for i in range(3):
        zt, _ = model.predict(params["predictor"], zt, batch["actions"][:, i : i + 1])
        by_hand.append(zt)
    np.testing.assert_allclose(roll, np.concatenate(by_hand, 1), rtol=1e-5, atol=1e-5)
    # Train steps lower the loss; the planner runs with the result.
    with jax.set_mesh(trainer.mesh):
        step = trainer.make_step(shardings)
        losses = []
        for _ in range(6):
            state, metrics = step(state)
            losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    params = {"encoder": state["params"]["encoder"], "predictor": state["params"]["predictor"]}
    results = evaluate.evaluate_all(config, model, params, ("model",), episodes=2)
    assert results["model"]["summary"]["episodes"] == 2


@pytest.mark.parametrize("cell", ["gru", "mlp"])
def test_frame_predictor_cells_start_as_identity_and_are_markov(cell):
    """A cell wider than the latent (predictor_hidden > D; the GRU starts from a projection of
    the latent, the MLP reads [latent, action features]) with a zero-initialised output
    projection: the untrained model predicts "nothing changes"; each output depends on its own
    step's latent and action only. Bad cell names and widths are config errors naming the key."""
    from jepa_jax.errors import ConfigError
    from jepa_jax.models.gru_predictor import GRUPredictor
    from jepa_jax.world_model.setup import validate_world_model_config

    d, hidden = 8, 24
    module = GRUPredictor(width=d, hidden=hidden, cell=cell)
    z = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 1, d))
    a = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 4))
    params = module.init(jax.random.PRNGKey(2), z, a)["params"]
    first = params["hidden_in" if cell == "gru" else "mlp_in"]["kernel"]
    assert first.shape == ((d, hidden) if cell == "gru" else (d + 64, hidden))
    assert params["out"]["kernel"].shape == (hidden, d)
    np.testing.assert_allclose(module.apply({"params": params}, z, a), z)
    # Markov: with a non-zero output projection, step 3 alone equals step 3 of the sequence.
    params["out"]["kernel"] = jax.random.normal(jax.random.PRNGKey(3), (hidden, d))
    seq = module.apply({"params": params}, z, a)
    one = module.apply({"params": params}, z[:, 3:4], a[:, 3:4])
    np.testing.assert_allclose(seq[:, 3:4], one, rtol=1e-5, atol=1e-5)
    assert not np.allclose(seq, z)

    for key, value in (("predictor_hidden", -1), ("predictor_cell", "lstm")):
        config = load_config(AC_CONFIG, "arch=conv_gru,runlocal")
        config.world_model[key] = value
        with pytest.raises(ConfigError, match=f"world_model.{key}"):
            validate_world_model_config(config)


def test_run_config_from_an_older_version_gets_new_keys_at_their_defaults(tmp_path):
    """A run started before a setting existed (its config.json lacks the key) still restores:
    read_config adds the missing key at its default and keeps every saved value."""
    from jepa_jax import rundir

    saved = load_config(AC_CONFIG, "arch=conv_gru,runlocal").to_dict()
    saved["total_steps"] = 123
    del saved["world_model"]["predictor_hidden"]
    (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps(saved))
    config = rundir.read_config(str(tmp_path))
    assert config.world_model.predictor_hidden == 0 and config.total_steps == 123
    assert config.world_model.architecture == "conv_gru"


def local_view_config():
    config = load_config(AC_CONFIG, "arch=conv_gru,runlocal")
    config.world_model.update(use_state=True, local_view=12, predictor_cell="mlp")
    return config


def test_crop_around_cuts_the_window_at_the_agent_and_reads_outside_as_wall():
    from jepa_jax.models.local_view import crop_around

    scene = np.zeros((16, 16), np.float32)
    scene[5, 9] = 7.0  # row y = 5, column x = 9
    window, offset = crop_around(jnp.asarray(scene), jnp.array([9.3, 4.6]), 6)
    window, offset = np.asarray(window), np.asarray(offset)
    assert window.shape == (6, 6)
    assert window[3, 3] == 7.0 and window.sum() == 7.0  # the centre pixel is (round x, round y)
    np.testing.assert_allclose(offset, [0.3, -0.4], atol=1e-6)
    # At the corner, the half outside the scene reads 1 (wall), the inside is the scene's.
    corner, _ = crop_around(jnp.asarray(scene), jnp.array([0.0, 0.0]), 6)
    corner = np.asarray(corner)
    assert np.all(corner[:3] == 1.0) and np.all(corner[:, :3] == 1.0)
    assert np.all(corner[3:, 3:] == scene[:3, :3])


@pytest.mark.parametrize("size", [24, 22])
def test_view_features_read_from_the_scene_map_equal_those_of_each_window(size):
    """The planner's shortcut (convolve the whole scene once, gather each window's outputs) gives
    the features of convolving each crop_around window, at the border and sub-pixel positions."""
    from jepa_jax.models.local_view import LocalViewEncoder, crop_around

    enc = LocalViewEncoder(size=size)
    scenes = (jax.random.uniform(jax.random.key(0), (2, 20, 20)) > 0.7).astype(jnp.float32)
    centers = jax.random.uniform(jax.random.key(1), (2, 5, 2), minval=-2.0, maxval=21.0)
    centers = centers.at[0, 0].set(jnp.array([0.0, 19.0]))  # corners, and outside the scene
    params = enc.init(jax.random.key(2), scenes, centers)["params"]
    got = enc.apply({"params": params}, scenes, centers)  # [2, 5, F]
    crop = jax.vmap(jax.vmap(lambda s, c: crop_around(s, c, size), (None, 0)))
    windows, offsets = crop(scenes, centers)
    want = enc.apply(
        {"params": params},
        windows.reshape(-1, size, size),
        offsets.reshape(-1, 2),
        method=LocalViewEncoder.window_features,
    )
    np.testing.assert_allclose(np.asarray(got).reshape(want.shape), want, rtol=1e-4, atol=1e-5)
    # One shared map ([1, ...]) serves every sequence; so does the planner's projected map.
    one_map = enc.apply({"params": params}, scenes[:1], method=LocalViewEncoder.scene_map)
    shared = enc.apply({"params": params}, one_map, centers, method=LocalViewEncoder.read)
    np.testing.assert_allclose(shared[0], got[0], rtol=1e-5, atol=1e-6)
    projected = enc.apply({"params": params}, scenes[:1], method=LocalViewEncoder.projected_map)
    read = LocalViewEncoder.read_projected
    fast = enc.apply({"params": params}, projected, centers, method=read)
    np.testing.assert_allclose(fast, shared, rtol=1e-4, atol=1e-5)


def test_local_view_moves_the_state_by_passable_kinematics_and_reads_the_walls():
    """With world_model.local_view the state moves by each env action times a learned
    passability in (0, 1): fully passable is the free-space kinematics, impassable stays put; the
    untrained model moves almost freely and leaves the latent unchanged; the rollout feeds the
    predicted state back (the window moves with it); the latent's prediction depends on the walls
    around the agent; the model trains and plans."""
    config = local_view_config()
    trainer, state, shardings, batch, z = fresh_model_and_batch(config)
    model, params = trainer.model, state["params"]
    frames0 = batch["frames"][:, 0]
    states, smap = model.conditioning(params["predictor"], frames0, batch["positions"])
    assert list(smap) == ["conv"] and smap["conv"].shape[0] == frames0.shape[0]
    actions, s0 = batch["actions"], states[:, :-1]
    pred, pred_s = model.predict(params["predictor"], z[:, :-1], actions, s0, smap)
    np.testing.assert_allclose(pred, z[:, :-1], atol=1e-4)  # the latent is unchanged
    steps = actions.reshape(actions.shape[:-1] + (-1, 2)) * model.env.max_norm
    steps = steps / model.state_half_range
    free = steps.sum(-2)  # free-space kinematics: every env action taken in full
    # Each env action is taken at sigmoid(3 + noise) ~ 0.95 of its length.
    slack = 0.3 * np.abs(np.asarray(steps)).sum(-2) + 1e-5
    assert np.all(np.abs(np.asarray(pred_s - s0 - 0.95 * free)) <= slack)
    for bias, expected in ((30.0, s0 + free), (-30.0, s0)):  # fully passable / blocked
        p = jax.tree.map(lambda x: x, params["predictor"])
        p["passability"]["out"]["bias"] = jnp.full((2,), bias)
        _, got = model.predict(p, z[:, :-1], actions, s0, smap)
        np.testing.assert_allclose(got, expected, atol=1e-5)

    # Random weights: the rollout equals feeding latents and predicted states back by hand.
    leaves, tree = jax.tree.flatten(params["predictor"])
    keys = jax.random.split(jax.random.key(7), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    predictor = jax.tree.unflatten(tree, noisy)
    _, smap = model.conditioning(predictor, frames0, batch["positions"])
    roll = model.rollout(predictor, z[:, 0], actions[:, :3], 1, states[:, 0], smap)
    zt, st, by_hand = z[:, 0:1], states[:, 0:1], []
    for i in range(3):
        zt, st = model.predict(predictor, zt, actions[:, i : i + 1], st, smap)
        by_hand.append(zt)
    np.testing.assert_allclose(roll, np.concatenate(by_hand, 1), rtol=1e-5, atol=1e-5)
    # The walls matter: the same latents, states and actions in an empty scene predict otherwise.
    first = (predictor, z[:, :1], actions[:, :1], states[:, :1])
    walls, _ = model.predict(*first, smap)
    no_walls = frames0.at[..., WALL_CHANNEL].set(0.0)
    start_px = batch["positions"][:, 0]
    empty, _ = model.predict(*first, model.conditioning(predictor, no_walls, start_px)[1])
    assert not np.allclose(walls, empty, atol=1e-4)
    # A planner's start frame, shared by all candidates (its projected map), predicts the same.
    _, shared = model.conditioning(predictor, frames0[0], start_px[0])
    assert list(shared) == ["projected"] and shared["projected"].shape[0] == 1
    same_frame = jnp.broadcast_to(frames0[:1], frames0.shape)
    _, one_each = model.conditioning(predictor, same_frame, start_px)
    start = (z[:1, 0].repeat(len(z), 0), actions[:, :3], 1, states[:1, 0].repeat(len(z), 0))
    np.testing.assert_allclose(
        model.rollout(predictor, *start, shared),
        model.rollout(predictor, *start, one_each),
        rtol=1e-4,
        atol=1e-4,
    )

    # Train steps run with the state term; the planner and the diagnostics run with the result.
    with jax.set_mesh(trainer.mesh):
        step = trainer.make_step(shardings)
        for _ in range(3):
            state, metrics = step(state)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss_state"]) > 0
    from jepa_jax.planning import evaluate

    params = {"encoder": state["params"]["encoder"], "predictor": state["params"]["predictor"]}
    results = evaluate.evaluate_all(config, model, params, ("model",), episodes=2)
    assert results["model"]["summary"]["episodes"] == 2
    moves = evaluate.collision_awareness(model, params, seed=0, num_layouts=8)
    assert set(moves) == set(evaluate.COLLISION_CASES)


@pytest.mark.parametrize(
    "key,value,arch,message",
    [
        ("local_view", 7, "conv_gru", "world_model.local_view=7"),
        ("local_view", -2, "conv_gru", "world_model.local_view=-2"),
        ("use_state", False, "conv_gru", "world_model.use_state=False"),
        ("state_weight", -1.0, "conv_gru", "world_model.state_weight=-1.0"),
        ("local_view", 12, "vit_ac", "world_model.architecture='vit_ac'"),
    ],
)
def test_local_view_bad_settings_are_config_errors(key, value, arch, message):
    from jepa_jax.errors import ConfigError
    from jepa_jax.world_model.setup import validate_world_model_config

    config = local_view_config()
    config.world_model.architecture = arch
    config.world_model[key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate_world_model_config(config)
