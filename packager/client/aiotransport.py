"""asyncio transports: HTTP/1.1 on pooled asyncio connections, and a ``grpc.aio`` channel.

Both bound the requests in flight with a semaphore (``max_in_flight``), so that
``asyncio.gather`` over thousands of calls queues them here instead of opening thousands of
connections. ``timeout_s`` bounds the whole call: the wait for a free slot, every attempt and
the pauses between them. Everything is created lazily inside the running event loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from packager.client.core import Endpoint, RetryPolicy, TLSOptions
from packager.client.errors import translating
from packager.client.grpcwire import GrpcCall
from packager.client.http11 import ResponseParser, render_head, render_headers
from packager.client.httpwire import HttpCall
from packager.client.transport import RETRYABLE, body_length, grpc_channel_args, ssl_context_for

__all__ = ["AioGrpcTransport", "AioHttpTransport"]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP connection; at most one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[ResponseParser] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        try:
            parser.feed(data)
        except Exception as exc:
            waiter.set_exception(exc)
            self.abort()
            return
        if parser.done:
            self.waiter = None
            waiter.set_result(parser)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, parser = self.waiter, self.parser
        if waiter is None or waiter.done() or parser is None:
            return
        try:
            parser.eof()
        except Exception as err:
            waiter.set_exception(exc if isinstance(exc, OSError) else err)
            return
        waiter.set_result(parser)

    def _timed_out(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("timed out"))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def roundtrip(
        self, head: bytes, parts: Sequence[Any], timeout_s: float
    ) -> ResponseParser:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.parser = ResponseParser()
        self.waiter = waiter = loop.create_future()
        self.transport.writelines([head, *(memoryview(p) for p in parts)])
        timer = loop.call_later(timeout_s, self._timed_out)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.parser = None


class AioHttpTransport:
    """Sends :class:`HttpCall` objects over pooled asyncio connections."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout_s: float,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy,
        max_in_flight: int,
        tls: TLSOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = str(endpoint)
        self._endpoint = endpoint
        self._host = endpoint.address.encode("idna")
        self._base = endpoint.base_path
        self._headers = render_headers(headers)
        self._ssl = ssl_context or (ssl_context_for(tls) if endpoint.tls else None)
        self._connect_timeout = connect_timeout_s
        self._retry = retry
        self._max_in_flight = max_in_flight
        self._sem: asyncio.Semaphore | None = None
        self._idle: deque[_Connection] = deque()
        self._closed = False

    async def send(
        self, call: HttpCall, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        with translating(call.what, self.url):
            extra = self._headers + call.headers
            if headers:
                extra += render_headers(headers)
            head = render_head(
                call.method, self._base + call.path, self._host, body_length(call.body), extra
            )
            if self._sem is None:
                self._sem = asyncio.Semaphore(self._max_in_flight)
            async with asyncio.timeout(timeout_s), self._sem:
                attempt = 0
                while True:
                    try:
                        parser = await self._exchange(head, call.body, timeout_s)
                        break
                    except RETRYABLE:
                        if attempt >= self._retry.retries or self._closed:
                            raise
                        await asyncio.sleep(self._retry.delay(attempt))
                        attempt += 1
            return call.parse(parser.status, parser.headers, parser.body)

    async def _exchange(
        self, head: bytes, parts: Sequence[Any], timeout_s: float
    ) -> ResponseParser:
        while True:
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                parser = await conn.roundtrip(head, parts, timeout_s)
            except RETRYABLE:
                conn.abort()
                if reused:
                    continue  # an idle keep-alive connection the server had closed
                raise
            except BaseException:
                conn.abort()  # timeout or cancellation: the connection is out of step
                raise
            if parser.keep_alive and not conn.closed and not self._closed:
                self._idle.append(conn)
            else:
                conn.abort()
            return parser

    async def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectionAbortedError("the client is closed")
        loop = asyncio.get_running_loop()
        e = self._endpoint
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                _Connection,
                e.host,
                e.port,
                ssl=self._ssl,
                server_hostname=e.host if self._ssl is not None else None,
            ),
            self._connect_timeout,
        )
        return conn

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().abort()


class AioGrpcTransport:
    """Sends :class:`GrpcCall` objects over one ``grpc.aio`` channel (made in the loop)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy,
        max_in_flight: int,
        tls: TLSOptions | None = None,
    ) -> None:
        self.url = str(endpoint)
        self._endpoint = endpoint
        self._tls = tls
        self._metadata = tuple((k.lower(), v) for k, v in (headers or {}).items())
        self._retry = retry
        self._max_in_flight = max_in_flight
        self._sem: asyncio.Semaphore | None = None
        self._channel: Any = None
        self._stub: Any = None

    def _open(self) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        options, creds = grpc_channel_args(self._endpoint, self._tls)
        address = self._endpoint.address
        if creds is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, creds, options=options)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._sem = asyncio.Semaphore(self._max_in_flight)

    async def send(
        self, call: GrpcCall, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        if self._stub is None:
            self._open()
        assert self._sem is not None
        metadata = self._metadata
        if headers:
            metadata += tuple((k.lower(), v) for k, v in headers.items())
        rpc = getattr(self._stub, call.rpc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with translating(call.what, self.url):
            async with asyncio.timeout_at(deadline), self._sem:
                attempt = 0
                while True:
                    try:
                        response = await rpc(
                            call.request,
                            timeout=max(deadline - loop.time(), 0.001),
                            metadata=metadata or None,
                        )
                        break
                    except Exception as exc:
                        if not _retryable(exc) or attempt >= self._retry.retries:
                            raise
                        await asyncio.sleep(self._retry.delay(attempt))
                        attempt += 1
            return call.parse(response)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None


def _retryable(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    if code is None or getattr(code(), "name", "") != "UNAVAILABLE":
        return False
    return "model" not in (exc.details() or "").lower()  # type: ignore[attr-defined]
