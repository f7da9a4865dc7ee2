"""``timeout_s`` bounds the whole call, the wait for a free slot included (AsyncClient), against
a real socket that accepts connections and never answers (a hung server)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from packager.client import AsyncClient, InferenceTimeout


@pytest.fixture
def hung_server() -> Iterator[str]:
    """127.0.0.1:PORT: accepts, reads, never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_call_waiting_for_a_slot_times_out_while_the_slot_is_still_taken(
    hung_server: str,
) -> None:
    """One slot, held by a call with a long timeout; the next call (short timeout) must end
    with InferenceTimeout while the first one is still waiting: an order, not a duration.
    HTTP only: a gRPC channel gives up on a server that never sends its SETTINGS frame (the
    gRPC transport bounds its slot wait the same way, with ``asyncio.timeout_at``)."""
    url = hung_server

    async def run() -> tuple[bool, BaseException | None]:
        async with AsyncClient(url, max_in_flight=1, retries=0, timeout_s=600) as client:
            holder = asyncio.ensure_future(client.models())  # the slot's owner, 600 s
            await asyncio.sleep(0.05)
            error = None
            try:  # queued behind it with 0.3 s (infer's timeout_s, without the model lookup)
                await client._send(client._codec.server_metadata(), 0.3)
            except InferenceTimeout as exc:
                error = exc
            pending = not holder.done()
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
            return pending, error

    pending, error = asyncio.run(run())
    assert isinstance(error, InferenceTimeout)
    assert pending, "the queued call waited for the slot's owner to finish"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wait_until_ready_zero_checks_once_and_says_why(protocol: str) -> None:
    """timeout_s=0 is one check, then the reason (evaluate relies on it for an unknown model);
    a negative time is the caller's mistake."""
    from packager.client import Client, ClientError, InvalidInput
    from packager.serve.embedded import free_port

    with Client(f"127.0.0.1:{free_port()}", protocol=protocol) as client:  # nothing listens
        with pytest.raises(ClientError) as gave_up:
            client.wait_until_ready("m", timeout_s=0)
        assert not isinstance(gave_up.value, InvalidInput)
        with pytest.raises(InvalidInput, match="non-negative"):
            client.wait_until_ready("m", timeout_s=-1)


def test_async_wait_until_ready_zero_checks_once() -> None:
    from packager.client import ClientError, InvalidInput
    from packager.serve.embedded import free_port

    async def run() -> BaseException:
        async with AsyncClient(f"127.0.0.1:{free_port()}") as client:
            with pytest.raises(ClientError) as gave_up:
                await client.wait_until_ready("m", timeout_s=0)
            return gave_up.value

    assert not isinstance(asyncio.run(run()), InvalidInput)
