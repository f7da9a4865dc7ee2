"""Fixtures for tests that run the real embedded tritonserver.

- ``start_server(repository, **kwargs)``: start a :class:`packager.server.LocalServer` on free
  ports (session-scoped factory; every server it starts is stopped at the end of the session,
  or earlier with ``server.stop()``). Start as few servers as possible: put many models in one
  repository and share the server through a module- or session-scoped fixture.
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

from packager.server import LocalServer, started_pids

StartServer = Callable[..., LocalServer]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def leftover_processes() -> list[int]:
    """Processes still alive from every tritonserver this Python process started."""
    left: list[int] = []
    for pid in started_pids():
        left += _group_members(pid)  # LocalServer starts each server in its own group
    return left


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind() -> Iterator[None]:
    """Fails the session if a tritonserver started by the tests outlives them."""
    yield
    deadline = time.monotonic() + 5.0
    left = leftover_processes()
    while left and time.monotonic() < deadline:  # a stub may take a moment to notice
        time.sleep(0.2)
        left = leftover_processes()
    if left:
        cmds = []
        for pid in left:
            try:
                cmds.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
            except OSError:
                cmds.append(str(pid))
        pytest.fail("tritonserver processes left behind:\n" + "\n".join(cmds))


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
