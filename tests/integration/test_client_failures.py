"""Failures below the server's answers: a stopped server, a closed port, a peer that never
answers. Each must end in the right ClientError quickly, never in a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from packager.client import Client
from packager.errors import InferenceTimeout, ServerUnavailable
from packager.serve.embedded import free_port
from tests.support.client_facade import MODES, client_for
from tests.support.client_models import write_repository
from tests.support.polling import settled
from tests.support.timing import hung_after

pytestmark = pytest.mark.integration

X = np.ones((1, 2), np.float32)


@pytest.fixture(scope="module")
def server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return start_server(write_repository(tmp_path_factory.mktemp("repo"), ("spare", "echo")))


def test_errors_the_server_answers_with_are_not_retried(server: Any) -> None:
    """retries=5 applies to connection failures only: a failed inference is sent once."""
    with Client(server.http_url, retries=5) as client:
        # Every request that reaches the model is queued once (an error answer is still
        # counted as a success by the backend statistics).
        before = client.statistics("echo").model_stats[0].inference_stats.queue.count
        with pytest.raises(Exception, match="asked to fail"):
            client.infer("echo", np.array([["fail"]], dtype=object))
        settled(
            lambda: client.statistics("echo").model_stats[0].inference_stats.queue.count,
            lambda seen: seen > before,
        )
        time.sleep(0.2)  # a retry, had there been one, would be counted by now
        after = client.statistics("echo").model_stats[0].inference_stats.queue.count
        assert after == before + 1


def test_stopped_server_gives_server_unavailable_within_the_timeout(server: Any) -> None:
    """Runs last in this module: it stops the module's server."""
    clients: dict[str, Any] = {}
    try:
        for mode in MODES:
            ctx = client_for(mode, server.http_url, server.grpc_url, timeout_s=20)
            clients[mode] = (ctx, ctx.__enter__())
            assert clients[mode][1].infer("spare", X)["y"].tolist() == [[2, 2]]  # connected
        server.stop()
        for mode, (_, client) in clients.items():
            start = time.monotonic()
            with pytest.raises(ServerUnavailable, match=r"is tritonserver running|closed the"):
                client.infer("spare", X)
            # Refused, not timed out: it ends before its timeout_s=20 (however loaded the machine).
            assert time.monotonic() - start < 20, mode
            assert not client.is_live() and not client.is_ready("spare")
            with pytest.raises(ServerUnavailable, match="did not become reachable within"):
                client.wait_until_ready("spare", timeout_s=0.3)
    finally:
        for ctx, _ in clients.values():
            ctx.__exit__(None, None, None)


@pytest.mark.parametrize("mode", MODES)
def test_nothing_listening(mode: str) -> None:
    port = free_port()
    url = f"127.0.0.1:{port}"
    with client_for(mode, url, url, timeout_s=20, retries=2, retry_backoff_s=0.05) as client:
        start = time.monotonic()
        with pytest.raises(ServerUnavailable) as info:
            client.metadata("m")
        # Refused after its 2 retries, not after its timeout_s=20.
        assert time.monotonic() - start < 20
        assert str(port) in str(info.value) or "grpc" in mode
        assert info.value.__cause__ is not None


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for s in accepted:
        s.close()
    listener.close()


@pytest.mark.parametrize("mode", MODES)
def test_silent_peer_times_out(mode: str, silent_peer: int) -> None:
    url = f"127.0.0.1:{silent_peer}"
    with client_for(mode, url, url, timeout_s=0.5) as client:
        start = time.monotonic()
        with pytest.raises((InferenceTimeout, ServerUnavailable)) as info:
            client.metadata("m")
        assert time.monotonic() - start < hung_after(0.5)  # ended at its timeout, not hung
        if mode.startswith("http"):
            assert isinstance(info.value, InferenceTimeout)
