"""Accelerator facts: per-chip memory and peak dense matmul throughput, and the host CPU's.

Peaks are the vendors' dense bf16 figures (no sparsity), per chip (one JAX device each; v4 and
v5p chips run as one "megacore" device). They are the denominator of MFU: achieved FLOP/s of
the model's step divided by what the chip could do at best.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_gib: float  # device memory per chip
    peak_bf16_tflops: float  # dense bf16 matmul peak per chip
    peak_fp32_tflops: float  # what an fp32 step can reach (TPUs run fp32 matmuls as bf16 passes)


# Keyed by a lower-case substring of jax's device_kind; first match wins (order matters:
# "v5 lite" before "v5").
CHIPS: tuple[tuple[str, Chip], ...] = (
    ("tpu v4", Chip("TPU v4", 32, 275, 275)),
    ("tpu v5 lite", Chip("TPU v5e", 16, 197, 197)),
    ("tpu v5e", Chip("TPU v5e", 16, 197, 197)),
    ("tpu v5p", Chip("TPU v5p", 95, 459, 459)),
    ("tpu v5", Chip("TPU v5p", 95, 459, 459)),
    ("tpu v6 lite", Chip("TPU v6e", 32, 918, 918)),
    ("tpu v6e", Chip("TPU v6e", 32, 918, 918)),
    ("a100", Chip("NVIDIA A100", 80, 312, 19.5)),
    ("h100", Chip("NVIDIA H100", 80, 989, 67)),
    ("h200", Chip("NVIDIA H200", 141, 989, 67)),
)


def chip_for(device_kind: str) -> Chip | None:
    """The table entry whose key occurs in `device_kind` (case-insensitive), else None."""
    kind = device_kind.lower()
    for key, chip in CHIPS:
        if key in kind:
            return chip
    return None


@functools.cache
def measured_matmul_tflops(dtype: str = "float32", n: int = 1024, repeats: int = 5) -> float:
    """Dense n x n @ n x n matmul rate of the default device in TFLOP/s (best of `repeats`).

    On a CPU this is the "peak" for MFU, since CPUs have no single catalogue figure. Random
    operands: constant ones or zeros run faster than real data on some GPUs.
    """
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(jnp.dtype(dtype))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def peak_tflops_per_device(device: jax.Device, dtype: str) -> tuple[float, str]:
    """(peak TFLOP/s of one device for a step computing in `dtype`, where the figure comes from).

    Table figures for known TPUs/GPUs; the measured matmul rate for CPUs; NaN for unknown kinds.
    """
    if device.platform == "cpu":
        return measured_matmul_tflops(dtype), "measured CPU matmul"
    chip = chip_for(device.device_kind)
    if chip is None:
        return float("nan"), f"unknown device kind {device.device_kind!r}"
    peak = chip.peak_bf16_tflops if dtype == "bfloat16" else chip.peak_fp32_tflops
    return peak, f"{chip.name} {'bf16' if dtype == 'bfloat16' else 'fp32'} peak"


def compiled_flops(compiled) -> float:
    """FLOPs of one run of a compiled executable, per device for a partitioned program (XLA's
    cost analysis; NaN if the backend gives none)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # some backends return one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))
