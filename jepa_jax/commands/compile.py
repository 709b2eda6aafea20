"""`jepa-jax compile --config=configs/<file>.py[:arg] --topology=v5p-256 [--num_slices=N]`

Compiles the config's train step for a TPU topology on this machine (no TPU needed; needs the
`tpu` extra, i.e. libtpu) and prints per-chip memory (arguments, outputs, temporaries, total vs
the chip's HBM), FLOPs per step, and whether it fits. Exit status 1 if it does not fit.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

from jepa_jax.commands.common import define_config_flag, loaded_config, start_command

define_config_flag(
    "Config file, configs/<file>.py[:arg]; override fields with --config.<key>=<value>."
)
_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "TPU slice: v5p-128, v4-32, v5e-16, v6e-8, or a chip shape like v5p:4x4x8."
)
_NUM_SLICES = flags.DEFINE_integer(
    "num_slices", 1, "Slices joined over DCN; config.mesh.dcn_* must multiply to this."
)
flags.mark_flags_as_required(["config", "topology"])


def main(argv: list[str]) -> None:
    start_command(argv)
    # Compile for TPU without claiming this machine's accelerators; libtpu needs no workers.
    from jepa_jax.aot import compile_for_topology, parse_topology

    # Before any JAX backend starts: compile on the CPU host, and tell libtpu what the (absent)
    # TPU VM metadata would have, which keeps its log quiet.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # libtpu takes a machine-wide lock (/tmp/libtpu_lockfile) that any other JAX process with
    # libtpu installed may hold; compiling never touches a TPU, so sharing it is safe.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", parse_topology(_TOPOLOGY.value).cloud_name)

    config = loaded_config()
    start = time.perf_counter()
    print(f"compiling the train step for {_TOPOLOGY.value} x {_NUM_SLICES.value} ...", flush=True)
    report = compile_for_topology(config, _TOPOLOGY.value, _NUM_SLICES.value)
    for line in report.lines():
        print(line)
    print(f"compile time: {time.perf_counter() - start:.0f} s")
    if report.fits is False:
        sys.exit(1)
