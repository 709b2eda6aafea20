"""Launch scripts print the exact commands they would run (--dry-run), and the Colab notebook's
code runs."""

import json
import os
import subprocess

import pytest
from conftest import REPO

LAUNCH = os.path.join(REPO, "launch")


def sh(*args, env=None):
    return subprocess.run(
        ["bash", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_tpu_vm_dry_run_prints_gcloud_commands():
    base = [os.path.join(LAUNCH, "tpu_vm.sh"), "--dry-run", "--name", "jj", "--zone", "us-east5-a"]
    out = sh(*base, "create", "--accelerator", "v5p-128", "--version", "v2-alpha-tpuv5", "--spot")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "+ gcloud compute tpus tpu-vm create jj --zone=us-east5-a --accelerator-type=v5p-128 "
        "--version=v2-alpha-tpuv5 --spot"
    )
    out = sh(
        *base,
        "run",
        "--",
        "train",
        "--config=configs/vjepa_vitl16.py:shards=gs://b/k",
        "--workdir=gs://b/run",
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("+ gcloud compute tpus tpu-vm ssh jj --zone=us-east5-a --worker=all")
    for part in ("run_on_host.sh\\ train", "--workdir=gs://b/run\\ --distributed", "nohup"):
        assert part in line
    copy = sh(*base, "copy")
    assert copy.returncode == 0 and "git -C" in copy.stdout and "tpu-vm scp" in copy.stdout
    assert "tpu-vm delete jj --zone=us-east5-a --quiet" in sh(*base, "delete").stdout
    assert "--worker=0" in sh(*base, "tail").stdout


def test_tpu_vm_bad_usage_is_a_one_line_error():
    out = sh(os.path.join(LAUNCH, "tpu_vm.sh"), "--dry-run", "create", "--name", "x", "--zone", "z")
    assert out.returncode == 2 and out.stderr.strip() == (
        "tpu_vm.sh: error: create needs --accelerator (e.g. v5p-128)"
    )
    out = sh(os.path.join(LAUNCH, "tpu_vm.sh"), "--dry-run", "launch", "--name", "x", "--zone", "z")
    assert out.returncode == 2 and "unknown argument 'launch'" in out.stderr


def test_gpu_slurm_dry_run_derives_the_coordinator_from_the_job(tmp_path):
    env = {
        "SLURM_JOB_NODELIST": "gpu-a,gpu-b,gpu-c",
        "SLURM_NTASKS": "3",
        "JEPA_JAX_PORT": "4321",
        "PATH": "/usr/bin:/bin",
    }  # no scontrol: plain node lists
    out = sh(
        os.path.join(LAUNCH, "gpu_slurm.sh"),
        "--dry-run",
        "train",
        "--config=configs/default.py",
        f"--workdir={tmp_path}",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("+ srun --ntasks=3 --ntasks-per-node=1 bash -c")
    assert (
        "--coordinator_address=gpu-a:4321\\ --num_processes=3\\ --process_id=\\$SLURM_PROCID"
        in line
    )
    outside = sh(
        os.path.join(LAUNCH, "gpu_slurm.sh"),
        "--dry-run",
        "train",
        env={"SLURM_JOB_NODELIST": "", "SLURM_NTASKS": ""},
    )
    assert outside.returncode == 2 and "not inside a SLURM allocation" in outside.stderr


def test_colab_notebook_trains_with_the_smoke_config(tmp_path):
    nb = json.load(open(os.path.join(LAUNCH, "colab.ipynb")))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        compile(cell, "<colab cell>", "exec")
    params, install, train_cell, plot = cells
    assert "pip" in install and "matplotlib" in plot
    scope: dict = {}
    exec(params, scope)
    scope.update(CHECKOUT=REPO, CONFIG_ARG="runlocal", WORKDIR=str(tmp_path))
    exec(train_cell, scope)  # the install cell is pip and git, skipped here
    # The default job (here its :runlocal variant) ends with the probe and writes its results.
    results = json.loads((tmp_path / "probe_results.json").read_text())
    assert results == {k: v for k, v in scope["result"]["probe"].items()}
    assert results["task"] == "color"
    assert 0 <= results["trained"] <= 1 and 0 <= results["random_init"] <= 1
    # Every label of the video set is probed; the headline is the configured task's row.
    assert set(results["tasks"]) == {"shape", "color", "direction", "position_cell"}
    assert results["tasks"]["color"]["trained"] == results["trained"]
    assert results["tasks"]["direction"]["chance"] == 1 / 8
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert {"loss", "feature_std", "effective_rank"} <= set(records[-1])


@pytest.mark.parametrize("script", ["tpu_vm.sh", "gpu_slurm.sh", "run_on_host.sh"])
def test_scripts_are_valid_bash(script):
    assert subprocess.run(["bash", "-n", os.path.join(LAUNCH, script)]).returncode == 0
