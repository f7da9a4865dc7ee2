"""A minimal HTTP/1.1 client codec (pure): request heads out, responses in.

Just what Triton's HTTP endpoint needs: keep-alive, ``Content-Length`` or chunked bodies, bodies
that end with the connection. Both HTTP transports (blocking sockets and asyncio) feed bytes to
:class:`ResponseParser`; the blocking one can also receive straight into the body buffer.
"""

from __future__ import annotations

from collections.abc import Mapping

from packager.client.errors import ConnectionClosed

__all__ = ["ProtocolError", "ResponseParser", "render_head", "render_headers"]

_MAX_HEAD = 64 * 1024


class ProtocolError(ConnectionError):
    """The peer sent something that is not an HTTP/1.1 response (mapped to ServerUnavailable)."""


def render_headers(headers: Mapping[str, str] | None) -> bytes:
    """``Name: value\\r\\n`` lines; refuses line breaks that would inject headers."""
    if not headers:
        return b""
    lines = []
    for k, v in headers.items():
        if any(c in f"{k}{v}" for c in "\r\n"):
            raise ValueError(f"HTTP header {k!r} contains a line break")
        lines.append(f"{k}: {v}\r\n")
    return "".join(lines).encode("latin-1")


def render_head(method: str, target: str, host: bytes, length: int, extra: bytes) -> bytes:
    """The request line and headers, ending with the blank line."""
    return b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        method.encode(),
        target.encode("latin-1"),
        host,
        length,
        extra,
    )


class ResponseParser:
    """Incremental parser of one response. ``feed()`` until ``done``; then read the fields."""

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_chunks",
        "_filled",
        "_mode",
        "body",
        "done",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._mode = 0  # 0 head, 1 fixed length, 2 chunked, 3 until close
        self._filled = 0
        self._chunk_left = -1
        self._chunks: bytearray | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: bytearray = bytearray()
        self.keep_alive = True
        self.done = False

    # -- feeding -------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; returns bytes beyond this response (none unless pipelining)."""
        if self._mode == 0:
            if self._buf:  # the head came in pieces
                self._buf += data
                data = bytes(self._buf)
                self._buf = bytearray()
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    raise ProtocolError("HTTP response head too large")
                self._buf += data
                return b""
            self._parse_head(data[:end])
            data = data[end + 4 :]
            if self.done or not data:
                return data
        if self._mode == 1:
            take = min(len(data), len(self.body) - self._filled)
            self.body[self._filled : self._filled + take] = data[:take]
            self._filled += take
            if self._filled == len(self.body):
                self.done = True
            return data[take:]
        if self._mode == 2:
            return self._feed_chunked(data)
        self.body += data  # until close
        return b""

    def eof(self) -> None:
        """The connection ended: fine for until-close bodies, an error otherwise."""
        if self._mode == 3:
            self.done = True
            self.keep_alive = False
            return
        raise ConnectionClosed("connection closed before the whole response arrived")

    def body_view(self) -> memoryview | None:
        """The unfilled part of a fixed-length body, for ``recv_into`` (else None)."""
        if self._mode == 1 and not self.done:
            return memoryview(self.body)[self._filled :]
        return None

    def advance(self, n: int) -> None:
        """Record ``n`` bytes received into :meth:`body_view`."""
        self._filled += n
        if self._filled == len(self.body):
            self.done = True

    def drain(self) -> bytes:
        """Body bytes received since the last ``drain()``: a streamed (SSE) body read as it
        arrives. Only for chunked or until-close bodies."""
        if self._mode == 2 and self._chunks is not None and not self.done:
            out = bytes(self._chunks)
            self._chunks.clear()
            return out
        out = bytes(self.body)
        self.body = bytearray()
        return out

    # -- internals -----------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        try:
            self.status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"bad HTTP status line {lines[0][:80]!r}") from None
        headers = self.headers
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        conn = headers.get("connection", "").lower()
        self.keep_alive = (conn != "close" and parts[0] != "HTTP/1.0") or conn == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = 2
            self._chunks = bytearray()
        elif "content-length" in headers:
            size = int(headers["content-length"])
            self._mode = 1
            self.body = bytearray(size)
            if size == 0:
                self.done = True
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self.done = True
        else:
            self._mode = 3
            self.keep_alive = False

    def _feed_chunked(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        while True:
            if self._chunk_left == -2:  # after the last chunk: trailers (rare), then a blank line
                if buf.startswith(b"\r\n"):
                    cut = 2
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        return b""
                    cut = end + 4
                rest = bytes(buf[cut:])
                self._finish_chunked()
                return rest
            if self._chunk_left == -1:  # expecting a size line
                end = buf.find(b"\r\n")
                if end < 0:
                    return b""
                size_text = bytes(buf[:end]).split(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                del buf[: end + 2]
                self._chunk_left = size if size else -2
                continue
            if len(buf) < self._chunk_left + 2:
                return b""
            assert self._chunks is not None
            self._chunks += buf[: self._chunk_left]
            del buf[: self._chunk_left + 2]
            self._chunk_left = -1

    def _finish_chunked(self) -> None:
        assert self._chunks is not None
        self.body = self._chunks
        self._buf = bytearray()
        self.done = True
