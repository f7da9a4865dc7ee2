"""Fixtures shared by every test tier.

- ``start_server(repository, **kwargs)``: start a :class:`packager.serve.server.LocalServer` on
  free ports (session-scoped factory, used by the integration and reliability tiers alike; every
  server it starts is stopped at the end of the session, or earlier with ``server.stop()``).
  Start as few servers as possible: put many models in one repository and share the server
  through a module- or session-scoped fixture.
- At the end of the session, a check fails the run if any tritonserver (or Python backend stub)
  started by this test process is still alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.serve.server import LocalServer
from tests.support import models
from tests.support.servers import describe, leftover_processes


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real ONNX and TorchScript files exported from torch once per session."""
    return models.export_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def external_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX file with its weights in a side .onnx.data file."""
    return models.export_external(tmp_path_factory.mktemp("external"))


StartServer = Callable[..., LocalServer]


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind() -> Iterator[None]:
    """Fails the session if a tritonserver started by the tests outlives them."""
    yield
    deadline = time.monotonic() + 30.0  # a bound on hanging: a busy machine delays exits
    left = leftover_processes()
    while left and time.monotonic() < deadline:  # a stub may take a moment to notice
        time.sleep(0.2)
        left = leftover_processes()
    if left:
        pytest.fail("tritonserver processes left behind:\n" + describe(left))


@pytest.fixture(scope="session")
def start_server(no_server_left_behind: None) -> Iterator[StartServer]:
    """Factory: ``start_server(repo, **LocalServer kwargs)`` -> a started server on free ports."""
    servers: list[LocalServer] = []

    def start(repository: str | os.PathLike[str], **kwargs: Any) -> LocalServer:
        kwargs.setdefault("startup_timeout_s", 120.0)  # two cores shared with other work
        server = LocalServer(repository, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
