"""orbax checkpointing of the train state together with the grain iterator state.

Layout: <workdir>/checkpoints/<step>/{state, data_iter}. Saves are asynchronous (training goes
on while arrays are written) and atomic (orbax writes to a temporary directory and renames on
commit), so a run killed mid-save leaves the previous checkpoint intact. Every process takes
part in a save; the iterator state is written per process (process_<i>-of-<n>.json).
"""

from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp
from absl import logging

STATE = "state"
DATA_ITER = "data_iter"


class Checkpointer:
    """Save every `every` steps keeping the last `keep`; restore the latest on start."""

    def __init__(self, workdir: str, every: int, keep: int, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.every = every
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
        items = {STATE: ocp.args.StandardSave(state)}
        if data_iter is not None:  # None: data are a function of the step (world model)
            items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
        self.manager.save(step, args=ocp.args.Composite(**items))

    def restore(self, step: int, abstract_state: Any, data_iter: Any) -> Any:
        """Restore the state (into the shardings of `abstract_state`) and move `data_iter` (if
        not None) to the saved position in place. Returns the state."""
        logging.info("restoring checkpoint at step %d from %s", step, self.directory)
        items = {STATE: ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items[DATA_ITER] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored[STATE]

    def wait(self) -> None:
        """Block until pending asynchronous saves are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
