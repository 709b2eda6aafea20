"""Quiet start-up: what a command prints is the project's own output unless `--verbose` is given.

Two foreign sources write to the process's stderr from C++, past Python's logging:
- TensorFlow (imported only by the TFDS data source) prints its oneDNN notice and absl's
  "log messages before InitializeLog" line when it loads;
- libtpu (the `tpu` extra, installed by `make test` for ahead-of-time TPU compiles) is loaded by
  JAX's TPU backend factory even on hosts without TPU chips, and prints warnings about the TPU
  metadata it cannot find.
`configure()` is called by the CLI before any JAX backend starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator

VERBOSE_ENV = "JEPA_JAX_VERBOSE"


def verbose() -> bool:
    """True when the user asked for foreign libraries' logs (`jepa-jax --verbose ...`)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def configure(verbose_requested: bool) -> None:
    """Set the process up for a quiet (or, with `verbose_requested`, a chatty) command.

    Child processes (grain workers, tests' subprocesses) inherit the choice through the
    environment.
    """
    if verbose_requested:
        os.environ[VERBOSE_ENV] = "1"
        return
    # TensorFlow's C++ logging below ERROR.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    skip_absent_tpu_backend()


def skip_absent_tpu_backend() -> None:
    """Do not load libtpu on a host with no TPU chips, unless JAX_PLATFORMS names platforms.

    JAX registers the TPU backend as 'fail quietly': on a CPU or GPU host it loads libtpu, which
    logs several lines about missing TPU metadata, then falls back. Checking for TPU chips on the
    PCI bus (what JAX itself does on TPU VMs) avoids loading it at all. Ahead-of-time compiles for a
    TPU topology (`jepa-jax compile`) load libtpu on their own and are not affected.
    """
    if os.environ.get("JAX_PLATFORMS"):
        return  # the user chose; JAX honours it
    from jax._src import hardware_utils, xla_bridge

    if hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0:
        return
    # JAX's private table of backends. The entry must stay (JAX derives the platforms it lowers
    # for from it); its factory is swapped for one that fails at once, which JAX accepts quietly
    # for this backend. If a JAX release changes the table, nothing is swapped and libtpu logs.
    factories = getattr(xla_bridge, "_backend_factories", None)
    registration = factories.get("tpu") if isinstance(factories, dict) else None
    if registration is None or not dataclasses.is_dataclass(registration):
        return

    def no_tpu_here():
        raise RuntimeError("no TPU chips on this host; jepa-jax did not load libtpu")

    factories["tpu"] = dataclasses.replace(registration, factory=no_tpu_here)


@contextlib.contextmanager
def native_stderr_quieted() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (not under `--verbose`).

    For imports of native libraries that log through their own C++ loggers at load time
    (TensorFlow). Python exceptions raised in the block still propagate and are printed after it.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
