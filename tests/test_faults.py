"""Faults a run must survive, or end with one clear line: foreign stderr noise, a diverging loss,
re-meshing a checkpoint (tensor parallel, another device count), a full disk during a save, bad
input files and signals during start-up."""

import os
import resource
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import REPO, TINY_CONFIG, tiny_video_config
from helpers import cli, metrics_rows, read_losses, stderr_lines
from media import write_index_video

from jepa_jax.checkpoint import Checkpointer
from jepa_jax.errors import RunError
from jepa_jax.train.reporting import Reporter
from jepa_jax.train.runner import MAX_CONSECUTIVE_SKIPS, count_nonfinite_arrays, run_steps
from jepa_jax.train.setup import build_trainer

TINY = f"--config={TINY_CONFIG}"
# A process environment as a user's shell has it: no JAX_PLATFORMS (so JAX would probe for TPUs
# through libtpu, which `make test` installs), TensorFlow's default logging, oneDNN forced on.
USER_SHELL = {"JAX_PLATFORMS": None, "TF_CPP_MIN_LOG_LEVEL": None, "TF_ENABLE_ONEDNN_OPTS": "1"}


def only_error_line(proc, command="train"):
    """The single stderr line of a failed command (fails the test if there are more)."""
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr[-4000:]
    assert lines[0].startswith(f"jepa-jax {command}: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------
# 1. Start-up without foreign noise.
# ------------------------------------------------------------------------------------------------


def test_a_real_run_writes_nothing_foreign_to_stderr(tmp_path):
    ok = cli(
        "train", TINY, f"--workdir={tmp_path / 'ok'}", "--config.total_steps=2", env=USER_SHELL
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert stderr_lines(ok) == [], ok.stderr
    bad = cli("train", TINY, f"--workdir={tmp_path / 'bad'}", "--config.seed=x", env=USER_SHELL)
    assert bad.returncode == 2
    assert "flag --config.seed=x" in only_error_line(bad)
    # TensorBoard's scalars were still written (without TensorFlow).
    assert any("tfevents" in n for n in os.listdir(tmp_path / "ok" / "tensorboard"))


def test_each_command_help_lists_its_own_flags():
    train = cli("train", "--help")
    assert train.returncode == 0 and "--workdir" in train.stdout and "--config" in train.stdout
    assert "--logtostderr" not in train.stdout  # absl's own flags stay under --helpfull
    evaluate = cli("eval", "--help")
    assert evaluate.returncode == 0 and "--checkpoint" in evaluate.stdout
    assert "--coordinator_address" not in evaluate.stdout  # train's flag, not eval's


# ------------------------------------------------------------------------------------------------
# 2. Non-finite guard.
# ------------------------------------------------------------------------------------------------


def test_divergence_stops_with_one_line_and_never_poisons_a_checkpoint(tmp_path):
    workdir = tmp_path / "w"
    # The collapse guard off: a run blown up by its lr also collapses (rank -> 1) before it goes
    # NaN, and its warning is not what this test is about.
    args = [
        "train",
        TINY,
        f"--workdir={workdir}",
        "--config.checkpoint_every=4",
        "--config.collapse_rank_fraction=0",
    ]
    cli(*args, "--config.total_steps=4", check=True)  # a healthy start: checkpoint 4
    # The same run goes on with a learning rate that blows it up within a few steps.
    out = cli(*args, "--config.total_steps=12", "--config.optim.lr=1e6")
    assert out.returncode == 1, out.stderr[-3000:]
    line = only_error_line(out)
    assert "the loss or gradient is not finite at step" in line, line
    assert "Last good checkpoint: step 4" in line, line
    # Every checkpoint left behind restores to finite values.
    trainer = build_trainer(tiny_video_config(), devices=jax.devices()[:1])
    ckpt = Checkpointer(str(workdir), 4, 3)
    assert ckpt.manager.all_steps() == [4]
    assert count_nonfinite_arrays(ckpt.restore(4, trainer.abstract_state(), None)) == 0
    ckpt.close()
    # The same workdir resumes with a sane learning rate and finishes.
    resumed = cli(*args, "--config.total_steps=12", check=True)
    assert "resumed from checkpoint at step 4" in resumed.stdout
    assert max(read_losses(workdir)) == 12


def test_the_jitted_step_does_not_apply_a_non_finite_update():
    config = tiny_video_config()
    config.optim.update(lr=float("inf"), start_lr=float("inf"))
    trainer = build_trainer(config, devices=jax.devices()[:1])
    batch = next(iter(trainer.train_dataset()))
    with jax.set_mesh(trainer.mesh):
        state, shardings = trainer.create_state()
        before = jax.device_get(state)
        from jepa_jax.sharding import make_global_batch

        batch = make_global_batch(batch, trainer.mesh)
        state, metrics = trainer.make_step(shardings, batch)(state, batch)
    after = jax.device_get(state)
    assert float(metrics["finite"]) == 0.0
    assert int(after["step"]) == 1  # the schedules move on
    for key in ("params", "target_params", "opt_state"):
        jax.tree.map(np.testing.assert_array_equal, after[key], before[key])


class _ScriptedSteps:
    """An `advance` whose steps are finite except those listed: the runner's policy alone."""

    def __init__(self, bad_steps):
        self.bad_steps = set(bad_steps)

    def __call__(self, state):
        step = int(state["step"]) + 1
        finite = step not in self.bad_steps
        metrics = {
            "loss": jnp.float32(1.0 if finite else np.nan),
            "grad_norm": jnp.float32(1.0 if finite else np.inf),
            "finite": jnp.float32(finite),
            "lr": jnp.float32(0.1),
            "ema_momentum": jnp.float32(0.99),
            "feature_stats": {
                "count": jnp.float32(4),
                "sum": jnp.zeros(2),
                "sq_sum": jnp.ones(2),
                "gram": jnp.eye(2),
            },
        }
        return {"w": state["w"] + 1.0, "step": state["step"] + 1}, metrics


def run_scripted(workdir, bad_steps, policy, total=30):
    ckpt = Checkpointer(str(workdir), 5, 3, async_save=False)
    reporter = Reporter(str(workdir), total, 1, True)
    state = {"w": jnp.zeros(()), "step": jnp.zeros((), jnp.int32)}
    try:
        config = ml_collections.ConfigDict(dict(total_steps=total, log_every=1, nan_policy=policy))
        return run_steps(config, state, _ScriptedSteps(bad_steps), 0, ckpt, reporter)
    finally:
        ckpt.abort()
        reporter.close()


def test_nan_policies(tmp_path):
    # stop: the first bad step ends the run, naming it and the last checkpoint (step 5).
    with pytest.raises(RunError, match=r"not finite at step 7 .* Last good checkpoint: step 5"):
        run_scripted(tmp_path / "stop", [7], "stop")
    # skip_step: isolated bad steps are skipped and counted; the run finishes.
    outcome = run_scripted(tmp_path / "skip", [7, 8, 20], "skip_step")
    assert outcome.skipped_steps == 3 and int(outcome.state["step"]) == 30
    assert metrics_rows(tmp_path / "skip")[-1]["skipped_steps"] == 3
    # ... but a run whose every step is bad stops after MAX_CONSECUTIVE_SKIPS in a row.
    stuck = range(12, 31)
    last = 12 + MAX_CONSECUTIVE_SKIPS - 1
    with pytest.raises(RunError, match=rf"at step {last} \({MAX_CONSECUTIVE_SKIPS} steps in a row"):
        run_scripted(tmp_path / "stuck", stuck, "skip_step")


# ------------------------------------------------------------------------------------------------
# 3. Restore onto another mesh: tensor parallel, another device count.
# ------------------------------------------------------------------------------------------------


def stop_after(args, step, env=None):
    """Run the CLI until it logs `step`, then SIGTERM it (it checkpoints the step it is on)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jepa_jax", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **(env or {})),
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"step {step}/"):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return "".join(seen) + out


def test_a_checkpoint_restores_onto_a_tensor_parallel_mesh_and_fewer_devices(tmp_path):
    # The same schedule (total_steps) throughout; each segment is stopped by a signal.
    args = ["train", TINY, "--config.total_steps=9", "--config.checkpoint_every=3"]
    cli(*args, f"--workdir={tmp_path / 'ref'}", check=True)
    workdir = f"--workdir={tmp_path / 'remesh'}"
    # Data-parallel on 8 devices, then (data 2, fsdp 2, tensor 2), then data-parallel on 4.
    stop_after([*args, workdir], 2)
    tp = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
    out = stop_after([*args, workdir, *tp], 5)
    assert "resumed from checkpoint at step" in out
    assert "mesh {'data': 2, 'fsdp': 2, 'tensor': 2}" in out
    out = cli(*args, workdir, env={"JAX_NUM_CPU_DEVICES": "4"}, check=True)
    assert "resumed from checkpoint at step" in out.stdout and "4 cpu device(s)" in out.stdout
    want, got = read_losses(tmp_path / "ref"), read_losses(tmp_path / "remesh")
    assert sorted(got) == sorted(want) == list(range(1, 10))
    # Another mesh sums in another order: float32 round-off (~1e-7 relative per reduction)
    # grows through a few Adam steps, far below the change a wrong restore makes (a fresh
    # init, a lost optimizer state or misplaced shards move the loss by > 1e-2).
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# 4. A save that fails (disk full) is found at once and reported in one line.
# ------------------------------------------------------------------------------------------------


def _limit_file_size(max_bytes):
    """preexec_fn: writes past `max_bytes` fail with EFBIG, as on a full disk (no signal)."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def test_a_failed_save_is_one_line_and_leaves_only_committed_checkpoints(tmp_path):
    workdir = tmp_path / "w"
    args = ["train", TINY, f"--workdir={workdir}", "--config.checkpoint_every=4"]
    cli(*args, "--config.total_steps=4", check=True)  # a committed checkpoint at step 4
    # The tiny model's checkpoint files are ~170 kB; config.json and the metrics are < 30 kB.
    # No compilation cache: JAX would warn (rightly) that it cannot write its entries either.
    no_cache = {"JAX_COMPILATION_CACHE_DIR": None, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    out = cli(*args, "--config.total_steps=12", preexec_fn=_limit_file_size(60_000), env=no_cache)
    assert out.returncode == 1, out.stderr[-3000:]
    line = only_error_line(out)
    assert "saving the checkpoint of step 8" in line and "File too large" in line, line
    assert "free there); last committed checkpoint: step 4" in line, line
    # Nothing half-written: the failed save's temporary directory is gone.
    assert os.listdir(workdir / "checkpoints") == ["4"]
    resumed = cli(*args, "--config.total_steps=12", check=True)
    assert "resumed from checkpoint at step 4" in resumed.stdout
    assert [r["step"] for r in metrics_rows(workdir)] == list(range(1, 13))


# ------------------------------------------------------------------------------------------------
# 5. One line, no traceback: bad config files, an empty workdir, unreadable inputs in worker
#    processes, a stop signal during start-up.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, message",
    [
        ("def get_config(:\n", "line 1: invalid syntax"),
        ("def get_config(arg=None):\n    raise ValueError('boom')\n", "ValueError: boom"),
    ],
)
def test_a_broken_config_file_is_one_line(tmp_path, source, message):
    path = tmp_path / "broken.py"
    path.write_text(source)
    out = cli("train", f"--config={path}", f"--workdir={tmp_path / 'w'}")
    assert out.returncode == 2
    assert message in only_error_line(out)
    assert not (tmp_path / "w").exists()


def test_an_empty_workdir_is_one_line():
    out = cli("train", TINY, "--workdir=")
    assert out.returncode == 2
    assert "--workdir='' is empty: expected a directory path" in only_error_line(out)


def test_an_override_without_the_config_file_is_named(tmp_path):
    # train needs --config: absl would call the override an unknown flag.
    out = cli("train", f"--workdir={tmp_path / 'w'}", "--config.optim.lr=3")
    assert out.returncode == 2
    assert only_error_line(out).startswith(
        "jepa-jax train: error: --config.optim.lr=3 overrides a field of --config, which is not "
        "given: pass the config file too"
    )


def test_unreadable_videos_in_worker_processes_end_in_one_line(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_index_video(str(folder / "good.mp4"), 40)
    for i in range(12):
        (folder / f"bad{i}.mp4").write_text("not a video")
    out = cli(
        "train",
        TINY,
        f"--workdir={tmp_path / 'w'}",
        "--config.data.name=video_files",
        f"--config.data.path={folder}",
        "--config.data.num_workers=2",
    )
    assert out.returncode == 2
    # Each unreadable file may be logged as a warning as it is met; then one error, no traceback.
    lines = [ln for ln in stderr_lines(out) if "skipping unreadable input" not in ln]
    assert len(lines) == 1 and "more than config.data.max_bad_fraction" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_sigterm_during_start_up_exits_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "jepa_jax", "train", TINY, f"--workdir={tmp_path / 'w'}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # set-up under way: the state is being created, then compiled
        if line.startswith("mask[0]"):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # Before the steps: one line, nothing to save. If the signal lands while the first step
    # compiles, the runner holds it: that step finishes and is checkpointed.
    lines = [ln for ln in err.splitlines() if ln.strip()]
    before_steps = len(lines) == 1 and "stopped by signal 15 outside the training steps" in lines[0]
    at_first_step = not lines and "stopped by signal 15 after step 1; checkpoint saved" in out
    assert before_steps or at_first_step, (out, err)


def test_orbax_failure_filter_drops_asyncio_reports_of_orbax_writes():
    # asyncio's "Future exception was never retrieved" after a failed save names only the
    # exception's repr; the traceback shows it came from orbax, and the save failure has already
    # been reported as one line.
    import logging
    import sys

    from jepa_jax.checkpoint import _OrbaxFailureFilter

    source = "def write():\n    raise FileNotFoundError(2, 'gone')\n"
    code = compile(source, "orbax/path.py", "exec")
    namespace = {}
    exec(code, namespace)
    try:
        namespace["write"]()
    except FileNotFoundError:
        orbax_exc = sys.exc_info()
    try:
        raise FileNotFoundError(2, "elsewhere")
    except FileNotFoundError:
        other_exc = sys.exc_info()

    def record(exc_info, msg="Future exception was never retrieved", name="asyncio"):
        return logging.LogRecord(name, logging.ERROR, "base_events.py", 1, msg, None, exc_info)

    keep = _OrbaxFailureFilter().filter
    assert not keep(record(orbax_exc))
    assert keep(record(other_exc))  # someone else's failure stays visible
    assert not keep(record(None, msg="Task exception: orbax write failed"))
    assert keep(record(orbax_exc, name="jepa_jax"))  # only asyncio's reports are dropped


def test_unawaited_serialization_coroutines_of_a_failed_save_are_quiet():
    # Under load, jax's serialization coroutines of the aborted save are collected unawaited at
    # exit and Python warns about each after the one-line error; other coroutines still warn.
    import warnings

    from jepa_jax.checkpoint import _quiet_orbax_failure_logs

    with warnings.catch_warnings(record=True) as caught:
        _quiet_orbax_failure_logs()
        warnings.warn_explicit(
            "coroutine 'async_serialize_from_host.<locals>.write_fragment' was never awaited",
            RuntimeWarning,
            "sys",
            1,
        )
        warnings.warn_explicit("coroutine 'mine' was never awaited", RuntimeWarning, "sys", 1)
    assert [str(w.message) for w in caught] == ["coroutine 'mine' was never awaited"]
