"""SIGTERM / SIGINT: a clean stop whenever they arrive.

Two phases. Before training starts (flag parsing, data and model set-up, compilation) nothing
needs saving, so `interruptible()` turns the signal into an `Interrupted` exception the CLI reports
as one line (exit 0). While steps run, `StopRequest` turns it into a flag the loop checks between
steps, so the run saves a checkpoint at a step boundary instead of dying mid-step.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """A stop signal arrived outside the training steps."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def _install(handler) -> dict[int, Any]:
    previous = {}
    for sig in SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Raise `Interrupted` from the main thread when SIGTERM / SIGINT arrives in the block."""

    def handle(signum, frame):
        raise Interrupted(signum)

    previous = _install(handle)
    try:
        yield
    finally:
        _restore(previous)


class StopRequest:
    """Context manager: SIGTERM / SIGINT set `signum`, which the loop checks between steps; a
    second signal gives up waiting (KeyboardInterrupt)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        self._previous = _install(self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        _restore(self._previous)
