"""Reading what a server counted once it has counted it.

Triton updates a model's statistics (and the metrics drawn from them) just after it sends the
responses: a count read right after the last answer can still lack the last batch, more often on a
loaded machine. Tests read such counts through :func:`settled`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def settled(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 60.0) -> T:
    """``read()`` again every 50 ms until ``done`` holds for its value, or ``timeout_s`` passed;
    the last value. The bound only stops a hang: callers assert on the value returned."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value
