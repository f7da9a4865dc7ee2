"""Fixtures of the reliability and security tier (bad inputs, crashes, faults, load, TLS).

Tests here that start the real embedded tritonserver are marked ``integration`` like the
integration tier; at the end of the session a check fails the run if any server is left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from packager.server import LocalServer
from tests.support.servers import describe, leftover_processes

StartServer = Callable[..., LocalServer]


@pytest.fixture(scope="session")
def reliability_servers() -> Iterator[StartServer]:
    """Factory: ``start(repo, **LocalServer kwargs)`` -> a started server on free ports.

    Every server it starts is stopped at the end of the session (or earlier by the test);
    then no tritonserver or Python backend stub started by this process may be alive.
    """
    servers: list[LocalServer] = []

    def start(repository: str | os.PathLike[str], **kwargs: Any) -> LocalServer:
        kwargs.setdefault("startup_timeout_s", 120.0)  # two cores shared with other work
        server = LocalServer(repository, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop(grace_s=5.0)
    pids = [s.pid for s in servers if s.pid is not None]
    deadline = time.monotonic() + 5.0
    left = leftover_processes(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftover_processes(pids)
    if left:
        pytest.fail("tritonserver processes left behind:\n" + describe(left))
