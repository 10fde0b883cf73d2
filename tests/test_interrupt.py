"""Ctrl-C deferred to batch boundaries (forensics/_interrupt.py): the flag, the second Ctrl-C,
handler restore, and recognising an interrupt DuckDB wrapped in its own error ('reading the
schema of the object registered as _raw failed: KeyboardInterrupt')."""

from __future__ import annotations

import os
import signal
import time

import duckdb
import pytest

from forensics._interrupt import Interrupt, deferred_interrupt


def _sigint_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)          # the handler runs at the next bytecode boundary


def test_first_ctrl_c_sets_the_flag_second_raises_and_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    if before is not signal.default_int_handler:
        pytest.skip("SIGINT owned by the test runner")
    with deferred_interrupt() as intr:
        assert intr.installed
        _sigint_self()
        assert intr.requested                       # deferred: nothing raised yet
        with pytest.raises(KeyboardInterrupt):
            intr.check()
        with pytest.raises(KeyboardInterrupt):
            _sigint_self()                          # the second one stops at once
    assert signal.getsignal(signal.SIGINT) is before


def test_wrapped_interrupts_are_recognised_and_real_failures_are_not():
    i = Interrupt()
    wrapped = duckdb.InvalidInputException(
        "Invalid Input Error: reading the schema of the object registered as '_raw' failed: "
        "KeyboardInterrupt: ")
    assert i.explains(wrapped)
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("statement failed") from e
    except RuntimeError as chained:
        assert i.explains(chained)
    assert not i.explains(ValueError("bad row"))
    assert not i.explains(duckdb.ConstraintException("Duplicate key"))
    i.requested = True                              # after a Ctrl-C any error is the interrupt
    assert i.explains(ValueError("bad row"))
