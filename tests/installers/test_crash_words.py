"""An engine that ended on its own is told in words, as each platform reports the end:
POSIX as the signal that killed it, Windows as the NTSTATUS its crash exited with (Python's
subprocess gives it unsigned; other tools print it as a signed 32-bit number)."""

from __future__ import annotations

import signal

import pytest

from layerlab.core.engine.supervisor import how_it_ended

CRASHED = "it crashed inside llama.cpp"
ABORTED = "llama.cpp hit an error it could not recover from and aborted"


def signed(status: int) -> int:
    """The number as a signed int32, the way some tools print an NTSTATUS."""
    return status - (1 << 32) if status >= 1 << 31 else status


@pytest.mark.parametrize(
    "status, words",
    [
        (0xC0000005, f"Windows error 0xC0000005, an access violation: {CRASHED}"),
        (0xC00000FD, f"Windows error 0xC00000FD, a stack overflow: {CRASHED}"),
        (0xC0000409, f"Windows error 0xC0000409, a fail-fast exit: {ABORTED}"),
        (0xC000001D, "Windows error 0xC000001D, an illegal instruction: llama.cpp used an "
                     "instruction this processor does not have"),
        (0xC0000135, "Windows error 0xC0000135, a DLL not found: a library llama.cpp needs "
                     "is missing: reinstall LayerLab"),
    ],
)  # fmt: skip
def test_windows_crash_codes_in_words_signed_or_unsigned(status, words):
    assert status == signed(status) + (1 << 32)
    assert how_it_ended(status, windows=True).startswith(words)
    assert how_it_ended(signed(status), windows=True) == how_it_ended(status, windows=True)


def test_windows_abort_without_fail_fast_and_plain_exits():
    assert how_it_ended(3, windows=True) == f"exit code 3: {ABORTED}"
    assert how_it_ended(1, windows=True) == "it exited with code 1"  # also TerminateProcess
    assert how_it_ended(-1, windows=True) == "it exited with code -1"  # exit(-1), not a crash


def test_an_unknown_windows_crash_is_named_by_its_number():
    assert how_it_ended(0xC0000094, windows=True) == ("it crashed with Windows error 0xC0000094")
    assert how_it_ended(signed(0xC0000094), windows=True) == (
        "it crashed with Windows error 0xC0000094"
    )


def test_posix_signals_keep_their_words():
    sigsegv, sigkill = int(signal.SIGSEGV), 9
    assert how_it_ended(-sigsegv, windows=False) == f"killed by signal {sigsegv}: {CRASHED}"
    assert how_it_ended(-sigkill, windows=False).startswith("killed by signal 9: perhaps")
    assert how_it_ended(0, windows=False) == "it exited with code 0"
    assert how_it_ended(-64, windows=False).startswith("killed by signal 64")
