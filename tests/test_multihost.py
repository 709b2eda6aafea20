"""Two real JAX processes on this machine (gloo collectives over loopback) train exactly like
one process with the same global batch."""

import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO, TINY_CONFIG
from helpers import read_losses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    args = [
        sys.executable,
        "-m",
        "jepa_jax",
        "train",
        f"--config={TINY_CONFIG}",
        "--config.total_steps=4",
        "--config.checkpoint_every=4",
    ]
    single = subprocess.run(
        args + [f"--workdir={tmp_path / 'one'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, JAX_NUM_CPU_DEVICES="8"),
    )
    assert single.returncode == 0, single.stderr[-3000:]

    port = free_port()
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4")  # 2 processes x 4 devices = the same 8
    procs = [
        subprocess.Popen(
            args
            + [
                f"--workdir={tmp_path / 'two'}",
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "2 process(es)" in outs[0][0]
    # Only process 0 prints and writes metrics. Gloo (JAX's CPU collectives) announces each
    # rank's connections from several threads at once, so its lines can interleave and split
    # ("[Gloo] Rank " ... "7 is connected to 7 peer ranks..."): drop them by content.
    own = [
        ln
        for ln in outs[1][0].splitlines()
        if ln.strip() and "[Gloo]" not in ln and "peer ranks" not in ln
    ]
    assert own == [], outs[1][0]
    one, two = read_losses(tmp_path / "one"), read_losses(tmp_path / "two")
    assert sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5)
    # Both processes took part in the checkpoint: each wrote its data-iterator state.
    iter_dir = tmp_path / "two" / "checkpoints" / "4" / "data_iter"
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(os.listdir(iter_dir))
