"""The action-conditioned predictor: block-causal attention (the future never changes past
predictions), and autoregressive rollouts that match step-by-step prediction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.envs import two_rooms
from jepa_jax.models.ac_predictor import ActionConditionedPredictor, block_causal_mask
from jepa_jax.world_model.model import InverseDynamics, WorldModel

T, P, D, A = 5, 4, 16, 6


def make_predictor(use_state=False):
    return ActionConditionedPredictor(
        width=32, depth=2, num_heads=4, mlp_dim=64, out_width=D, grid=(2, 2), use_state=use_state
    )


def inputs(key, batch=2):
    kz, ka, ks = jax.random.split(key, 3)
    z = jax.random.normal(kz, (batch, T, P, D))
    a = jax.random.normal(ka, (batch, T, A))
    s = jax.random.normal(ks, (batch, T, 2))
    return z, a, s


def random_params(params, seed=9):
    """O(1) random weights: at init the outputs hardly depend on the inputs (std 0.02 kernels),
    which would make 'the future changed the output' a test of rounding."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [0.3 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, new)


def test_block_causal_mask():
    m = block_causal_mask(3, 2)
    expected = np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        bool,
    )
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize("use_state", [False, True])
def test_future_inputs_do_not_change_past_predictions(use_state):
    predictor = make_predictor(use_state)
    z, a, s = inputs(jax.random.key(0))
    s = s if use_state else None
    params = random_params(predictor.init(jax.random.key(1), z, a, s)["params"])
    apply = jax.jit(lambda z, a, s: predictor.apply({"params": params}, z, a, s))
    base = np.asarray(apply(z, a, s))
    t0 = 2
    # Change the frame, the action (and the state) at step t0 and everything after it.
    z2 = z.at[:, t0:].add(3.0)
    a2 = a.at[:, t0:].add(-2.0)
    s2 = None if s is None else s.at[:, t0:].add(1.0)
    for changed in (apply(z2, a, s), apply(z, a2, s), apply(z2, a2, s2)):
        changed = np.asarray(changed)
        np.testing.assert_allclose(changed[:, :t0], base[:, :t0], rtol=1e-6, atol=1e-6)
        assert np.abs(changed[:, t0:] - base[:, t0:]).max() > 1e-2  # the future did change


def small_world_model(use_state=False):
    env = two_rooms.TwoRooms()
    return WorldModel(
        env=env,
        encoder=None,
        predictor=make_predictor(use_state),
        idm=InverseDynamics(hidden=8, action_dim=2),
        action_chunk=A // 2,
        use_state=use_state,
    )


@pytest.mark.parametrize("context", [1, 2, T])
def test_rollout_matches_step_by_step_prediction(context):
    """model.rollout (fixed-size sliding window, lax.scan) equals feeding each prediction back by
    hand into a window of the last `context` latents."""
    model = small_world_model()
    z, a, _ = inputs(jax.random.key(2))
    params = random_params(model.predictor.init(jax.random.key(3), z, a)["params"])
    horizon = T
    got = np.asarray(jax.jit(lambda z0, a: model.rollout(params, z0, a, context))(z[:, 0], a))
    seq_z, seq_a, expected = [z[:, 0]], [], []
    for i in range(horizon):
        seq_a.append(a[:, i])
        zs = jnp.stack(seq_z[-context:], axis=1)
        acts = jnp.stack(seq_a[-context:], axis=1)
        nxt = model.predict(params, zs, acts)[0][:, -1]
        expected.append(nxt)
        seq_z.append(nxt)
    np.testing.assert_allclose(got, np.stack(expected, axis=1), rtol=2e-4, atol=2e-4)


def test_rollout_with_states_propagates_them():
    model = small_world_model(use_state=True)
    z, a, s = inputs(jax.random.key(4))
    params = random_params(model.predictor.init(jax.random.key(5), z, a, s)["params"])
    s0 = jnp.zeros((2, 2))
    got = model.rollout(params, z[:, 0], a[:, :3], 3, s0)
    states = [s0]
    for i in range(2):
        states.append(model.next_state(states[-1], a[:, i]))
    pred, _ = model.predict(
        params, jnp.stack([z[:, 0], got[:, 0], got[:, 1]], 1), a[:, :3], jnp.stack(states, 1)
    )
    np.testing.assert_allclose(got[:, 2], pred[:, 2], rtol=2e-4, atol=2e-4)
