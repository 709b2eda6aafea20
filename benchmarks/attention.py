"""Attention side by side: every implementation `config.model.attention_impl` offers, one run.

For q, k, v of shape [batch, tokens, heads, head_dim] in bf16 (the ViT-L/16 V-JEPA encoder's at
16 x 224 x 224 by default: 1568 tokens, 16 heads of 64), times forward + backward of each
implementation (median of --repeats after a warm-up; jitted, inputs on the device) and gives its
error against an fp32 einsum reference, ||out - ref|| / ||ref|| (bf16 operands: 1e-3..1e-2).
An implementation the backend refuses (cuDNN off GPU) is listed with the reason.

  python benchmarks/attention.py                          # ViT-L/16 shapes, batch 16
  python benchmarks/attention.py --batch=2 --tokens=64   # toy sizes for any machine

"auto" (the default) runs whichever of them it picks here, so its time matches that one's.
Last line: <implementation>_ms=... for each that ran.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jepa_jax.models import layers  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 16, "Clips per batch.")
_TOKENS = flags.DEFINE_integer("tokens", 1568, "Tokens per clip (8 x 14 x 14 at 16x224x224).")
_HEADS = flags.DEFINE_integer("heads", 16, "Attention heads.")
_HEAD_DIM = flags.DEFINE_integer("head_dim", 64, "Width of one head.")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed forward + backward passes.")


def _fwd_bwd(implementation: str):
    """jit(q, k, v -> (sum(out * cos out), d/dq, d/dk, d/dv)) for one implementation."""

    def loss(q, k, v):
        out = layers.attention(q, k, v, None, implementation)
        return jnp.sum((out * jnp.cos(out)).astype(jnp.float32)), out

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _median_ms(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main(argv):
    del argv
    shape = (_BATCH.value, _TOKENS.value, _HEADS.value, _HEAD_DIM.value)
    keys = jax.random.split(jax.random.key(0), 3)
    q32, k32, v32 = (jax.random.normal(key, shape, jnp.float32) for key in keys)
    q, k, v = (x.astype(jnp.bfloat16) for x in (q32, k32, v32))
    ref = np.asarray(
        jax.jit(lambda q, k, v: layers.attention(q, k, v, None, "einsum"))(
            q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)
        )
    )
    # forward + backward FLOPs of the two [N, N] matmuls (QK^T and PV): 4 B H N^2 Dh forward,
    # twice that backward
    flops = 3 * 4 * shape[0] * shape[2] * shape[1] ** 2 * shape[3]
    print(
        f"devices: {jax.devices()[0].device_kind}; q/k/v {shape} bf16; "
        f"{flops / 1e9:.1f} GFLOP per forward + backward"
    )
    results = {}
    for impl in ("auto", "cudnn", "dot_product_attention", "einsum"):
        fwd_bwd = _fwd_bwd(impl)  # one jitted function: compiled here, timed below
        try:
            (_, out), _ = fwd_bwd(q, k, v)
        except (RuntimeError, ValueError, NotImplementedError) as refusal:
            print(
                f"{impl:>22}: unavailable ({type(refusal).__name__}: "
                f"{str(refusal).splitlines()[0][:120]})"
            )
            continue
        out = np.asarray(out.astype(jnp.float32))
        err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
        ms = _median_ms(fwd_bwd, (q, k, v), _REPEATS.value)
        results[impl] = ms
        print(
            f"{impl:>22}: {ms:8.2f} ms forward + backward, {flops / ms / 1e9:7.1f} TFLOP/s, "
            f"relative error {err:.1e}"
        )
    print(" ".join(f"{name}_ms={ms:.3f}" for name, ms in results.items()))


if __name__ == "__main__":
    app.run(main)
