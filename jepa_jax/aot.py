"""Ahead-of-time compilation of the train step for a TPU topology, on any machine.

`libtpu` (the `tpu` extra) lets XLA compile for a TPU slice that is not there
(`jax.experimental.topologies`): the compiled step's memory analysis says whether a config fits
in each chip's HBM, and its cost analysis gives the FLOPs per step, before any TPU is rented.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import jax

from jepa_jax import config_lib
from jepa_jax.errors import ConfigError
from jepa_jax.hardware import Chip, chip_for, compiled_flops
from jepa_jax.train.flops import jepa_step_flops
from jepa_jax.train.setup import build_trainer

GIB = 1024**3

# Cloud name prefix -> (libtpu chip name, torus dims, chip config, devices counted per chip).
# v4 and v5p names count TensorCores (2 per chip, one "megacore" device); v5e/v6e count chips.
_FAMILIES = {
    "v4": ("v4", 3, "megacore", 2),
    "v5p": ("v5", 3, "megacore", 2),
    "v5e": ("v5e", 2, "default", 1),
    "v5litepod": ("v5e", 2, "default", 1),
    "v6e": ("v6e", 2, "default", 1),
}


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str  # as given, e.g. "v5p-128"
    family: str  # v4 | v5p | v5e | v5litepod | v6e
    libtpu_name: str  # e.g. "v5:4x4x4"
    chip_config: str
    shape: tuple[int, ...]  # chips along each torus axis

    @property
    def num_chips(self) -> int:
        return math.prod(self.shape)

    @property
    def cloud_name(self) -> str:
        """The accelerator type as Cloud TPU names it, e.g. v5p-128 (cores for v4/v5p)."""
        return f"{self.family}-{self.num_chips * _FAMILIES[self.family][3]}"


def torus_shape(num_chips: int, dims: int) -> tuple[int, ...]:
    """The standard slice shape for a power-of-two chip count: from one host (2x2 chips), double
    the smallest axis, the last one on ties (64 chips -> 4x4x4, 128 -> 4x4x8, 256 -> 4x8x8)."""
    if dims == 2 and num_chips == 1:
        return (1, 1)
    if num_chips < 4 or num_chips & (num_chips - 1):
        raise ConfigError(
            f"cannot infer a slice shape for {num_chips} chips: give a power of two >= 4 chips, or "
            "the shape itself, e.g. --topology=v5p:4x4x12"
        )
    shape = [2, 2] + [1] * (dims - 2)
    while math.prod(shape) < num_chips:
        smallest = min(shape)
        last = max(i for i, s in enumerate(shape) if s == smallest)
        shape[last] *= 2
    return tuple(shape)


def parse_topology(name: str) -> Topology:
    """`v5p-128`, `v4-32`, `v5e-16`, `v6e-8` (cloud names) or `v5p:4x4x8` (explicit chip shape)."""
    m = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)([-:])(\d+(?:x\d+)*)", name.strip().lower())
    if not m:
        raise ConfigError(
            f"unknown TPU topology {name!r}; expected e.g. v5p-128, v4-32, v5e-16, v6e-8 or "
            f"v5p:4x4x8 (families: {sorted(_FAMILIES)})"
        )
    family, sep, size = m.groups()
    chip_name, dims, chip_config, per_chip = _FAMILIES[family]
    if sep == ":":
        shape = tuple(int(s) for s in size.split("x"))
        if len(shape) != dims:
            raise ConfigError(f"topology {name!r}: {family} slices are {dims}-D, got {shape}")
    else:
        if "x" in size or int(size) % per_chip:
            raise ConfigError(
                f"topology {name!r}: {family}-N counts cores; N must be a multiple of {per_chip}"
            )
        shape = torus_shape(int(size) // per_chip, dims)
    libtpu_name = f"{chip_name}:{'x'.join(map(str, shape))}"
    return Topology(name, family, libtpu_name, chip_config, shape)


def topology_devices(topology: Topology, num_slices: int = 1) -> list[Any]:
    """Abstract TPU devices of `num_slices` slices of `topology` (needs libtpu, no TPU)."""
    try:
        from jax.experimental import topologies
    except ImportError as e:  # pragma: no cover - part of jax
        raise ConfigError(f"this JAX has no topologies module: {e}") from e
    # A host holds up to 2x2x1 chips; a slice smaller than that along an axis (v5p:1x1x1, one
    # chip) is one host of that shape (libtpu refuses host bounds that do not divide the slice).
    shape_3d = tuple(topology.shape) + (1,) * (3 - len(topology.shape))  # v5e / v6e are 2-D
    host = tuple(min(s, b) for s, b in zip(shape_3d, (2, 2, 1), strict=True))
    kwargs: dict[str, Any] = dict(chip_config_name=topology.chip_config, chips_per_host_bounds=host)
    if len(topology.shape) == 3 and min(topology.shape) >= 4:
        kwargs["wrap"] = (True, True, True)  # full 3-D torus from 4x4x4 up
    if num_slices > 1:
        kwargs["num_slices"] = num_slices
    try:
        desc = topologies.get_topology_desc(topology.libtpu_name, "tpu", **kwargs)
    except Exception as e:
        text = str(e)
        if "TPU" in text and ("not installed" in text or "libtpu" in text.lower()):
            raise ConfigError(
                "compiling for a TPU topology needs libtpu: pip install 'jepa-jax[tpu]'"
            ) from e
        if "INVALID_ARGUMENT" in text:  # libtpu refused the shape: say which, in one line
            raise ConfigError(
                f"topology {topology.name!r} ({topology.libtpu_name}) was refused by libtpu: "
                f"{text.splitlines()[0]}"
            ) from e
        raise
    return list(desc.devices)


@dataclasses.dataclass(frozen=True)
class CompileReport:
    """Per-chip memory and FLOPs of the compiled train step on a topology."""

    topology: Topology
    num_slices: int
    device_kind: str
    chip: Chip | None
    mesh: dict[str, int]
    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    alias_bytes: int
    code_bytes: int
    flops_per_chip: float  # model FLOPs (train/flops.py) / chips
    xla_flops_per_chip: float  # XLA's cost analysis (a scanned layer loop is counted once)
    batch_size: int

    scanned: bool = False

    @property
    def total_bytes(self) -> int:
        """Peak per-chip footprint: live arguments, outputs not aliased to them, temporaries."""
        return (
            self.argument_bytes
            + self.output_bytes
            - self.alias_bytes
            + self.temp_bytes
            + self.code_bytes
        )

    @property
    def fits(self) -> bool | None:
        return None if self.chip is None else self.total_bytes <= self.chip.hbm_gib * GIB

    def lines(self) -> list[str]:
        n = self.topology.num_chips * self.num_slices
        g = lambda b: f"{b / GIB:.2f} GiB" if b >= 0.1 * GIB else f"{b / 1024**2:.1f} MiB"
        hbm = f"{self.chip.hbm_gib:.0f} GiB" if self.chip else "unknown"
        out = [
            f"topology {self.topology.name} ({self.topology.libtpu_name}) x {self.num_slices} "
            f"slice(s): {n} chips of {self.device_kind}; mesh {self.mesh}",
            f"global batch {self.batch_size} ({self.batch_size / n:g} per chip)",
            f"per chip: arguments {g(self.argument_bytes)}, outputs {g(self.output_bytes)} "
            f"(aliased {g(self.alias_bytes)}), temporaries {g(self.temp_bytes)}, code "
            f"{g(self.code_bytes)}",
            f"per chip total: {g(self.total_bytes)} of {hbm} HBM"
            + (
                f" ({100 * self.total_bytes / (self.chip.hbm_gib * GIB):.0f}%)" if self.chip else ""
            ),
            f"FLOPs per step: {self.flops_per_chip / 1e12:.4g} TFLOP per chip, "
            f"{self.flops_per_chip * n / 1e12:.4g} TFLOP in all (model FLOPs; XLA's cost "
            f"analysis: {self.xla_flops_per_chip / 1e12:.4g} TFLOP per chip"
            + (", which counts the scanned layer loop once)" if self.scanned else ")"),
        ]
        if self.chip:
            out.append(
                f"step time at 100% of the {self.chip.peak_bf16_tflops:.0f} TFLOP/s bf16 peak: "
                f">= {self.flops_per_chip / (self.chip.peak_bf16_tflops * 1e12):.3g} s"
            )
        out.append(
            "fits: "
            + {True: "yes", False: "NO (exceeds HBM)", None: "unknown (no HBM figure)"}[self.fits]
        )
        return out


def compile_for_topology(
    config: Mapping[str, Any], topology: str, num_slices: int = 1
) -> CompileReport:
    """Compile `config`'s train step for a TPU topology and report its per-chip cost."""
    topo = parse_topology(topology)
    devices = topology_devices(topo, num_slices)
    config_lib.validate_config(config, len(devices), process_count=1)
    trainer = build_trainer(config, devices=devices)
    with jax.set_mesh(trainer.mesh):
        state = trainer.abstract_state()
        shardings = jax.tree.map(lambda a: a.sharding, state)
        batch = trainer.abstract_batch()
        step = trainer.make_step(shardings, batch)
        compiled = step.lower(state, batch).compile()
    mem = compiled.memory_analysis()
    return CompileReport(
        topology=topo,
        num_slices=num_slices,
        device_kind=devices[0].device_kind,
        chip=chip_for(devices[0].device_kind),
        mesh=dict(trainer.mesh.shape),
        argument_bytes=int(mem.argument_size_in_bytes),
        output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes),
        alias_bytes=int(mem.alias_size_in_bytes),
        code_bytes=int(mem.generated_code_size_in_bytes),
        flops_per_chip=jepa_step_flops(trainer) / len(devices),
        xla_flops_per_chip=compiled_flops(compiled),
        batch_size=int(config.batch_size),
        scanned=bool(config.model.scan_layers),
    )
