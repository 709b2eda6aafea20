"""Train-step throughput: clips/s, achieved GFLOP/s (XLA cost analysis) and peak fraction.

Times the jitted, sharded train step of any training config on real batches from its grain
pipeline (generated before timing, so data loading is excluded), and this machine's dense
matmul rate in the step's compute dtype for reference. Steps are timed as the trainer runs them:
dispatched back to back (the host queues the next step while the device runs this one) and
waited for at the end of a round, so a step's time is its round's time over its steps. The
machine is shared and noisy, so steps run in rounds and both the median and the best round are
reported; the headline uses the median. `--sync_round` adds one round that waits for every
step before dispatching the next: its difference is the host's dispatch time per step.

  python benchmarks/train_step.py                         # configs/benchmark_vjepa_tiny.py
  python benchmarks/train_step.py --config=configs/default.py --steps=30
  python benchmarks/train_step.py --config.batch_size=8             # any --config.<key> override

Also the model's FLOPs (the analytic count the progress line's MFU uses, recomputation
excluded), its TFLOP/s per device and MFU against the chip's catalogue peak for the config's
dtype (bf16 on accelerators; on a CPU the measured matmul rate).

Last line: clips_per_s=... gflops_per_s=... matmul_gflops_per_s=... peak_fraction=...
model_tflops_per_s=... mfu=...
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jepa_jax.commands.common import define_config_flag, loaded_config, start_command  # noqa: E402
from jepa_jax.hardware import (  # noqa: E402
    compiled_flops,
    measured_matmul_tflops,
    peak_tflops_per_device,
)
from jepa_jax.sharding import make_global_batch  # noqa: E402
from jepa_jax.train.flops import jepa_step_flops  # noqa: E402
from jepa_jax.train.setup import build_trainer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
define_config_flag("Training config.", os.path.join(REPO, "configs", "benchmark_vjepa_tiny.py"))
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after the first (also untimed).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "The timed steps are split into this many rounds.")
_SYNC_ROUND = flags.DEFINE_bool(
    "sync_round", False, "Also time one round that waits for each step before the next."
)
_MATMUL = flags.DEFINE_integer(
    "matmul_size", 2048, "Side of the square reference matmul (in config.model.dtype)."
)


def main(argv):
    start_command(argv)
    config = loaded_config()
    trainer = build_trainer(config)
    mesh, encoder, predictor, unit = trainer.mesh, trainer.encoder, trainer.predictor, trainer.unit
    print(
        f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; mesh {dict(mesh.shape)}"
    )
    print(
        f"model: encoder {encoder.width}w x {encoder.depth}d x {encoder.num_heads}h, predictor "
        f"{predictor.width}w x {predictor.depth}d x {predictor.num_heads}h, {config.model.dtype}"
    )
    print(
        f"input: batch {config.batch_size} x {trainer.example_shape}, token grid "
        f"{trainer.sampler.grid}"
    )
    print(trainer.sampler.describe())

    it = iter(trainer.train_dataset())
    n_batches = 4
    with jax.set_mesh(mesh):
        batches = [make_global_batch(next(it), mesh) for _ in range(n_batches)]
        state, shardings = trainer.create_state()
        step = trainer.make_step(shardings, batches[0])
        t0 = time.perf_counter()
        # Timed below is this executable itself: calling `step` would compile it again.
        compiled = step.lower(state, batches[0]).compile()
        print(f"compile: {time.perf_counter() - t0:.1f} s")
        flops = compiled_flops(compiled)
        for i in range(1 + _WARMUP.value):
            state, metrics = compiled(state, batches[i % n_batches])
        jax.block_until_ready(metrics)
        times = []  # per round: seconds per step
        per_round = max(1, _STEPS.value // _ROUNDS.value)
        for r in range(_ROUNDS.value):
            t = time.perf_counter()
            for i in range(per_round):
                state, metrics = compiled(state, batches[i % n_batches])
            jax.block_until_ready((state, metrics))
            times.append((time.perf_counter() - t) / per_round)
            print(f"round {r + 1}: {times[-1]:.3f} s/step over {per_round} steps", flush=True)
        if _SYNC_ROUND.value:
            synced = []
            for i in range(per_round):
                t = time.perf_counter()
                state, metrics = compiled(state, batches[i % n_batches])
                jax.block_until_ready((state, metrics))
                synced.append(time.perf_counter() - t)
            print(
                f"waiting for every step: median {np.median(synced):.3f} s/step over "
                f"{per_round} steps (the host's dispatch time shows here; the trainer keeps "
                f"one step in flight)"
            )
    loss = float(jax.device_get(metrics["loss"]))
    if not np.isfinite(loss):
        sys.exit(f"non-finite loss {loss}: the benchmark config does not train")
    median, best = float(np.median(times)), float(np.min(times))
    per_s = config.batch_size / median
    gflops = flops / median / 1e9
    dtype = str(config.model.dtype)
    mm = measured_matmul_tflops(dtype, _MATMUL.value, repeats=10) * 1e3
    print(f"step: median {median:.3f} s, best {best:.3f} s over {len(times)} rounds")
    print(f"throughput: {per_s:.2f} {unit}/s (best {config.batch_size / best:.2f})")
    print(f"XLA cost analysis: {flops / 1e9:.1f} GFLOP/step -> {gflops:.1f} GFLOP/s achieved")
    print(
        f"{dtype} matmul {_MATMUL.value}^3: {mm:.1f} GFLOP/s; achieved / matmul = {gflops / mm:.3f}"
    )
    model_tflops = jepa_step_flops(trainer) / median / jax.device_count() / 1e12
    peak, peak_source = peak_tflops_per_device(jax.devices()[0], dtype)
    print(
        f"model: {jepa_step_flops(trainer) / 1e9:.1f} GFLOP/step -> {model_tflops:.3f} TFLOP/s "
        f"per device; MFU {model_tflops / peak:.1%} of {peak:.1f} TFLOP/s ({peak_source})"
    )
    print(
        f"{unit}_per_s={per_s:.3f} gflops_per_s={gflops:.2f} matmul_gflops_per_s={mm:.2f} "
        f"peak_fraction={gflops / mm:.4f} model_tflops_per_s={model_tflops:.4f} "
        f"mfu={model_tflops / peak:.4f}"
    )


if __name__ == "__main__":
    app.run(main)
