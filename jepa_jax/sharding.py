"""Device mesh and logical-axis sharding.

The mesh has axes (data, fsdp, tensor). Parameters and activations are annotated with logical
axis names in the models; the config's `logical_axis_rules` map those names onto mesh axes, so
the same model code runs data-parallel on a laptop, FSDP on a pod or tensor-parallel on a GPU
node by changing only `config.mesh` and the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jepa_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. Params: `embed` is sharded over fsdp (ZeRO-3 style), MLP hidden and
# heads over tensor (Megatron style). Activations: batch over data+fsdp; the residual stream is
# replicated over tensor, the MLP hidden and heads are split over it.
DEFAULT_LOGICAL_AXIS_RULES = (
    ("act_batch", ("data", "fsdp")),
    ("act_tokens", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("qkv", None),
    ("patch", None),
    ("embed_in", None),
    ("embed_fusion", None),
    ("embed_out", None),
    ("mask_tokens", None),
    ("layers", None),
)

BATCH_AXES = ("data", "fsdp")


def dcn_shape(mesh_config: Mapping[str, int]) -> tuple[int, int, int]:
    """(data, fsdp, tensor) sizes across slices/hosts (the DCN part of the mesh)."""
    sizes = tuple(int(mesh_config.get(f"dcn_{a}", 1)) for a in MESH_AXES)
    if any(s < 1 for s in sizes):
        raise ConfigError(
            f"config.mesh dcn_* sizes must be >= 1, got {dict(zip(MESH_AXES, sizes, strict=True))}"
        )
    return sizes


def mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
    """Total (data, fsdp, tensor) sizes: ICI sizes (one -1 takes the remaining devices of a slice)
    times the DCN sizes."""
    dcn = dcn_shape(mesh_config)
    n_dcn = math.prod(dcn)
    if num_devices % n_dcn:
        raise ConfigError(
            f"config.mesh dcn sizes {dcn} ({n_dcn} slices) do not divide {num_devices} devices"
        )
    ici = ici_shape(mesh_config, num_devices // n_dcn)
    return tuple(i * d for i, d in zip(ici, dcn, strict=True))


def ici_shape(mesh_config: Mapping[str, int], devices_per_slice: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) sizes within one slice, a single -1 taking the remaining devices."""
    sizes = [int(mesh_config[a]) for a in MESH_AXES]
    fixed = math.prod(s for s in sizes if s != -1)
    shown = {a: mesh_config[a] for a in MESH_AXES}
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"config.mesh={shown} is invalid: sizes >= 1, at most one -1")
    if -1 in sizes:
        if devices_per_slice % fixed:
            raise ConfigError(
                f"config.mesh={shown} does not divide {devices_per_slice} devices: the fixed axes "
                f"use {fixed}"
            )
        sizes[sizes.index(-1)] = devices_per_slice // fixed
    if math.prod(sizes) != devices_per_slice:
        raise ConfigError(
            f"config.mesh={shown} has {math.prod(sizes)} devices but {devices_per_slice} are "
            "available per slice; use -1 on one axis to fill"
        )
    return tuple(sizes)


def create_mesh(mesh_config: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all), with Auto axis types.

    Auto (not Explicit) because sharding is propagated from the logical-axis annotations by the
    compiler, which is how Flax linen's logical partitioning works. With dcn_* > 1 the mesh is
    hybrid: the DCN (slow, cross-slice) factor of each axis is outermost, so e.g. data-parallel
    all-reduces cross slices once while FSDP gathers stay on ICI.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_config, len(devices))
    dcn = dcn_shape(mesh_config)
    if math.prod(dcn) == 1:
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)
    ici = tuple(s // d for s, d in zip(shape, dcn, strict=True))
    # Devices with a slice_index (multi-slice TPU) group by slice; otherwise each process is a
    # granule (GPU/CPU hosts).
    by_process = not hasattr(devices[0], "slice_index")
    array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=by_process)
    return Mesh(array, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def logical_rules(config_rules: Sequence[Sequence[Any]]) -> tuple[tuple[str, Any], ...]:
    """Normalise the config's rules (lists from YAML/CLI) into flax's tuple-of-pairs form."""
    out = []
    for rule in config_rules:
        name, axes = rule
        if isinstance(axes, list):
            axes = tuple(axes)
        out.append((str(name), axes))
    return tuple(out)


# What a logical axis is in the models, for error messages.
LOGICAL_MEANING = {
    "heads": "attention heads (model.*.num_heads)",
    "mlp": "MLP hidden units (model.*.mlp_dim / mlp_ratio)",
    "embed": "embedding width (model.*.width)",
}


def check_divisible(boxed_tree: Any, mesh: Mesh, rules) -> None:
    """ConfigError naming the first parameter whose sharded dimension the mesh does not divide.

    jit would otherwise fail with an IndivisibleError traceback (e.g. 3 heads on tensor=2).
    Parameters are checked before the optimizer state that mirrors them.
    """
    logical = nn.get_partition_spec(boxed_tree)
    shapes = nn.meta.unbox(boxed_tree)
    flat = jax.tree_util.tree_flatten_with_path(
        logical, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )[0]
    shape_of = dict(jax.tree_util.tree_flatten_with_path(shapes)[0])
    flat.sort(key=lambda kv: getattr(kv[0][0], "key", None) != "params")
    for path, spec in flat:
        if not isinstance(spec, PartitionSpec) or path not in shape_of:
            continue
        shape = shape_of[path].shape
        mesh_spec = nn.logical_to_mesh_axes(tuple(spec), rules)
        for dim, (size, name, axes) in enumerate(zip(shape, spec, mesh_spec, strict=False)):
            axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
            split = math.prod(mesh.shape[a] for a in axes)
            if split > 1 and size % split:
                where = "/".join(str(getattr(k, "key", k)) for k in path)
                sizes = ", ".join(f"mesh.{a}={mesh.shape[a]}" for a in axes)
                raise ConfigError(
                    f"config.{sizes} does not divide the {size} "
                    f"{LOGICAL_MEANING.get(name, repr(name))} of parameter {where} (shape "
                    f"{tuple(shape)}, dim {dim}); choose mesh sizes that divide it, or a model "
                    f"whose sizes they divide"
                )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dim split over data x fsdp; everything else replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def tree_shardings(boxed_tree: Any, mesh: Mesh, rules) -> Any:
    """NamedShardings for a tree whose leaves may be boxed with logical axis names.

    Unboxed leaves (e.g. the step counter) are replicated.
    """
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def make_global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Assemble the global, sharded batch from this process's numpy slice of it.

    Every leaf's leading axis is the batch; process p holds rows [p*L, (p+1)*L) of the global
    batch of size L * process_count.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def bytes_per_device(tree: Any) -> dict[int, int]:
    """Bytes of `tree`'s arrays held by each device id (addressable shards only)."""
    out: dict[int, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            out[shard.device.id] = out.get(shard.device.id, 0) + shard.data.nbytes
    return out
