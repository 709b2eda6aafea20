"""The jitted train step: gradient isolation of the target, EMA arithmetic, schedules,
compile-once, and equality across meshes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_video_config

from jepa_jax.sharding import make_global_batch
from jepa_jax.train import optim
from jepa_jax.train.setup import build_trainer


def first_batches(trainer, n):
    it = iter(trainer.train_dataset())
    with jax.set_mesh(trainer.mesh):
        return [make_global_batch(next(it), trainer.mesh) for _ in range(n)]


@pytest.fixture(scope="module")
def video():
    trainer = build_trainer(tiny_video_config())
    return trainer, first_batches(trainer, 4)


def test_no_gradient_reaches_target_params(video):
    trainer, batches = video
    with jax.set_mesh(trainer.mesh):
        state, _ = trainer.create_state()
        # Perturb the target so it differs from the online encoder, then differentiate the loss
        # w.r.t. the target params: stop_gradient must make every entry exactly zero.
        target = jax.tree.map(lambda x: x + 0.01, state["target_params"])
        grads = jax.jit(jax.grad(lambda t: trainer.objective(state["params"], t, batches[0])[0]))(
            target
        )
    leaves = jax.tree.leaves(grads)
    assert leaves and all(not np.any(np.asarray(g)) for g in leaves)
    # ... while the online params do get gradient.
    with jax.set_mesh(trainer.mesh):
        g_online = jax.jit(jax.grad(lambda p: trainer.objective(p, target, batches[0])[0]))(
            state["params"]
        )
    assert float(optax.tree.norm(g_online)) > 0


def test_target_starts_as_a_copy_in_its_own_buffers(video):
    trainer, _ = video
    with jax.set_mesh(trainer.mesh):
        state, _ = trainer.create_state()
    online = jax.tree.leaves(state["params"]["encoder"])
    target = jax.tree.leaves(state["target_params"]["encoder"])
    for a, b in zip(online, target, strict=True):
        np.testing.assert_array_equal(a, b)
        for sa, sb in zip(a.addressable_shards, b.addressable_shards, strict=True):
            assert sa.data.unsafe_buffer_pointer() != sb.data.unsafe_buffer_pointer()


def test_ema_update_arithmetic_and_single_compilation(video):
    trainer, batches = video
    with jax.set_mesh(trainer.mesh):
        state, shardings = trainer.create_state()
        step = trainer.make_step(shardings, batches[0])
        state, _ = step(state, batches[0])  # move the online params away from the target
        s = int(state["step"])
        target_before = jax.device_get(state["target_params"]["encoder"])
        state, metrics = step(state, batches[1])
        online = jax.device_get(state["params"]["encoder"])
        target_after = jax.device_get(state["target_params"]["encoder"])
        for i in (2, 3):  # new masks every batch, same shapes
            state, _ = step(state, batches[i])
        assert step._cache_size() == 1  # fixed token counts: compiled once
    m = float(trainer.schedules["ema"](s))
    assert float(metrics["ema_momentum"]) == pytest.approx(m)
    jax.tree.map(
        lambda t0, p, t1: np.testing.assert_allclose(
            t1, m * t0 + (1 - m) * p, rtol=1e-6, atol=1e-7
        ),
        target_before,
        online,
        target_after,
    )
    moved = [
        not np.allclose(p, t)
        for p, t in zip(jax.tree.leaves(online), jax.tree.leaves(target_after), strict=True)
    ]
    assert any(moved)  # the target lags the online encoder


def test_schedules_match_reference_shapes():
    o = dict(
        lr=1e-3,
        start_lr=2e-4,
        final_lr=1e-6,
        warmup_steps=10,
        weight_decay=0.04,
        final_weight_decay=0.4,
        schedule_scale=1.25,
    )
    lr = optim.lr_schedule(o, 100)
    assert float(lr(0)) == pytest.approx(2e-4)
    assert float(lr(5)) == pytest.approx(2e-4 + 0.5 * (1e-3 - 2e-4))
    assert float(lr(10)) == pytest.approx(1e-3)
    # cosine over schedule_scale * total = 125 steps, so at step 100 it has not finished
    assert 1e-6 < float(lr(100)) < 1e-3 * 0.2
    assert float(lr(125)) == pytest.approx(1e-6, abs=1e-9)
    wd = optim.wd_schedule(o, 100)
    assert float(wd(0)) == pytest.approx(0.04)
    assert float(wd(125)) == pytest.approx(0.4)
    ema = optim.ema_schedule((0.998, 1.0), o, 100)
    assert float(ema(0)) == pytest.approx(0.998)
    assert float(ema(100)) == pytest.approx(0.998 + 0.002 * 100 / 125)
    assert float(ema(1000)) == pytest.approx(1.0)


def test_weight_decay_mask_skips_biases_and_norms():
    params = {
        "a": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
        "norm": {"scale": jnp.ones(2), "bias": jnp.ones(2)},
        "mask_tokens": jnp.ones((2, 4)),
        "blocks": {"mlp": {"fc1": {"bias": jnp.ones((3, 4))}}},
    }  # scanned bias is 2-D
    mask = optim.decay_mask(params)
    assert mask["a"]["kernel"] and mask["mask_tokens"]
    assert not mask["a"]["bias"] and not mask["norm"]["scale"] and not mask["norm"]["bias"]
    assert not mask["blocks"]["mlp"]["fc1"]["bias"]


def test_the_benchmark_times_rounds_of_queued_steps_and_a_waiting_round():
    """benchmarks/train_step.py: rounds of steps dispatched back to back (as the trainer runs
    them), the optional round that waits for each step, and the key=value last line."""
    from helpers import benchmark, last_line_fields

    tiny = [
        "--config.model.encoder.size=tiny",
        "--config.model.encoder.depth=2",
        "--config.model.encoder.patch_size=4",
        "--config.data.image_size=32",
        "--config.data.num_frames=4",
        "--config.model.predictor.width=32",
        "--config.model.predictor.depth=1",
        "--config.model.predictor.num_heads=2",
        "--config.batch_size=4",
    ]
    out = benchmark(
        "train_step.py",
        *tiny,
        "--steps=4",
        "--rounds=2",
        "--warmup=1",
        "--matmul_size=64",
        "--sync_round",
        env={"JAX_NUM_CPU_DEVICES": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rounds = [line for line in out.stdout.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2 and all("over 2 steps" in line for line in rounds)
    assert "waiting for every step: median" in out.stdout
    fields = last_line_fields(out.stdout)
    assert float(fields["clips_per_s"]) > 0 and 0 < float(fields["mfu"])
