"""orbax checkpointing of the train state together with the grain iterator state.

Layout: <workdir>/checkpoints/<step>/{state, data_iter}. Saves are asynchronous (training goes
on while arrays are written) and atomic (orbax writes to a temporary directory and renames on
commit), so a run killed mid-save leaves the previous checkpoint intact. Every process takes
part in a save; the iterator state is written per process (process_<i>-of-<n>.json).

A save that fails (disk full, no permission) is found at the next step, not at the next save:
`raise_if_save_failed()` turns it into one RunError line naming the step, the cause, the free
space and the last committed checkpoint, after removing the half-written directory.
"""

from __future__ import annotations

import atexit
import logging as logging_std
import os
import re
import shutil
import sys
import time
import warnings
from typing import Any

import grain
import orbax.checkpoint as ocp
from absl import logging

from jepa_jax import rundir
from jepa_jax.errors import RunError

STATE = rundir.STATE_ITEM
DATA_ITER = rundir.DATA_ITER_ITEM


class Checkpointer:
    """Save every `every` steps keeping the last `keep`; restore the latest on start."""

    def __init__(self, workdir: str, every: int, keep: int, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), rundir.CHECKPOINT_DIR)
        self.every = every
        self._saving_step: int | None = None  # the step of the save in flight, if any
        self._closed = False
        _quiet_orbax_failure_logs()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=1,  # we decide when to save (every N steps and at the end)
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,  # remove half-written saves of a killed run
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE, DATA_ITER)
        )

    def latest_step(self) -> int | None:
        """Step of the newest committed checkpoint, or None."""
        return self.manager.latest_step()

    def should_save(self, step: int, total_steps: int) -> bool:
        return step % self.every == 0 or step == total_steps

    def save(self, step: int, state: Any, data_iter: Any) -> None:
        """Start saving `state` and the iterator position (if any) at `step` (returns before
        arrays land).

        Call it after the step's update was dispatched and before the next batch is drawn, so the
        iterator state matches the state exactly.
        """
        # The previous save must have landed first, so that a failure names its own step.
        self._finish_previous_save(block=True)
        items = {STATE: ocp.args.StandardSave(state)}
        if data_iter is not None:  # None: data are a function of the step (world model)
            items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
        self._saving_step = step
        try:
            self.manager.save(step, args=ocp.args.Composite(**items))
        except Exception as e:  # the synchronous part (directories, metadata) failed
            self._fail(e)

    def raise_if_save_failed(self) -> None:
        """RunError if the asynchronous save has ended in failure (cheap: call it every step;
        it never waits for a save in progress)."""
        self._finish_previous_save(block=False)

    def _finish_previous_save(self, block: bool) -> None:
        if self._saving_step is None or self._closed:
            return
        if not block and self.manager.is_saving_in_progress():
            return
        try:
            # Returns at once for a save that has ended; raises what its threads raised.
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:
            self._fail(e)
        self._saving_step = None

    def restore(self, step: int, abstract_state: Any, data_iter: Any) -> Any:
        """Restore the state (into the shardings of `abstract_state`) and move `data_iter` (if
        not None) to the saved position in place. Returns the state."""
        logging.info("restoring checkpoint at step %d from %s", step, self.directory)
        items = {STATE: ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items[DATA_ITER] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored[STATE]

    def close(self) -> None:
        """Wait for the save in flight to commit (RunError if it fails), then release orbax's
        threads. Idempotent."""
        if self._closed:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            self._fail(e)
        self._closed = True
        self.manager.close()

    def abort(self) -> None:
        """Release orbax without raising (the run is failing for another reason), and remove
        a half-written save so the next start sees committed checkpoints only."""
        if self._closed:
            return
        self._closed = True
        for finish in (self.manager.wait_until_finished, self.manager.close):
            try:  # a failed save raises again here; the run's own error wins
                finish()
            except Exception as e:
                logging.warning("closing the checkpoint manager: %s", first_line(e))
        remove_uncommitted(self.directory)
        # Writer threads of a failed save can outlive close(): clean again when Python exits.
        atexit.register(remove_uncommitted, self.directory, 0.0, 2.0)

    def _fail(self, error: Exception) -> None:
        step, latest = self._saving_step, None
        self.abort()
        try:
            latest = self.manager.latest_step()
        except Exception:  # a directory that cannot be listed: say "none"
            pass
        free = free_space(self.directory)
        raise RunError(
            f"saving the checkpoint of step {step} to {self.directory} failed: "
            f"{first_line(error)} ({free} free there); last committed checkpoint: "
            + (
                f"step {latest} (the same command resumes from it)"
                if latest is not None
                else "none"
            )
        ) from None


def first_line(error: BaseException) -> str:
    """The most specific one-line cause of `error`: the OSError in its chain, or the OS error
    code tensorstore quotes (e.g. "[Errno 28] No space left on device"), else its first line."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"[Errno {seen.errno}] {seen.strerror}"
        code = re.search(r"os_error_code='(\d+)'", str(seen))
        if code:
            return f"[Errno {code.group(1)}] {os.strerror(int(code.group(1)))}"
        seen = seen.__cause__ or seen.__context__
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message[:300]}"


# The coroutines of jax's array serialization (orbax's writes); see _quiet_orbax_failure_logs.
ORBAX_UNAWAITED_COROUTINES = r"coroutine 'async_serialize"


class _OrbaxFailureFilter(logging_std.Filter):
    """Drops orbax's ERROR records: a failed save is reported once, by Checkpointer, as a
    RunError; orbax logs the same failure from each of its threads with a full traceback, and
    asyncio logs the writes still in flight ("Task exception was never retrieved")."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        if record.levelno < logging_std.ERROR:
            return True
        if "orbax" in record.pathname:
            return False
        return not (record.name == "asyncio" and _mentions_orbax(record))


def _mentions_orbax(record: logging_std.LogRecord) -> bool:
    """Whether an asyncio record is about an orbax write: its message names orbax, or its
    exception was raised in orbax code ("Future exception was never retrieved" records carry
    only the exception's repr, e.g. FileNotFoundError(2, '...'), and the traceback)."""
    if "orbax" in str(record.getMessage()):
        return True
    error = record.exc_info[1] if record.exc_info else None
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        if "orbax" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _quiet_orbax_failure_logs() -> None:
    """Silence orbax's duplicate failure reports unless `jepa-jax --verbose` (idempotent)."""
    from jepa_jax import startup

    if startup.verbose():
        return
    for name in ("absl", "asyncio"):
        logger = logging_std.getLogger(name)
        if not any(isinstance(f, _OrbaxFailureFilter) for f in logger.filters):
            logger.addFilter(_OrbaxFailureFilter())
    # After a failed write, tensorstore's remaining callbacks find orbax's event loop closed;
    # CPython reports each as an unraisable exception.
    if not getattr(sys.unraisablehook, "_jepa_jax_quiet", False):
        previous = sys.unraisablehook

        def hook(unraisable):
            value = unraisable.exc_value
            if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
                return
            previous(unraisable)

        hook._jepa_jax_quiet = True
        sys.unraisablehook = hook
    # Under load, jax's serialization coroutines of an aborted save can be garbage-collected
    # unawaited at exit: "sys:1: RuntimeWarning: coroutine 'async_serialize_from_host.<locals>.
    # write_fragment' was never awaited" (+ a tracemalloc hint), after the one-line error.
    warnings.filterwarnings("ignore", message=ORBAX_UNAWAITED_COROUTINES, category=RuntimeWarning)


def free_space(path: str) -> str:
    """Free space on the disk holding `path` (or its nearest existing parent), e.g. '1.2 GiB'."""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        free = shutil.disk_usage(path or ".").free
    except OSError:
        return "unknown space"
    if free < 1024:
        return f"{free} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        free /= 1024
        if free < 1024 or unit == "TiB":
            return f"{free:.1f} {unit}"


def remove_uncommitted(directory: str, settle_seconds: float = 0.5, limit_seconds: float = 10.0):
    """Delete orbax's temporary (uncommitted) checkpoint directories under `directory`.

    After a failed save some writer threads may still be creating files there, so removal is
    repeated until no temporary directory has been seen for `settle_seconds` (at most
    `limit_seconds`; the run is failing anyway, and a clean directory is worth the wait).
    """
    deadline = time.monotonic() + limit_seconds
    clean_since = None
    while time.monotonic() < deadline:
        names = os.listdir(directory) if os.path.isdir(directory) else []
        leftovers = [n for n in names if ".orbax-checkpoint-tmp" in n]
        if leftovers:
            clean_since = None
            for name in leftovers:
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        elif clean_since is None:
            clean_since = time.monotonic()
        elif time.monotonic() - clean_since >= settle_seconds:
            return
        time.sleep(0.05)
