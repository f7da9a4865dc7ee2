"""Run the same test code against Client and AsyncClient.

:class:`AsyncFacade` turns every coroutine method of an :class:`AsyncClient` into a blocking
call executed on one background event loop (the client's connections belong to that loop), so
one test body covers sync and async.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from packager.client import AsyncClient, Client

T = TypeVar("T")
MODES = ("http-sync", "http-async", "grpc-sync", "grpc-async")


class AsyncFacade:
    """Blocking calls into an AsyncClient living on ``loop`` (in another thread)."""

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.is_async = True

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
        async def wrapper() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(lambda: attr(*args, **kwargs))

        return call


@contextmanager
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a daemon thread until the context ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def client_for(mode: str, http_url: str, grpc_url: str, **kwargs: Any) -> Iterator[Any]:
    """A Client, or an AsyncFacade over an AsyncClient, for ``mode`` (one of MODES)."""
    protocol, kind = mode.split("-")
    url = http_url if protocol == "http" else f"grpc://{grpc_url}"
    if kind == "sync":
        with Client(url, **kwargs) as client:
            client.is_async = False  # type: ignore[attr-defined]
            yield client
        return
    with event_loop_thread() as loop:
        facade = AsyncFacade(
            asyncio.run_coroutine_threadsafe(_make(url, kwargs), loop).result(30), loop
        )
        try:
            yield facade
        finally:
            facade.close()


async def _make(url: str, kwargs: dict[str, Any]) -> AsyncClient:
    return AsyncClient(url, **kwargs)
