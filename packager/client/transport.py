"""Blocking transports: HTTP/1.1 over a pool of keep-alive sockets, and a gRPC channel.

Thread safety: the HTTP transport keeps idle connections in a ``collections.deque``; each call
takes one (``pop`` and ``append`` are atomic in CPython) or opens a new one, and returns it
when the answer has been read. Two threads never share a socket, so a single
:class:`~packager.client.Client` serves any number of threads, with one connection per
concurrent call. A gRPC channel is thread-safe by itself.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from packager.client.core import Endpoint, RetryPolicy, TLSOptions
from packager.client.errors import ConnectionClosed, translating
from packager.client.grpcwire import GrpcCall
from packager.client.http11 import ResponseParser, render_head, render_headers
from packager.client.httpwire import HttpCall
from packager.errors import InvalidInput

__all__ = ["GrpcTransport", "HttpTransport", "grpc_channel_args", "ssl_context_for"]

_RECV = 256 * 1024
# Failures where the request may never have reached the server: safe to retry after a pause.
RETRYABLE: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ConnectionClosed,
)


def ssl_context_for(tls: TLSOptions | None) -> ssl.SSLContext:
    """An SSL context for https:// from PEM files (system CAs when no ca_file is given)."""
    tls = tls or TLSOptions()
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(
            f"TLS files could not be loaded ({exc}); check TLSOptions paths"
        ) from exc
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise InvalidInput(f"TLS file {path} cannot be read ({exc.strerror})") from exc


def grpc_channel_args(
    endpoint: Endpoint, tls: TLSOptions | None
) -> tuple[list[tuple[str, Any]], Any]:
    """Channel options (no message size limit, as Triton allows) and TLS credentials or None."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
        # gRPC's reconnect backoff grows to 120 s while a server is down, and calls fail fast
        # until the next attempt: a client would not see a restarted server for minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if not endpoint.tls:
        return options, None
    import grpc

    tls = tls or TLSOptions()
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )
    return options, creds


def body_length(parts: Sequence[Any]) -> int:
    return sum(p.nbytes if hasattr(p, "nbytes") else len(p) for p in parts)


# Linux sockets can time out by themselves (SO_RCVTIMEO/SO_SNDTIMEO) while staying in blocking
# mode: each recv/send is then one system call. Python's own timeout mode polls before every
# call (twice the system calls, and twice the GIL hand-offs when threads share a client).
_NATIVE_TIMEOUTS = sys.platform.startswith("linux")


class _Connection:
    """One keep-alive socket, used by one call at a time."""

    __slots__ = ("native", "sock", "timeout")

    def __init__(self, sock: socket.socket, native: bool) -> None:
        self.sock = sock
        self.native = native
        self.timeout = -1.0
        if native:
            sock.settimeout(None)

    def _set_timeout(self, timeout_s: float) -> None:
        if self.native:
            sec = int(timeout_s)
            tv = struct.pack("@ll", sec, int((timeout_s - sec) * 1e6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        else:
            self.sock.settimeout(timeout_s)
        self.timeout = timeout_s

    def roundtrip(self, head: bytes, parts: Sequence[Any], timeout_s: float) -> ResponseParser:
        sock = self.sock
        if self.timeout != timeout_s:
            self._set_timeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            if self.native:
                _sendmsg_all(sock, [head, *parts])
            else:
                sock.sendall(b"".join([head, *parts]))
            parser = ResponseParser()
            while True:
                view = parser.body_view()
                if view is not None:
                    n = sock.recv_into(view)
                    if n:
                        parser.advance(n)
                    else:
                        parser.eof()
                else:
                    data = sock.recv(_RECV)
                    if data:
                        parser.feed(data)
                    else:
                        parser.eof()
                if parser.done:
                    return parser
                if time.monotonic() > deadline:  # the answer trickles in: keep the total bound
                    raise TimeoutError("timed out")
        except BlockingIOError as exc:  # SO_RCVTIMEO / SO_SNDTIMEO expired
            raise TimeoutError("timed out") from exc

    def close(self) -> None:
        self.sock.close()


class HttpTransport:
    """Sends :class:`HttpCall` objects over pooled keep-alive sockets."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout_s: float,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy,
        tls: TLSOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 64,
    ) -> None:
        self.url = str(endpoint)
        self._addr = (endpoint.host, endpoint.port)
        self._host = endpoint.address.encode("idna")
        self._server_hostname = endpoint.host
        self._base = endpoint.base_path
        self._headers = render_headers(headers)
        self._ssl = ssl_context or (ssl_context_for(tls) if endpoint.tls else None)
        self._connect_timeout = connect_timeout_s
        self._retry = retry
        self._idle: deque[_Connection] = deque()
        self._max_idle = max_idle
        self._closed = False

    def send(
        self, call: HttpCall, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send ``call``, retrying connection-level failures; return ``call.parse(...)``."""
        with translating(call.what, self.url):
            extra = self._headers + call.headers
            if headers:
                extra += render_headers(headers)
            head = render_head(
                call.method, self._base + call.path, self._host, body_length(call.body), extra
            )
            deadline = time.monotonic() + timeout_s  # retries included: one bound per call
            attempt = 0
            while True:
                try:
                    left = timeout_s if attempt == 0 else _left(deadline)  # no setsockopt
                    status, resp_headers, body = self._exchange(head, call.body, left)
                    break
                except RETRYABLE:
                    pause = self._retry.delay(attempt)
                    if attempt >= self._retry.retries or self._closed:
                        raise
                    if time.monotonic() + pause >= deadline:
                        raise
                    time.sleep(pause)
                    attempt += 1
            return call.parse(status, resp_headers, body)

    def _exchange(
        self, head: bytes, parts: Sequence[Any], timeout_s: float
    ) -> tuple[int, dict[str, str], bytearray]:
        while True:
            try:
                conn = self._idle.pop()
                reused = True
            except IndexError:
                conn = self._connect()
                reused = False
            try:
                parser = conn.roundtrip(head, parts, timeout_s)
            except RETRYABLE:
                conn.close()
                if reused:
                    # The server closed an idle keep-alive connection: try a fresh one at once.
                    continue
                raise
            except BaseException:
                conn.close()  # state unknown (timeout, interrupt): never reuse
                raise
            if parser.keep_alive and not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
            else:
                conn.close()
            return parser.status, parser.headers, parser.body

    def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectionAbortedError("the client is closed")
        sock = socket.create_connection(self._addr, timeout=self._connect_timeout)
        try:
            # Small requests must leave at once: Nagle + delayed ACK would add ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._server_hostname)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock, native=_NATIVE_TIMEOUTS and self._ssl is None)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break


def _sendmsg_all(sock: socket.socket, parts: list[Any]) -> None:
    """Scatter-gather send: the arrays' memory goes to the kernel without a join copy."""
    sent = sock.sendmsg(parts)
    total = body_length(parts)
    if sent == total:
        return
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if not views:
            return
        views[0] = views[0][sent:]
        sent = sock.sendmsg(views[:1024])


class GrpcTransport:
    """Sends :class:`GrpcCall` objects over one (thread-safe) gRPC channel."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy,
        tls: TLSOptions | None = None,
    ) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        self.url = str(endpoint)
        options, creds = grpc_channel_args(endpoint, tls)
        if creds is None:
            self._channel = grpc.insecure_channel(endpoint.address, options=options)
        else:
            self._channel = grpc.secure_channel(endpoint.address, creds, options=options)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._metadata = _metadata(headers)
        self._retry = retry
        self._unavailable = grpc.StatusCode.UNAVAILABLE

    def send(
        self, call: GrpcCall, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        metadata = self._metadata + _metadata(headers) if headers else self._metadata
        rpc = getattr(self._stub, call.rpc)
        with translating(call.what, self.url):
            deadline = time.monotonic() + timeout_s  # retries included: one bound per call
            attempt = 0
            while True:
                try:
                    left = _left(deadline)
                    response = rpc(call.request, timeout=left, metadata=metadata or None)
                    break
                except Exception as exc:
                    if not self._retryable(exc) or attempt >= self._retry.retries:
                        raise
                    pause = self._retry.delay(attempt)
                    if time.monotonic() + pause >= deadline:
                        raise
                    time.sleep(pause)
                    attempt += 1
            return call.parse(response)

    def _retryable(self, exc: Exception) -> bool:
        code = getattr(exc, "code", None)
        if code is None or code() != self._unavailable:
            return False
        # UNAVAILABLE also reports a model that is not ready: that is not a connection problem.
        return "model" not in (exc.details() or "").lower()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._channel.close()


def _left(deadline: float) -> float:
    """Seconds until ``deadline``; TimeoutError (-> InferenceTimeout) once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _metadata(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    # gRPC metadata keys must be lowercase.
    return tuple((k.lower(), v) for k, v in (headers or {}).items())
