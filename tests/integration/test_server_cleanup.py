"""A server that died leaves nothing behind: its Python stubs and shared-memory regions are
removed by stop() or by the next start. Counted by this server's own shm prefix and process
group only (other servers run meanwhile)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from packager.serve.server import LocalServer, shm_regions
from tests.support.client_models import write_repository
from tests.support.servers import group_members

pytestmark = pytest.mark.integration


def _wait_dead(server: LocalServer) -> None:
    """Until the server process is reaped (a zombie whose threads still exit is not yet)."""
    deadline = time.monotonic() + 120  # a bound on hanging, not a figure
    while server.is_running:
        assert time.monotonic() < deadline, f"server {server.pid} did not die"
        time.sleep(0.05)


@pytest.mark.parametrize("after", ["stop", "next start"])
def test_a_killed_servers_stubs_and_regions_are_removed(tmp_path: Path, after: str) -> None:
    repo = write_repository(tmp_path / "repo", ("echo",))
    server = LocalServer(repo).start()
    try:
        pid, prefix = server.pid or 0, server.shm_prefix
        stubs = [p for p in group_members(pid) if p != pid]
        assert prefix and shm_regions(prefix), "the Python model has its regions"
        assert stubs, "the Python model has its stub"
        os.kill(pid, signal.SIGKILL)  # the server alone: its stub and regions stay
        _wait_dead(server)
        if after == "stop":
            server.stop()
        else:
            server.start()
            assert server.shm_prefix != prefix
        assert shm_regions(prefix) == []
        assert [p for p in group_members(pid) if p in stubs] == []
    finally:
        server.stop()
    assert shm_regions(server.shm_prefix) == []
