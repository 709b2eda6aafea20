"""Scale-out features give the same step: meshes (data, fsdp, tensor), FSDP memory split, bf16,
rematerialisation, scanned layers and gradient accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_video_config

from jepa_jax.models.layers import stack_layers, unstack_layers
from jepa_jax.sharding import bytes_per_device, make_global_batch
from jepa_jax.train.monitors import monitors_from_stats
from jepa_jax.train.setup import build_trainer


def run_step(config, devices, batch_np, state_fn=None):
    """One train step; returns (loss, updated params on host, the new state, metrics)."""
    trainer = build_trainer(config, devices=devices)
    with jax.set_mesh(trainer.mesh):
        state, shardings = trainer.create_state()
        if state_fn is not None:
            state = jax.device_put(state_fn(jax.device_get(state)), shardings)
        batch = make_global_batch(batch_np, trainer.mesh)
        state, metrics = trainer.make_step(shardings, batch)(state, batch)
    return float(metrics["loss"]), jax.device_get(state["params"]), state, jax.device_get(metrics)


def first_batch(config):
    return next(iter(build_trainer(config, devices=jax.devices()[:1]).train_dataset()))


def assert_trees_close(a, b, rtol, atol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.fixture(scope="module")
def reference():
    """The video config's step on one device."""
    config = tiny_video_config()
    batch = first_batch(config)
    loss, params, _, metrics = run_step(config, jax.devices()[:1], batch)
    return config, batch, loss, params, metrics


@pytest.mark.parametrize("mesh", [(8, 1, 1), (2, 4, 1), (4, 2, 1), (2, 2, 2)])
def test_same_step_on_every_mesh(devices, reference, mesh):
    config, batch, loss1, params1, _ = reference
    config = tiny_video_config()
    config.mesh.update(data=mesh[0], fsdp=mesh[1], tensor=mesh[2])
    loss, params, state, _ = run_step(config, devices, batch)
    fc1 = state["params"]["encoder"]["transformer"]["blocks_0"]["mlp"]["fc1"]["kernel"]
    # [embed, mlp] = [32, 64]: embed split over fsdp, mlp over tensor.
    assert fc1.addressable_shards[0].data.shape == (32 // mesh[1], 64 // mesh[2])
    assert loss == pytest.approx(loss1, rel=1e-5)
    assert_trees_close(params, params1, rtol=2e-4, atol=2e-6)


def test_fsdp_splits_params_target_and_optimizer_state(devices):
    config = tiny_video_config()
    # Kernels dominate at this width, so per-device bytes should be close to total / 8.
    config.model.encoder.update(width=256, num_heads=4, mlp_dim=1024)
    config.model.predictor.update(width=128, num_heads=4)
    config.mesh.update(data=1, fsdp=8)
    trainer = build_trainer(config, devices=devices)
    with jax.set_mesh(trainer.mesh):
        state, _ = trainer.create_state()
    for part in ("params", "target_params", "opt_state"):
        total = sum(x.nbytes for x in jax.tree.leaves(state[part]))
        per_device = bytes_per_device(state[part])
        assert len(per_device) == 8
        for b in per_device.values():
            assert b <= 1.1 * total / 8, (part, b, total)
    # The EMA target is sharded exactly like the online encoder.
    enc = jax.tree.leaves(state["params"]["encoder"])
    tgt = jax.tree.leaves(state["target_params"]["encoder"])
    assert [x.sharding for x in enc] == [x.sharding for x in tgt]


def test_bf16_compute_tracks_fp32(reference):
    config, batch, loss32, params32, _ = reference
    config = tiny_video_config()
    config.model.dtype = "bfloat16"
    loss16, params16, state, _ = run_step(config, jax.devices()[:1], batch)
    # Params and optimizer state stay float32; only activations are bf16.
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state["params"]))
    assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state["opt_state"]))
    assert loss16 == pytest.approx(loss32, rel=2e-2)
    # Adam's first update is ~lr * sign(grad), so compare update directions, not elements.
    trainer = build_trainer(tiny_video_config(), devices=jax.devices()[:1])
    with jax.set_mesh(trainer.mesh):
        init = jax.device_get(trainer.create_state()[0]["params"])
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    d16 = flat(params16) - flat(init)
    d32 = flat(params32) - flat(init)
    cosine = d16 @ d32 / (np.linalg.norm(d16) * np.linalg.norm(d32))
    assert cosine > 0.95, cosine


@pytest.mark.parametrize("policy", ["full", "save_qkv_attn"])
def test_remat_policies_give_the_same_step(reference, policy):
    config, batch, loss1, params1, _ = reference
    config = tiny_video_config()
    config.model.remat_policy = policy
    loss, params, _, _ = run_step(config, jax.devices()[:1], batch)
    assert loss == pytest.approx(loss1, rel=1e-6)
    assert_trees_close(params, params1, rtol=1e-5, atol=1e-7)


def test_scanned_layers_give_the_same_step(reference):
    config, batch, loss1, params1, _ = reference
    config = tiny_video_config()
    config.model.scan_layers = True
    unrolled = build_trainer(tiny_video_config(), devices=jax.devices()[:1])
    with jax.set_mesh(unrolled.mesh):
        init, _ = unrolled.create_state()
    init = jax.device_get(init)

    def from_unrolled(state):  # start from the unrolled run's exact init, restacked
        state = dict(state)
        state["params"] = stack_layers(init["params"])
        state["target_params"] = stack_layers(init["target_params"])
        return state

    loss, params, _, _ = run_step(config, jax.devices()[:1], batch, from_unrolled)
    assert loss == pytest.approx(loss1, rel=1e-5)
    assert_trees_close(unstack_layers(params), params1, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_equals_the_large_batch(devices, reference):
    config, batch, loss1, params1, metrics1 = reference
    config = tiny_video_config()
    config.microbatches = 4
    config.mesh.update(data=2)  # 8 rows = 4 microbatches x 2 data-parallel devices
    loss, params, _, metrics = run_step(config, devices[:2], batch)
    assert loss == pytest.approx(loss1, rel=1e-5)
    assert_trees_close(params, params1, rtol=2e-4, atol=2e-6)
    # The collapse monitors see every microbatch, not just the last. The tolerance is derived
    # from what the test guards against: monitors of one microbatch (a quarter of the rows)
    # differ from the whole batch's by `gap`; summation-order round-off, which differs between
    # CPU kinds (AVX2 vs AVX-512 + oneDNN), must stay far below it.
    assert float(metrics["feature_stats"]["count"]) == float(metrics1["feature_stats"]["count"])
    m1 = monitors_from_stats(metrics1["feature_stats"])
    m4 = monitors_from_stats(metrics["feature_stats"])
    quarter = jax.tree.map(lambda x: x[: x.shape[0] // 4], batch)
    _, _, _, metrics_quarter = run_step(tiny_video_config(), devices[:1], quarter)
    m_quarter = monitors_from_stats(metrics_quarter["feature_stats"])
    for key in ("feature_std", "effective_rank"):
        gap = abs(m_quarter[key] - m1[key])
        assert gap > 1e-3 * abs(m1[key]), (key, m_quarter[key], m1[key])  # the check has teeth
        assert abs(m4[key] - m1[key]) < 0.05 * gap, (key, m4[key], m1[key], gap)
