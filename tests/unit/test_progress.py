"""packager.sources.progress: a line for slow build steps only, on the stream it was given."""

from __future__ import annotations

import io
import threading

import pytest

from packager.sources.progress import slow_step


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_slow_step_says_what_it_does_and_how_long_it_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRITON_PACKAGER_PROGRESS", raising=False)
    out = _Terminal()
    started = threading.Event()
    with slow_step("exporting to ONNX", after=0.0, stream=out):
        # Wait until the timer has spoken, however loaded the machine is.
        for _ in range(500):
            if out.getvalue():
                started.set()
                break
            threading.Event().wait(0.01)
    assert started.is_set()
    first, second = out.getvalue().splitlines()
    assert first == "exporting to ONNX ..."
    assert second.startswith("exporting to ONNX: ") and second.endswith(" s")


def test_a_quick_step_and_a_pipe_stay_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_PACKAGER_PROGRESS", raising=False)
    out = _Terminal()
    with slow_step("quick", after=3600, stream=out):
        pass
    assert out.getvalue() == ""
    pipe = io.StringIO()  # not a terminal: --json output and logs stay clean
    with slow_step("slow", after=0.0, stream=pipe):
        threading.Event().wait(0.05)
    assert pipe.getvalue() == ""
    monkeypatch.setenv("TRITON_PACKAGER_PROGRESS", "1")
    with slow_step("forced", after=0.0, stream=pipe):
        for _ in range(500):
            if pipe.getvalue():
                break
            threading.Event().wait(0.01)
    assert pipe.getvalue().startswith("forced ...")
