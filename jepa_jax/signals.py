"""SIGTERM / SIGINT: a clean stop whenever they arrive.

Two phases. Before training starts (flag parsing, data and model set-up, compilation) nothing
needs saving, so `interruptible()` turns the signal into an `Interrupted` exception the CLI reports
as one line (exit 0). While steps run, `StopRequest` turns it into a flag the loop checks between
steps, so the run saves a checkpoint at a step boundary instead of dying mid-step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Delay before a stop signal that a finalizer swallowed is delivered again (see interruptible).
REDELIVERY_S = 0.01


class Interrupted(BaseException):
    """A stop signal arrived outside the training steps.

    A BaseException, as KeyboardInterrupt is: libraries guard their own work with `except
    Exception` and carry on (JAX's persistent compilation cache turns any error while reading an
    entry into a warning and compiles afresh; seen in CI when the signal landed there, and the
    run went on), which must not swallow a stop."""

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

    def redeliver(unraisable):
        # Python runs a signal handler between any two bytecodes of the main thread, also inside
        # a gc callback or a __del__ (JAX registers a gc callback), where an exception cannot
        # propagate: Python prints it as "Exception ignored in ..." and drops it, and the stop
        # would be lost (the run went on training). Deliver such a signal again, REDELIVERY_S
        # later from another thread, so that it lands after this hook and the finalizer return
        # (sent at once, it raised inside this hook, which drops it for good): the handler then
        # raises in the code that was interrupted, or comes back here if it lands in a
        # finalizer again.
        if isinstance(unraisable.exc_value, Interrupted):
            signum = unraisable.exc_value.signum
            timer = threading.Timer(REDELIVERY_S, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timer.start()
        else:
            previous_hook(unraisable)

    previous = _install(handle)
    previous_hook = sys.unraisablehook
    if previous:  # the main thread: the handler is ours
        sys.unraisablehook = redeliver
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
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
