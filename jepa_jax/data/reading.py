"""Reading examples of file-backed sources into the training stream, surviving bad files.

A *decoded source* is a random-access source (`__len__`, `__getitem__`) that also has
`load(index, rng) -> {"pixels", "labels"}`, the training view of record `index` drawn from `rng`
(random clip start, crop, flip), and `describe(index) -> str` (the file behind it, for messages).
`__getitem__(index)` is the deterministic eval view (centre clip, centre crop).

`ReadExample` is the pipeline step that calls `load` for stream element i with a generator
seeded by (seed, i), so a stream element is a pure function of (config seed, i) however the
stream is split over threads, worker processes or resumed runs. When a record cannot be read
(`BadExample`: missing, truncated, not an image, too few frames) it is replaced by another record
chosen by the same seeded generator, logged once per file and counted in the example's
REPLACED field. If more than `max_bad_fraction` of the reads fail, `TooManyBadExamples` stops
the run, naming the files.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from absl import logging

from jepa_jax.errors import ConfigError

# Key of the per-example count of records that failed before this one was read (int32).
REPLACED = "replaced"
# Replacement records tried for one stream element before giving up.
MAX_ATTEMPTS = 32
# Failures before the bad fraction is checked: one early corrupt file must not stop a run whose
# threshold is 1%, but a folder of non-videos should stop it within seconds.
MIN_FAILURES_TO_STOP = 10
# Failed files named in the stop error.
NAMED_FILES = 5


class BadExample(Exception):
    """One record that cannot be read; `path` names it and `reason` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class TooManyBadExamples(ConfigError):
    """More than data.max_bad_fraction of the records read could not be decoded."""


class DecodedSource:
    """Base of the decoded sources (module docstring): subclasses define `__len__`,
    `describe(index)` and `load(index, rng)`; indexing is the eval view."""

    def __getitem__(self, index: int) -> dict:
        return self.load(index, None)


class RecordSource(DecodedSource):
    """A decoded source over a random-access `records` field (ArrayRecord shards, TFDS)."""

    def __len__(self) -> int:
        return len(self.records)


def is_decoded_source(source: Any) -> bool:
    """True for sources that decode files (they have `load(index, rng)`)."""
    return isinstance(source, DecodedSource)


class ReadExample:
    """Grain `map_with_index` step: (stream position i, record index) -> example.

    The output is the source's example plus REPLACED: int32 number of records that failed and
    were replaced to produce it (0 almost always).
    """

    def __init__(self, source: Any, seed: int, max_bad_fraction: float):
        self.source = source
        self.seed = seed
        self.max_bad_fraction = max_bad_fraction
        self._init_counters()

    def _init_counters(self) -> None:
        self._lock = threading.Lock()
        self._reads = 0
        self._failures = 0
        self._failed: dict[str, str] = {}  # path -> reason, first seen first

    # Locks do not pickle; grain pickles the pipeline into its worker processes, and each worker
    # keeps its own counters.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for key in ("_lock", "_reads", "_failures", "_failed"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_counters()

    def __call__(self, position: int, record: int) -> dict:
        rng = np.random.default_rng([self.seed, int(position)])
        index = int(record)
        failures = 0
        for attempt in range(MAX_ATTEMPTS):
            try:
                example = self.source.load(index, rng)
            except BadExample as e:
                failures += 1
                self._count(e)
                # The replacement depends only on (seed, position, attempt).
                index = int(
                    np.random.default_rng([self.seed, int(position), attempt + 1]).integers(
                        len(self.source)
                    )
                )
                rng = np.random.default_rng([self.seed, int(position), attempt + 1, 0])
                continue
            self._count(None)
            example = dict(example)
            example[REPLACED] = np.int32(failures)
            return example
        raise TooManyBadExamples(
            f"{MAX_ATTEMPTS} records in a row could not be read for stream element {position}; "
            f"e.g. {self._named_failures()}"
        )

    def _count(self, error: BadExample | None) -> None:
        with self._lock:
            self._reads += 1
            if error is None:
                return
            self._failures += 1
            first_time = error.path not in self._failed
            if first_time:
                self._failed[error.path] = error.reason
            failures, reads = self._failures, self._reads
        if first_time:
            logging.warning("skipping unreadable input %s: %s", error.path, error.reason)
        if failures >= MIN_FAILURES_TO_STOP and failures > self.max_bad_fraction * reads:
            raise TooManyBadExamples(
                f"{failures} of {reads} reads failed ({failures / reads:.1%}), more than "
                f"config.data.max_bad_fraction={self.max_bad_fraction}: "
                f"{self._named_failures()}"
            )

    def _named_failures(self) -> str:
        with self._lock:
            items = list(self._failed.items())
        named = "; ".join(f"{p} ({r})" for p, r in items[:NAMED_FILES])
        more = len(items) - NAMED_FILES
        return named + (f"; and {more} more files" if more > 0 else "")
