"""Streamed text generation over the clients' transports: SSE over HTTP, a gRPC bidi stream.

``Client.generate`` / ``Client.stream`` and their ``AsyncClient`` twins call these. Each
stream uses a connection of its own (HTTP) or a call of its own (gRPC), so that stopping early
(``break``, ``close()``, task cancellation) closes exactly it; the server then sees the request
cancelled and stops generating. Requests and answers are built and read by
:mod:`packager.client.genwire`; failures become :class:`ClientError` subclasses in
:func:`packager.client.errors.translating`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from packager.client import genwire
from packager.client.errors import ServerReply, translating
from packager.client.http11 import ResponseParser, render_head, render_headers
from packager.client.httpwire import HttpCall

__all__ = ["aio_grpc_texts", "aio_http_texts", "grpc_texts", "http_generate", "http_texts"]


def _reply_error(status: int, body: bytes) -> ServerReply:
    try:
        import json

        message = str(json.loads(body).get("error", body[:200]))
    except (ValueError, AttributeError):
        message = body[:200].decode("utf-8", "replace")
    return ServerReply(status, message)


def _yield(chunk: genwire.Chunk, details: bool) -> list[Any]:
    """What a stream yields for one response: the chunk (details), or its text if any."""
    if details:
        return [chunk]
    return [chunk.text] if chunk.text else []


def generate_parser(where: str) -> Any:
    """How to read the answer of one ``generate`` call (no streaming): the whole text."""

    def parse(status: int, _headers: Mapping[str, str], answer: Any) -> str:
        if status != 200:
            raise _reply_error(status, bytes(answer))
        import json

        return genwire.json_text(json.loads(bytes(answer)), where)

    return parse


def http_generate(
    transport: Any, path: str, body: bytes, where: str, timeout_s: float, headers: Any
) -> str:
    """One ``generate`` call over the blocking transport."""
    extra = b"Content-Type: application/json\r\n"
    call = HttpCall("POST", path, [body], extra, generate_parser(where), where)
    return str(transport.send(call, timeout_s, headers))


def _stream_head(transport: Any, path: str, body: bytes, headers: Any) -> bytes:
    extra = transport._headers + b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
    if headers:
        extra += render_headers(headers)
    return render_head("POST", transport._base + path, transport._host, len(body), extra)


def _events(parser: ResponseParser, sse: genwire.SseParser, data: bytes) -> list[Any]:
    parser.feed(data)
    if (
        parser.status
        and parser.status != 200
        and "event-stream" not in parser.headers.get("content-type", "")
    ):
        if parser.done:
            raise _reply_error(parser.status, bytes(parser.body))
        return []
    return sse.feed(parser.drain()) if parser.status else []


def http_texts(
    transport: Any,
    path: str,
    body: bytes,
    where: str,
    timeout_s: float,
    headers: Any,
    details: bool = False,
) -> Iterator[Any]:
    """Text chunks of one ``generate_stream`` call, as the server sends them (with
    ``details``: every response as a :class:`genwire.Chunk`, the last one flagged final)."""
    with translating(where, transport.url):
        conn = transport._connect()  # a connection of its own: closing it cancels the stream
        try:
            conn.sock.settimeout(timeout_s)
            conn.sock.sendall(_stream_head(transport, path, body, headers) + body)
            parser, sse = ResponseParser(), genwire.SseParser()
            while not parser.done:
                data = conn.sock.recv(65536)
                if not data:
                    parser.eof()
                    break
                for event in _events(parser, sse, data):
                    yield from _yield(genwire.json_chunk(event, where), details)
            if details:
                yield genwire.Chunk("", True)
        finally:
            conn.close()


def grpc_texts(
    transport: Any,
    request: Any,
    where: str,
    timeout_s: float,
    headers: Any,
    details: bool = False,
) -> Iterator[Any]:
    """Text chunks of one request over ``ModelStreamInfer``. Our side of the stream closes
    after the one request (Triton still sends every response, as tritonclient relies on);
    cancelling the call is what stops the generation."""
    metadata = transport._metadata + tuple((k.lower(), v) for k, v in (headers or {}).items())
    with translating(where, transport.url):
        call = transport._stub.ModelStreamInfer(
            iter((request,)), timeout=timeout_s, metadata=metadata or None
        )
        try:
            for response in call:
                chunk = genwire.grpc_chunk(response, where)
                yield from _yield(chunk, details)
                if chunk.final:
                    return
        finally:
            call.cancel()


async def aio_http_texts(
    client: Any,
    path: str,
    body: bytes,
    where: str,
    timeout_s: float,
    headers: Any,
    details: bool = False,
) -> AsyncIterator[Any]:
    """:func:`http_texts` on asyncio streams."""
    transport = client._transport
    endpoint = client.endpoint
    with translating(where, transport.url):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=transport._ssl,
                server_hostname=endpoint.host if transport._ssl else None,
            ),
            client.connect_timeout_s,
        )
        try:
            writer.write(_stream_head(transport, path, body, headers) + body)
            await writer.drain()
            parser, sse = ResponseParser(), genwire.SseParser()
            while not parser.done:
                data = await asyncio.wait_for(reader.read(65536), timeout_s)
                if not data:
                    parser.eof()
                    break
                for event in _events(parser, sse, data):
                    for item in _yield(genwire.json_chunk(event, where), details):
                        yield item
            if details:
                yield genwire.Chunk("", True)
        finally:
            writer.close()


async def aio_grpc_texts(
    client: Any,
    request: Any,
    where: str,
    timeout_s: float,
    headers: Any,
    details: bool = False,
) -> AsyncIterator[Any]:
    """:func:`grpc_texts` on ``grpc.aio``."""
    transport = client._transport
    if transport._stub is None:
        transport._open()
    finished = asyncio.Event()

    async def requests() -> AsyncIterator[Any]:
        yield request
        await finished.wait()

    metadata = transport._metadata + tuple((k.lower(), v) for k, v in (headers or {}).items())
    with translating(where, transport.url):
        call = transport._stub.ModelStreamInfer(
            requests(), timeout=timeout_s, metadata=metadata or None
        )
        try:
            async for response in call:
                chunk = genwire.grpc_chunk(response, where)
                for item in _yield(chunk, details):
                    yield item
                if chunk.final:
                    return
        finally:
            finished.set()
            call.cancel()
