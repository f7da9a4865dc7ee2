"""Progress lines for the slow steps of a build (exports, conversions, verification runs).

A step that ends within ``after`` seconds prints nothing; a longer one says what it is doing
when it passes that mark and how long it took when it ends, on stderr (stdout stays the
result, so ``--json`` output is never mixed with it). Lines are written only to a terminal,
unless ``TRITON_PACKAGER_PROGRESS=1`` asks for them anyway (=0 turns them off).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

SLOW_S = 2.0  # a step longer than this gets a line


def _wanted(stream: TextIO) -> bool:
    forced = os.environ.get("TRITON_PACKAGER_PROGRESS")
    if forced is not None:
        return forced not in ("", "0")
    return bool(getattr(stream, "isatty", lambda: False)())


@contextlib.contextmanager
def slow_step(what: str, after: float = SLOW_S, stream: TextIO | None = None) -> Iterator[None]:
    """``with slow_step("exporting to ONNX"):`` prints ``exporting to ONNX ...`` once the step
    has run ``after`` seconds, then ``exporting to ONNX: 12.3 s`` when it ends."""
    # The stream is taken now: exporters redirect sys.stderr while they run.
    out = stream if stream is not None else sys.stderr
    if not _wanted(out):
        yield
        return
    started = time.perf_counter()
    said = threading.Event()

    def announce() -> None:
        said.set()
        print(f"{what} ...", file=out, flush=True)

    timer = threading.Timer(after, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if said.is_set():
            print(f"{what}: {time.perf_counter() - started:.1f} s", file=out, flush=True)
