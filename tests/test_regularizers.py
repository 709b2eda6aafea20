"""Collapse regularizers (VICReg, SIGReg) and the no-EMA / no-stop-gradient mode: the statistics
themselves, config errors, and a real training run that collapses without a regularizer and
does not with SIGReg."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_image_config

from jepa_jax.errors import ConfigError
from jepa_jax.sharding import make_global_batch
from jepa_jax.train.regularizers import (
    epps_pulley,
    epps_pulley_quadrature,
    pixel_deviation_weights,
    random_directions,
    regularizer_from_config,
    sigreg,
    sincos,
    target_mode_from_config,
    vicreg_terms,
)
from jepa_jax.train.runner import host_metrics
from jepa_jax.train.setup import build_trainer


def test_epps_pulley_is_small_for_gaussians_and_large_otherwise():
    x = jax.random.normal(jax.random.key(0), (4096, 3))
    gauss = np.asarray(epps_pulley(x))
    # Non-Gaussian columns: a constant (collapsed), a wide uniform, a shifted normal.
    other = jnp.stack(
        [
            jnp.zeros(4096),
            jax.random.uniform(jax.random.key(1), (4096,), minval=-3, maxval=3),
            x[:, 0] + 1.0,
        ],
        axis=1,
    )
    bad = np.asarray(epps_pulley(other))
    assert np.all(gauss < 1.0), gauss  # O(1) under the null
    assert np.all(bad > 50.0), bad  # grows with N otherwise
    # The statistic scales with N for a fixed non-Gaussian distribution.
    assert float(epps_pulley(other[:1024])[0]) == pytest.approx(bad[0] / 4, rel=1e-4)


def test_sincos_matches_float64_within_two_float32_ulps_and_differentiates_to_cos_sin():
    # Two ulps of 1.0 (2^-22): one for the polynomial on [-pi/4, pi/4], one for rounding the
    # result; the range reduction is exact in float32 for these |a| (9-bit first part of pi/2).
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(-s, s, 200_000) for s in (1.0, 10.0, 1e3, 1e4)])
    a = a.astype(np.float32)
    sin, cos = jax.jit(sincos)(a)
    exact = a.astype(np.float64)
    assert np.max(np.abs(np.asarray(sin) - np.sin(exact))) <= 2.0**-22
    assert np.max(np.abs(np.asarray(cos) - np.cos(exact))) <= 2.0**-22
    x = jnp.linspace(-20.0, 20.0, 1001)
    grad = jax.grad(lambda x: jnp.sum(3.0 * sincos(x)[0] + sincos(x)[1]))(x)
    np.testing.assert_allclose(grad, 3.0 * np.cos(x) - np.sin(x), atol=4 * 2.0**-22)


def test_epps_pulley_quadrature_matches_the_closed_form_integral():
    # For a point mass at 0: |phi_hat - phi|^2 = (1 - e^{-t^2/2})^2. The 17-node rule on
    # [0, 3] with doubled weights matches a fine quadrature of the window-weighted integrand on
    # [-3, 3], and the real-line closed form sqrt(2 pi)(1 - 2/sqrt(2) + 1/sqrt(3)) up to the
    # tails beyond |t| = 3 (~2%).
    t, w = epps_pulley_quadrature(3.0, 17)
    approx = np.sum(w * (1 - np.exp(-t * t / 2)) ** 2)
    fine_t = np.linspace(-3.0, 3.0, 20001)
    fine = np.trapezoid((1 - np.exp(-(fine_t**2) / 2)) ** 2 * np.exp(-(fine_t**2) / 2), fine_t)
    exact = np.sqrt(2 * np.pi) * (1 - 2 / np.sqrt(2) + 1 / np.sqrt(3))
    assert approx == pytest.approx(fine, rel=1e-3)
    assert approx == pytest.approx(exact, rel=3e-2)
    assert float(epps_pulley(jnp.zeros((10, 1)))[0]) == pytest.approx(10 * approx, rel=1e-5)
    with pytest.raises(ValueError, match="odd"):
        epps_pulley_quadrature(3.0, 16)


def test_sigreg_and_vicreg_separate_isotropic_from_collapsed_features():
    key = jax.random.key(2)
    iso = jax.random.normal(key, (2048, 16))
    collapsed = jnp.tile(jax.random.normal(jax.random.key(3), (1, 16)), (2048, 1))
    dirs = random_directions(key, 16, 64)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=0), 1.0, rtol=1e-5)
    assert float(sigreg(iso, key, 64)) < 3.0 < 100.0 < float(sigreg(collapsed, key, 64))
    var_iso, cov_iso = vicreg_terms(iso)
    var_col, cov_col = vicreg_terms(collapsed)
    assert float(var_iso) < 0.05 and float(var_col) > 0.95  # hinge on per-dim std 1
    assert float(cov_iso) < 0.05
    correlated = jnp.concatenate([iso[:, :1]] * 16, axis=1)  # 16 copies of one feature
    assert float(vicreg_terms(correlated)[1]) > 10.0
    # Leading axes pool into samples (the world model's [B, T, D] latents); the hinge target
    # is the std to keep: unit-std features miss a target of 2 by about 1, unbiased (N - 1).
    np.testing.assert_allclose(vicreg_terms(iso.reshape(2, 1024, 16)), (var_iso, cov_iso))
    x = np.asarray(iso, np.float64)
    expected = np.maximum(0.0, 2.0 - np.sqrt(x.var(axis=0, ddof=1) + 1e-4)).mean()
    assert float(vicreg_terms(iso, std_target=2.0)[0]) == pytest.approx(expected, rel=1e-4)


def test_weighted_epps_pulley_equals_repeated_rows_and_uniform_weights_change_nothing():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(40, 5)) ** 3, jnp.float32)  # not Gaussian
    counts = rng.integers(0, 4, size=40)
    repeated = jnp.asarray(np.repeat(np.asarray(x), counts, axis=0))
    weighted = epps_pulley(x, sample_weights=jnp.asarray(counts, jnp.float32))
    # Same empirical characteristic function; the statistic scales with the row count N.
    np.testing.assert_allclose(
        weighted / 40, epps_pulley(repeated) / counts.sum(), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        epps_pulley(x, sample_weights=jnp.full((40,), 2.5)), epps_pulley(x), rtol=1e-5
    )
    # Zero weight on the non-Gaussian rows leaves only the Gaussian ones.
    outliers = 5.0 + jnp.tile(x[:, :2], (10, 1))  # 400 rows, a quarter of the sample
    mix = jnp.concatenate([jnp.asarray(rng.normal(size=(1200, 2)), jnp.float32), outliers])
    keep = jnp.concatenate([jnp.ones(1200), jnp.zeros(400)])
    assert float(epps_pulley(mix, sample_weights=keep).max()) < 0.1 * float(epps_pulley(mix).min())


def test_pixel_deviation_weights_single_out_what_stands_out():
    patches = np.zeros((2, 10, 12), np.float32)
    patches[:, 3] = 5.0  # one patch unlike the rest of its clip
    w = np.asarray(pixel_deviation_weights(jnp.asarray(patches)))
    np.testing.assert_allclose(w.mean(axis=1), 1.0, rtol=1e-4)
    assert w[0, 3] > 5 * w[0, 0] and np.argmax(w[1]) == 3


def test_regularizer_and_target_config_errors():
    c = tiny_image_config()
    assert regularizer_from_config(c) is None  # default: plain JEPA
    c.regularizer.type = "sigreg"
    c.regularizer.num_points = 16
    with pytest.raises(ConfigError, match="regularizer.num_points=16 is invalid"):
        regularizer_from_config(c)
    c.regularizer.num_points = 17
    c.regularizer.token_weighting = "entropy"
    with pytest.raises(ConfigError, match="regularizer.token_weighting='entropy' is invalid"):
        regularizer_from_config(c)
    c.regularizer.token_weighting = "pixel_deviation"
    assert regularizer_from_config(c).token_weighting == "pixel_deviation"
    c.regularizer.type = "vicreg"  # VICReg's moments are unweighted: one line, not a no-op
    with pytest.raises(ConfigError, match=r"token_weighting='pixel_deviation' is invalid.*vicreg"):
        regularizer_from_config(c)
    c.regularizer.type = "barlow"
    with pytest.raises(ConfigError, match="regularizer.type='barlow'"):
        regularizer_from_config(c)
    c.target.stop_gradient = False
    with pytest.raises(ConfigError, match="stop_gradient=False needs config.target.ema=False"):
        target_mode_from_config(c)
    c.target.ema = False
    assert target_mode_from_config(c) == (False, False)


def test_without_ema_the_target_is_the_online_encoder():
    c = tiny_image_config()
    c.target.ema = False
    trainer = build_trainer(c, jax.devices()[:1])
    # momentum 0 at every step: target_params <- params exactly after each update
    assert all(float(trainer.schedules["ema"](s)) == 0.0 for s in (0, 3, 100))
    assert trainer.objective.ema_target is False and trainer.objective.stop_gradient is True


@pytest.fixture(scope="module")
def collapse_runs():
    """The same short no-EMA, no-stop-gradient I-JEPA training run (the real jitted train step
    on the built-in shapes stream: 150 steps of a 2-block width-32 ViT on 32x32 images, lr
    1e-2, one device) without a regularizer and with SIGReg, from the same initial state and on
    the same batches. Returns {name: [effective rank of the target features at each step]}."""
    configs = {}
    for name in ("none", "sigreg"):
        c = tiny_image_config()
        c.total_steps = 150
        c.optim.update(lr=1e-2, start_lr=1e-2)
        c.target.update(ema=False, stop_gradient=False)
        c.regularizer.type = name
        configs[name] = c
    trainers = {name: build_trainer(c, jax.devices()[:1]) for name, c in configs.items()}
    stream = iter(trainers["none"].train_dataset())
    batches = [next(stream) for _ in range(150)]
    ranks = {}
    with jax.set_mesh(trainers["none"].mesh):
        initial, shardings = trainers["none"].create_state()
        for name, trainer in trainers.items():
            state = jax.tree.map(jnp.copy, initial)  # the step donates its input state
            step_fn = trainer.make_step(shardings, make_global_batch(batches[0], trainer.mesh))
            ranks[name] = []
            for i, batch in enumerate(batches):
                state, metrics = step_fn(state, make_global_batch(batch, trainer.mesh))
                if i % 50 == 0 or i == len(batches) - 1:
                    ranks[name].append(host_metrics(metrics))
    return ranks


def test_no_ema_run_collapses_and_sigreg_prevents_it(collapse_runs):
    none, with_sigreg = collapse_runs["none"], collapse_runs["sigreg"]
    start = none[0]["effective_rank"]
    assert start > 5.0  # both start from the same healthy init (rank ~11 of 32)
    assert with_sigreg[0]["effective_rank"] == pytest.approx(start, rel=1e-4)
    rank_none, rank_sigreg = none[-1]["effective_rank"], with_sigreg[-1]["effective_rank"]
    print(f"effective rank: start {start:.2f}, no EMA {rank_none:.2f}, + SIGReg {rank_sigreg:.2f}")
    assert rank_none < 1.5, rank_none  # collapsed: every token maps to ~one vector
    assert rank_sigreg > 5.0 * rank_none, (rank_sigreg, rank_none)
    # The regularizer's terms are reported with the step's metrics.
    assert with_sigreg[-1]["sigreg"] > 0 and "loss_prediction" in with_sigreg[-1]
    assert "sigreg" not in none[-1]


def test_the_projector_carries_the_regularizer_and_leaves_the_other_params_alone():
    c = tiny_image_config()
    c.regularizer.update(type="sigreg", projector=(16, 8))
    with_projector = build_trainer(c, jax.devices()[:1])
    c_plain = tiny_image_config()
    c_plain.regularizer.type = "sigreg"
    plain = build_trainer(c_plain, jax.devices()[:1])
    batch = make_global_batch(next(iter(with_projector.train_dataset())), with_projector.mesh)
    with jax.set_mesh(with_projector.mesh):
        state, _ = with_projector.create_state()
        plain_state, _ = plain.create_state()
    params = state["params"]
    width = params["encoder"]["patch_embed"]["kernel"].shape[-1]
    assert params["projector"]["hidden"]["kernel"].shape == (width, 16)
    assert params["projector"]["out"]["kernel"].shape == (16, 8)
    # Its own init key: the encoder and predictor start as in a run without a projector.
    for part in ("encoder", "predictor"):
        jax.tree.map(np.testing.assert_array_equal, params[part], plain_state["params"][part])

    def regularizer_grads(p):
        def term(p):
            _, aux = with_projector.objective(p, state["target_params"], batch)
            return aux["terms"]["regularizer"]

        return jax.grad(term)(p)

    grads = regularizer_grads(params)
    assert float(optax.tree.norm(grads["projector"])) > 0
    assert float(optax.tree.norm(grads["encoder"])) > 0
    # With a zero output layer every projected sample is 0: SIGReg is then a constant, so the
    # regularizer reaches the encoder only through the projector.
    zeroed = {**params, "projector": {**params["projector"], "out": {"kernel": jnp.zeros((16, 8))}}}
    assert float(optax.tree.norm(regularizer_grads(zeroed)["encoder"])) == 0.0


def test_projector_config_errors():
    c = tiny_image_config()
    c.regularizer.update(type="sigreg", projector=(16,))
    with pytest.raises(ConfigError, match=r"regularizer.projector=\(16,\) is invalid"):
        regularizer_from_config(c)
    c.regularizer.projector = (16, 0)
    with pytest.raises(ConfigError, match="two integers >= 1"):
        regularizer_from_config(c)
    c.regularizer.projector = (16, 8)
    assert regularizer_from_config(c).projector == (16, 8)
