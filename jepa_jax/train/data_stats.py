"""Host-side data accounting for the training loop: time spent waiting for batches, and the
unreadable inputs the pipeline replaced (`data.reading`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from jepa_jax.data.reading import REPLACED


class DataStats:
    """Draws the loop's batches, timing the draw and stripping the per-example REPLACED counts.

    `scalars()` gives, for the metrics:
      data/replaced       inputs replaced so far in this run, on this process (count);
      data/wait_fraction  fraction of the wall time since the previous call spent blocked in
                          `next(data_iter)` (0 when the pipeline keeps ahead of the steps).
    """

    def __init__(self):
        self.replaced = 0
        self._wait = 0.0
        self._since = time.perf_counter()

    def next_batch(self, data_iter: Iterator[dict]) -> dict[str, Any]:
        """The next host batch without its REPLACED field."""
        start = time.perf_counter()
        batch = next(data_iter)
        self._wait += time.perf_counter() - start
        replaced = batch.pop(REPLACED, None)
        if replaced is not None:
            self.replaced += int(np.sum(replaced))
        return batch

    def scalars(self) -> dict[str, float]:
        """The metrics above; starts a new wait interval."""
        now = time.perf_counter()
        fraction = self._wait / max(now - self._since, 1e-9)
        self._wait, self._since = 0.0, now
        return {"data/replaced": float(self.replaced), "data/wait_fraction": fraction}
