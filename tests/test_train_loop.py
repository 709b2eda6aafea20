"""End to end: training reduces the loss, a stopped (SIGTERM) or killed (SIGKILL) run resumes
exactly, and the CLI's errors are one line."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, TINY_CONFIG, tiny_video_config
from helpers import cli, metrics_rows, read_losses, stderr_lines

from jepa_jax.train.loop import train


def test_loss_decreases_over_a_few_dozen_steps(tmp_path):
    config = tiny_video_config()
    config.total_steps = 40
    config.checkpoint_every = 40
    result = train(config, str(tmp_path))
    losses = read_losses(tmp_path)
    assert sorted(losses) == list(range(1, 41))
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(36, 41)) / 5
    assert last < 0.8 * first, (first, last)
    assert result["final_metrics"]["effective_rank"] > 1.0
    # The TensorBoard event file and the checkpoint are there.
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "tensorboard"))
    assert os.listdir(tmp_path / "checkpoints") == ["40"]


def test_killed_run_resumes_with_the_losses_of_an_uninterrupted_run(tmp_path):
    args = [
        "train",
        f"--config={TINY_CONFIG}",
        "--config.total_steps=10",
        "--config.checkpoint_every=3",
    ]
    full = cli(*args, f"--workdir={tmp_path / 'full'}")
    assert full.returncode == 0, full.stderr[-3000:]
    reference = read_losses(tmp_path / "full")
    assert sorted(reference) == list(range(1, 11))

    workdir = tmp_path / "killed"

    def start_and_signal_at(step, sig):
        proc = subprocess.Popen(
            [sys.executable, "-m", "jepa_jax", *args, f"--workdir={workdir}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in proc.stdout:
            if line.startswith(f"step {step:>2}/10"):
                proc.send_signal(sig)
                break
        rest = proc.stdout.read()
        proc.wait(timeout=120)
        return proc.returncode, rest

    # SIGTERM (a preemption notice) at step 2: the run stops at the next step boundary, saves a
    # checkpoint there, says so and exits cleanly.
    code, rest = start_and_signal_at(2, signal.SIGTERM)
    assert code == 0, rest
    stopped = [ln for ln in rest.splitlines() if ln.startswith("stopped by signal 15 after step")]
    assert stopped, rest
    saved_at = int(stopped[0].split("after step ")[1].split(";")[0])
    assert 2 <= saved_at < 10 and str(saved_at) in os.listdir(workdir / "checkpoints")

    # Resume it and SIGKILL it as soon as it reports step 7 (no chance to clean up; a checkpoint
    # save may be in flight).
    code, _ = start_and_signal_at(7, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert max(read_losses(workdir)) < 10

    resumed = cli(*args, f"--workdir={workdir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint at step" in resumed.stdout
    # Steps logged after the last checkpoint and before the kill are not in metrics.jsonl twice.
    steps = [row["step"] for row in metrics_rows(workdir)]
    assert steps == list(range(1, 11)), steps
    got = read_losses(workdir)
    assert sorted(got) == list(range(1, 11))
    for step in range(1, 11):
        assert got[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.optim.lrr=3", "unknown config key 'lrr' in --config.optim.lrr=3"),
        ("--config.batch_size=abc", "flag --config.batch_size=abc"),
        ("--config.batch_size=-8", "config.batch_size=-8 is invalid: expected an integer >= 1"),
        ("--config.mask.kind=tube", "mask.kind must be one of"),
        ("--config.optim.warmup_steps=9", "config.optim.warmup_steps=9 is invalid: expected at"),
        ("--config.nan_policy=ignore", "config.nan_policy='ignore' is invalid: expected one of"),
        # 2 heads of width 32 cannot be split 4 ways: named before anything is written.
        ("--config.mesh.tensor=4", "config.mesh.tensor=4 does not divide the 2 attention heads"),
    ],
)
def test_bad_config_key_or_value_is_a_one_line_error(tmp_path, override, message):
    out = cli("train", f"--config={TINY_CONFIG}", f"--workdir={tmp_path / 'w'}", override)
    assert out.returncode == 2
    lines = stderr_lines(out)
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("jepa-jax train: error: ") and message in lines[0]
    assert not (tmp_path / "w").exists()  # nothing written for a config that cannot run


def test_cli_usage_and_unknown_command():
    out = cli("--help")
    assert out.returncode == 0 and "train" in out.stdout
    out = cli("trian")
    assert out.returncode == 2 and "unknown command 'trian'" in out.stderr
