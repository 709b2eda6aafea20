"""The attention implementations compute one function, and "auto" falls back from cuDNN to XLA's
attention where jax refuses the fused kernel (on this CPU machine it always does)."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax.models import layers


def _inputs(masked: bool):
    kq, kk, kv, km = jax.random.split(jax.random.key(0), 4)
    shape = (2, 24, 3, 16)  # [B, N, H, Dh]
    q, k, v = (jax.random.normal(key, shape) for key in (kq, kk, kv))
    mask = None
    if masked:  # block-causal-like: every query keeps at least its own key
        mask = jax.random.bernoulli(km, 0.7, (2, 1, 24, 24)) | jnp.eye(24, dtype=bool)
    return q, k, v, mask


def _value_and_grads(implementation, q, k, v, mask):
    def loss(q, k, v):
        out = layers.attention(q, k, v, mask, implementation)
        return jnp.sum(out * jnp.cos(out)), out

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    return out, grads


@pytest.mark.parametrize("masked", [False, True])
def test_einsum_and_xla_attention_agree_in_value_and_gradient(masked):
    q, k, v, mask = _inputs(masked)
    out_e, grads_e = _value_and_grads("einsum", q, k, v, mask)
    out_x, grads_x = _value_and_grads("dot_product_attention", q, k, v, mask)
    # fp32 rounding of a 24-term softmax-weighted sum and its backward: ~1e-6 relative; 1e-4
    # leaves room for either CPU kind's summation order and still catches any real difference
    # (a missing scale or mask changes the output by O(1)).
    np.testing.assert_allclose(out_e, out_x, rtol=1e-4, atol=1e-5)
    for g_e, g_x in zip(grads_e, grads_x, strict=True):
        np.testing.assert_allclose(g_e, g_x, rtol=1e-4, atol=1e-5)


def test_auto_is_einsum_off_gpu():
    q, k, v, mask = _inputs(masked=True)
    assert jax.default_backend() != "gpu"
    np.testing.assert_array_equal(
        layers.attention(q, k, v, mask, "auto"), layers.attention(q, k, v, mask, "einsum")
    )


def test_auto_on_gpu_falls_back_to_xla_where_cudnn_is_refused_and_says_why_once(
    monkeypatch, caplog
):
    # Pretend to be on a GPU: "auto" then asks for cuDNN, which jax refuses here while
    # tracing ("cuDNN is not detected"), so XLA's attention must run and one warning explain it.
    monkeypatch.setattr(layers.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(layers, "_CUDNN_REFUSALS", set())
    q, k, v, mask = _inputs(masked=False)
    with caplog.at_level(logging.WARNING):
        out_auto = layers.attention(q, k, v, mask, "auto")
        layers.attention(q, k, v, mask, "auto")
    np.testing.assert_array_equal(
        out_auto, layers.attention(q, k, v, mask, "dot_product_attention")
    )
    notes = [r.getMessage() for r in caplog.records if "cuDNN" in r.getMessage()]
    assert len(notes) == 1, notes
    assert "float32" in notes[0] and "head dim 16" in notes[0] and "XLA" in notes[0]


def test_cudnn_asked_for_explicitly_is_an_error_where_unavailable():
    q, k, v, _ = _inputs(masked=False)
    with pytest.raises(RuntimeError, match="cuDNN"):
        layers.attention(
            q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16), None, "cudnn"
        )


def test_unknown_implementation_names_the_value_and_the_choices():
    q, k, v, _ = _inputs(masked=False)
    with pytest.raises(ValueError, match=r"'flash'.*'auto', 'cudnn'"):
        layers.attention(q, k, v, None, "flash")
