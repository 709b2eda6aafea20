"""Stop signals during start-up end the command even when they land inside a finalizer."""

import signal
import sys
import time

import pytest

from jepa_jax.signals import Interrupted, interruptible


class SignalledWhileFinalized:
    """Receives SIGTERM while its __del__ runs: Python calls the handler inside __del__, where
    the handler's exception cannot propagate (as inside JAX's gc callback)."""

    def __del__(self):
        signal.raise_signal(signal.SIGTERM)
        for _ in range(100):  # bytecodes after the signal: the handler runs here, in __del__
            pass


def test_a_stop_signal_swallowed_by_a_finalizer_is_delivered_again(capfd):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="stopped by signal 15"):
        with interruptible():
            obj = SignalledWhileFinalized()
            del obj  # the handler's exception is dropped inside __del__ ...
            time.sleep(10)  # ... and the signal, delivered again, interrupts the sleep
            pytest.fail("the stop signal was lost")
    assert "Exception ignored" not in capfd.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


def test_other_unraisable_exceptions_still_reach_the_previous_hook(monkeypatch):
    seen = []
    recorder = lambda unraisable: seen.append(unraisable.exc_value)  # noqa: E731
    monkeypatch.setattr(sys, "unraisablehook", recorder)

    class FailsWhileFinalized:
        def __del__(self):
            raise ValueError("a broken finalizer")

    with interruptible():
        obj = FailsWhileFinalized()
        del obj
    assert [str(e) for e in seen] == ["a broken finalizer"]
    assert sys.unraisablehook is recorder  # restored after the block


def test_code_that_catches_every_error_does_not_swallow_the_stop():
    # As JAX's persistent compilation cache does around reading an entry: it warns and goes on.
    with pytest.raises(Interrupted, match="stopped by signal 15"):
        with interruptible():
            try:
                signal.raise_signal(signal.SIGTERM)
                time.sleep(10)
            except Exception:
                pytest.fail("the stop was caught as an ordinary error")
