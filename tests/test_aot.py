"""Ahead-of-time compilation for TPU topologies (needs libtpu, from the test extra)."""

import subprocess
import sys

import pytest
from conftest import REPO, TINY_CONFIG

from jepa_jax.aot import GIB, CompileReport, parse_topology, torus_shape
from jepa_jax.errors import ConfigError
from jepa_jax.hardware import chip_for


def test_topology_names():
    assert torus_shape(64, 3) == (4, 4, 4)
    assert torus_shape(128, 3) == (4, 4, 8)
    assert torus_shape(256, 3) == (4, 8, 8)
    assert torus_shape(8, 2) == (2, 4)
    t = parse_topology("v5p-256")
    assert (t.libtpu_name, t.num_chips, t.chip_config, t.cloud_name) == (
        "v5:4x4x8",
        128,
        "megacore",
        "v5p-256",
    )
    assert parse_topology("v4-32").libtpu_name == "v4:2x2x4"
    assert parse_topology("v5e-16").libtpu_name == "v5e:4x4"
    assert parse_topology("v6e-8").libtpu_name == "v6e:2x4"
    assert parse_topology("v5p:4x4x12").num_chips == 192
    for bad in ("v7-8", "v5p-12", "v5e:2x2x2", "tpu"):
        with pytest.raises(ConfigError):
            parse_topology(bad)


def test_report_fit_arithmetic():
    kw = dict(
        topology=parse_topology("v5e-4"),
        num_slices=1,
        device_kind="TPU v5 lite",
        chip=chip_for("TPU v5 lite"),
        mesh={"data": 4},
        output_bytes=0,
        alias_bytes=0,
        code_bytes=0,
        flops_per_chip=1e12,
        xla_flops_per_chip=1e12,
        batch_size=8,
    )
    fits = CompileReport(argument_bytes=2 * GIB, temp_bytes=10 * GIB, **kw)
    over = CompileReport(argument_bytes=2 * GIB, temp_bytes=15 * GIB, **kw)
    assert fits.fits is True and over.fits is False  # v5e has 16 GiB
    assert "fits: NO" in over.lines()[-1]


@pytest.mark.slow
def test_compile_command_for_a_two_slice_topology():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jepa_jax",
            "compile",
            f"--config={TINY_CONFIG}",
            "--topology=v5e-4",
            "--num_slices=2",
            "--config.mesh.dcn_data=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "topology v5e-4 (v5e:2x2) x 2 slice(s): 8 chips" in text
    assert "mesh {'data': 8, 'fsdp': 1, 'tensor': 1}" in text
    assert "per chip total:" in text and "of 16 GiB HBM" in text
    assert "FLOPs per step:" in text and "fits: yes" in text


def test_slices_smaller_than_a_host_and_shapes_libtpu_refuses():
    from jepa_jax.aot import topology_devices

    # One chip, or two: a host of that shape (a 2x2x1 host bound would be refused).
    assert len(topology_devices(parse_topology("v5p:1x1x1"))) == 1
    assert len(topology_devices(parse_topology("v5e:2x1"))) == 2
    with pytest.raises(ConfigError, match=r"topology 'v5p:3x3x3' \(v5:3x3x3\) was refused") as e:
        topology_devices(parse_topology("v5p:3x3x3"))
    assert "\n" not in str(e.value)
