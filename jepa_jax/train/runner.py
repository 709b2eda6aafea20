"""The run every training method shares: `run(...)` around the step loop `run_steps(...)`.

A method (JEPA, world model) supplies its trainer (mesh, abstract/created state, progress unit)
and `advance(state) -> (state, metrics)`, one jitted step with its data; the runner owns what
happens around it: the run directory (config.json, checkpoints, metrics), the progress line,
logging, stop signals, and the faults that must not cost a run:
- non-finite steps: the step leaves its state untouched (train.nonfinite) and reports "finite";
  the runner reads that flag for every step (one step behind, so the device is never idle, and
  before every save), then stops with one line (`config.nan_policy="stop"`) or counts the
  skipped step ("skip_step", stopping after MAX_CONSECUTIVE_SKIPS in a row). A checkpoint is
  saved only after its step's flag was read, so no checkpoint holds a diverged state.
- collapse: the effective rank of the target features is watched at logged steps
  (`CollapseGuard`): a warning, a "collapse" metric, and optionally a stop.
- failed saves (disk full, permissions): checked at every step, reported as one line naming the
  step, the error, the free space and the last committed checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jepa_jax import rundir
from jepa_jax.checkpoint import Checkpointer
from jepa_jax.config_lib import NAN_POLICIES
from jepa_jax.errors import RunError
from jepa_jax.signals import StopRequest
from jepa_jax.train.monitors import monitors_from_stats
from jepa_jax.train.reporting import Reporter, format_duration

# With nan_policy="skip_step", this many non-finite steps in a row stop the run anyway: the
# optimizer state is not moving, so more steps only burn compute.
MAX_CONSECUTIVE_SKIPS = 10


def host_metrics(metrics: dict) -> dict[str, float]:
    """Fetch a step's metrics and finish the collapse monitors on the host."""
    fetched = jax.device_get(metrics)
    stats = fetched.pop("feature_stats")
    out = {k: float(v) for k, v in fetched.items()}
    out.update(monitors_from_stats(stats))
    return out


class CollapseGuard:
    """Flags representation collapse: the effective rank of the target features falling below
    `fraction` x the run's first logged rank (RankMe at initialisation is the reference: a
    healthy run keeps or raises it, a collapsing one drives it towards 1)."""

    def __init__(self, fraction: float, stop: bool, first_row: Mapping[str, Any] | None):
        self.fraction = fraction
        self.stop = stop
        self.initial = None if first_row is None else first_row.get("effective_rank")
        self.warned = False

    def check(self, step: int, metrics: dict[str, float], reporter: Reporter, ckpt) -> None:
        """Add metrics["collapse"] (0/1); warn the first time; RunError if asked to stop."""
        rank = metrics.get("effective_rank", float("nan"))
        if self.fraction <= 0 or not np.isfinite(rank):
            return
        if self.initial is None:
            self.initial = rank
        collapsed = rank < self.fraction * self.initial
        metrics["collapse"] = float(collapsed)
        if not collapsed:
            return
        what = (
            f"representation collapse at step {step}: effective rank {rank:.1f} is below "
            f"{self.fraction:g} x its initial {self.initial:.1f} (loss "
            f"{metrics.get('loss', float('nan')):.4g}, feat_std "
            f"{metrics.get('feature_std', float('nan')):.3g})"
        )
        if self.stop:
            latest = ckpt.latest_step()
            raise RunError(
                f"{what}; stopped (config.stop_on_collapse). Last checkpoint: "
                + (f"step {latest}" if latest is not None else "none")
                + ". See the README section 'My run collapsed'"
            )
        if not self.warned:
            self.warned = True
            reporter.warn(
                f"{what}; see the README section 'My run collapsed' "
                f"(config.stop_on_collapse=True stops such runs)"
            )


@dataclasses.dataclass
class RunOutcome:
    state: Any
    final_metrics: dict[str, float]  # the last logged step's host metrics
    interrupted: bool  # stopped by SIGTERM / SIGINT (a checkpoint was saved)
    seconds: float  # wall time of the steps run by this call
    skipped_steps: int  # non-finite steps skipped (nan_policy="skip_step")


class _NonFiniteGuard:
    """Host side of the non-finite guard: reads each step's "finite" flag."""

    def __init__(self, policy: str, ckpt: Checkpointer):
        if policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy {policy!r} is not one of {NAN_POLICIES}")
        self.policy = policy
        self.ckpt = ckpt
        self.pending: tuple[int, dict] | None = None  # (step, its device metrics), not yet read
        self.skipped = 0
        self.consecutive = 0

    def push(self, step: int, metrics: dict) -> None:
        """Read the previous step's flag (it has finished or nearly: the device stays busy with
        `step`), then hold `step`'s."""
        self.flush()
        self.pending = (step, metrics)

    def flush(self) -> None:
        """Read the held step's flag now (before a save, a log line, or the end)."""
        if self.pending is None:
            return
        step, metrics = self.pending
        self.pending = None
        if bool(jax.device_get(metrics["finite"])):
            self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        if self.policy == "skip_step" and self.consecutive < MAX_CONSECUTIVE_SKIPS:
            return
        loss, grad_norm = (float(jax.device_get(metrics[k])) for k in ("loss", "grad_norm"))
        latest = self.ckpt.latest_step()
        why = (
            f"{self.consecutive} steps in a row, " if self.policy == "skip_step" else ""
        ) + f"loss {loss:.4g}, grad_norm {grad_norm:.4g}"
        raise RunError(
            f"the loss or gradient is not finite at step {step} ({why}); the update was not "
            f"applied and no checkpoint holds it. Lower optim.lr, set optim.grad_clip_norm, or "
            f"config.nan_policy='skip_step'. Last good checkpoint: "
            + (
                f"step {latest} in {self.ckpt.directory} (the same command resumes from it)"
                if latest is not None
                else "none"
            )
        )


def run_steps(
    config: Mapping[str, Any],
    state: Any,
    advance: Callable[[Any], tuple[Any, dict]],
    start_step: int,
    ckpt: Checkpointer,
    reporter: Reporter,
    data_iter: Any = None,
    extra_scalars: Callable[[], dict[str, float]] | None = None,
) -> RunOutcome:
    """Run steps `start_step + 1 .. config.total_steps` of `advance`, logging every
    `config.log_every` steps (and the first and last), saving when `ckpt` says so and on
    SIGTERM / SIGINT, handling non-finite steps as `config.nan_policy` says.

    Args:
      config: the training config (total_steps, log_every, nan_policy).
      state: the train state (restored or fresh), with a "step" counter.
      advance: one step, `state -> (state, metrics)`; metrics hold device scalars including
        "loss", "grad_norm", "finite", and "feature_stats" (train.monitors).
      data_iter: the checkpointable data iterator saved with the state (None: data are a
        function of the step).
      extra_scalars: host scalars added to each logged step (e.g. data-wait figures).

    Raises:
      RunError: a non-finite step under the nan policy, or a checkpoint save that failed.
    """
    total_steps, log_every = int(config.total_steps), int(config.log_every)
    guard = _NonFiniteGuard(str(config.get("nan_policy", "stop")), ckpt)
    collapse = CollapseGuard(
        float(config.get("collapse_rank_fraction", 0.0)),
        bool(config.get("stop_on_collapse", False)),
        reporter.first_row,
    )
    metrics_host: dict[str, float] = {}
    interrupted = False
    t_start = time.perf_counter()
    with StopRequest() as stop:
        for step in range(start_step, total_steps):
            state, metrics = advance(state)
            done = step + 1
            guard.push(done, metrics)
            ckpt.raise_if_save_failed()
            first = step == start_step
            if first or done % log_every == 0 or done == total_steps:
                guard.flush()
                metrics_host = host_metrics(metrics)
                metrics_host.pop("finite")
                if extra_scalars is not None:
                    metrics_host |= extra_scalars()
                if guard.skipped:
                    metrics_host["skipped_steps"] = float(guard.skipped)
                collapse.check(done, metrics_host, reporter, ckpt)
                if first:
                    reporter.print(
                        f"compiled and ran the first step in "
                        f"{format_duration(time.perf_counter() - t_start)}"
                    )
                    reporter.report(done, metrics_host)
                    reporter.start(done)
                else:
                    metrics_host = reporter.report(done, metrics_host)
            if ckpt.should_save(done, total_steps) or stop.signum is not None:
                guard.flush()  # never save a step whose flag is unread
                ckpt.save(done, state, data_iter)
            if stop.signum is not None:
                reporter.print(
                    f"stopped by signal {stop.signum} after step {done}; checkpoint saved, "
                    f"run the same command to resume"
                )
                interrupted = True
                break
        guard.flush()
    seconds = time.perf_counter() - t_start
    if start_step < total_steps and not interrupted:
        reporter.print(f"trained {total_steps - start_step} steps in {format_duration(seconds)}")
    return RunOutcome(state, metrics_host, interrupted, seconds, guard.skipped)


def run(
    config: Mapping[str, Any],
    trainer: Any,
    workdir: str,
    make_advance: Callable[[Any, Reporter], tuple[Callable, Callable[[], dict] | None]],
    banner: Iterable[str] = (),
    data_iter: Any = None,
    reporter_class: type[Reporter] = Reporter,
) -> RunOutcome:
    """Train (or resume) `trainer` in `workdir` to `config.total_steps`.

    Checks that the mesh divides the model before anything is written, then writes
    `config.json` (so every command can rebuild the run from the workdir alone), restores the
    latest checkpoint or creates the state, and runs the steps. `data_iter` (if any) is closed
    however the run ends.

    Args:
      trainer: `mesh`, `unit` (what a batch row is, for the progress line), `abstract_state()`,
        `create_state()`.
      make_advance: (state shardings, reporter) -> (advance, extra_scalars or None): the
        method's step (see run_steps), built once the state's shardings are known.
      banner: lines printed under the run's first line (what is being trained).
      data_iter: the checkpointable data iterator, saved and restored with the state.
      reporter_class: the progress line's Reporter.
    """
    try:
        abstract = trainer.abstract_state()  # checks that the mesh divides the model
        is_main = jax.process_index() == 0
        os.makedirs(workdir, exist_ok=True)
        if is_main:
            rundir.write_config(workdir, config)
        ckpt = Checkpointer(workdir, int(config.checkpoint_every), int(config.keep_checkpoints))
        reporter = reporter_class(
            workdir, int(config.total_steps), int(config.batch_size), is_main, unit=trainer.unit
        )
        reporter.print(
            f"jepa-jax: {jax.device_count()} {jax.devices()[0].platform} device(s) in "
            f"{jax.process_count()} process(es), mesh {dict(trainer.mesh.shape)}; workdir {workdir}"
        )
        for line in banner:
            reporter.print(line)
        with jax.set_mesh(trainer.mesh):
            try:
                state, shardings, start = restore_or_create(
                    trainer, abstract, ckpt, reporter, data_iter
                )
                advance, extra_scalars = make_advance(shardings, reporter)
                outcome = run_steps(
                    config, state, advance, start, ckpt, reporter, data_iter, extra_scalars
                )
                ckpt.close()
            finally:
                ckpt.abort()  # a no-op after close(); else releases orbax, keeping the error
                reporter.close()
    finally:
        # Stop grain's worker processes now: left to its exit-time finalizer, closing races
        # with itself and prints an AttributeError traceback after the run's own error.
        close = getattr(data_iter, "close", None)
        if close is not None:
            close()
    return outcome


def restore_or_create(
    trainer: Any, abstract: Any, ckpt: Checkpointer, reporter: Reporter, data_iter: Any = None
) -> tuple[Any, Any, int]:
    """The run's state: restored from the latest checkpoint (into the shardings of `abstract`,
    moving `data_iter` to its saved position) or freshly created. Call inside the mesh.

    Args:
      trainer: has `create_state() -> (state, shardings)` (JEPA and world-model trainers).
      abstract: `trainer.abstract_state()`, ShapeDtypeStructs with target shardings.

    Returns:
      (state, its shardings, the step it is at). metrics.jsonl is cut back to that step.
    """
    latest = ckpt.latest_step()
    if latest is None:
        state, shardings = trainer.create_state()
    else:
        state = ckpt.restore(latest, abstract, data_iter)
        check_restored_state(state, latest, ckpt)
        shardings = jax.tree.map(lambda a: a.sharding, abstract)
        reporter.print(f"resumed from checkpoint at step {latest}")
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    reporter.print(f"{n_params / 1e6:.2f}M trainable parameters")
    start_step = int(jax.device_get(state["step"]))
    reporter.resume_at(start_step)
    return state, shardings, start_step


def count_nonfinite_arrays(tree: Any) -> int:
    """How many floating-point arrays of `tree` hold a NaN or inf (reduced on device, so a
    sharded state is never gathered to the host)."""
    floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not floats:
        return 0

    def count(xs):
        return sum(jnp.logical_not(jnp.all(jnp.isfinite(x))).astype(jnp.int32) for x in xs)

    return int(jax.jit(count)(floats))


def check_restored_state(state: Any, step: int, ckpt: Checkpointer) -> None:
    """RunError if a restored state holds non-finite values (a checkpoint written before the
    non-finite guard existed): resuming from it would only produce NaNs."""
    bad = count_nonfinite_arrays(state)
    if bad:
        raise RunError(
            f"checkpoint step {step} in {ckpt.directory} holds non-finite values in {bad} of "
            f"{len(jax.tree.leaves(state))} arrays (a diverged run); delete "
            f"{ckpt.directory}/{step} to resume from an earlier checkpoint, or use a new workdir"
        )
