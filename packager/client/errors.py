"""The one place where transport failures become :class:`packager.errors.ClientError` subclasses.

Every call of :class:`~packager.client.Client` and :class:`~packager.client.AsyncClient` runs its
network work inside :func:`translating`, which maps:

=====================================================  ==========================================
raised below us                                        raised to the user
=====================================================  ==========================================
``ConnectionRefusedError``, reset, broken pipe, EOF,   :class:`ServerUnavailable`
DNS failure, other ``OSError``, ``ssl.SSLError``
``TimeoutError`` / ``socket.timeout``                  :class:`InferenceTimeout`
HTTP 404 / gRPC NOT_FOUND "... is not found"           :class:`ModelNotFound`
HTTP 404 / gRPC NOT_FOUND "... no available versions"  :class:`ModelNotReady` (known, not loaded)
HTTP 400 "... not ready", gRPC UNAVAILABLE from model  :class:`ModelNotReady`
"... must specify the START flag" / "correlation ID"  :class:`SequenceNotStarted`
HTTP 400 / gRPC INVALID_ARGUMENT                       :class:`InvalidInput`
gRPC UNAVAILABLE (transport), CANCELLED by shutdown    :class:`ServerUnavailable`
gRPC DEADLINE_EXCEEDED                                 :class:`InferenceTimeout`
load of a model missing from the repository            :class:`ModelNotFound`
anything else the server reports (HTTP 5xx, INTERNAL)  :class:`InferenceServerError`
an output whose bytes disagree with its shape (core)   :class:`InferenceServerError`
=====================================================  ==========================================

The HTTP transports are our own (no gevent, no tritonclient client objects: see
``docs/client.md``), so gevent's and tritonclient's exception types never reach this module.
The original exception is always chained (``raise ... from exc``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from packager.errors import (
    ClientError,
    InferenceServerError,
    InferenceTimeout,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    SequenceNotStarted,
    ServerUnavailable,
)

__all__ = ["ConnectionClosed", "ServerReply", "error_for_reply", "translating"]


class ServerReply(Exception):
    """An HTTP error status with Triton's ``{"error": ...}`` message (internal; mapped below)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


class ConnectionClosed(ConnectionError):
    """The server closed the connection before a whole response arrived (internal)."""


def _hint_not_found(message: str) -> str:
    return (
        f"{message}; check the model name (client.models() lists what the server knows) "
        "and that it is in the server's model repository (and loaded, if the server runs with "
        "explicit model control: serve --load-model NAME)"
    )


def error_for_reply(status: int, message: str, where: str, code: str = "") -> ClientError:
    """Map an HTTP status (or the equivalent gRPC code, as an HTTP status) and message.

    ``code`` names the original status in the message (default ``HTTP <status>``).
    """
    text = f"{where}: {message}" if where else message
    low = message.lower()
    if "no available versions" in low or "not ready" in low or "is not loaded" in low:
        return ModelNotReady(
            f"{text}; load it (client.load_model(...) in explicit model control mode) and wait "
            "with client.wait_until_ready(...)"
        )
    if "load / unload is not allowed" in low:
        # Triton answers 503 (and talks of polling) when model control is not explicit.
        return InferenceServerError(
            f"{text}; this server does not let clients load or unload models: start it with "
            "--model-control-mode explicit"
        )
    if status == 404 or "is not found" in low or "failed to poll from model repository" in low:
        return ModelNotFound(_hint_not_found(text))
    if "must specify the start flag" in low or "correlation id" in low:
        # The sequence batcher: no START on the first request, a sequence already ended or
        # freed after max_sequence_idle_microseconds, or no sequence id at all.
        return SequenceNotStarted(
            f"{text}; send sequence_start=True on the first request of a sequence (or use "
            "client.sequence(model)), and keep each sequence busier than the model's idle "
            "timeout"
        )
    if status == 400:
        return InvalidInput(text)
    # Triton's own request timeout (the "timeout" parameter) answers "Request timeout expired".
    if status in (408, 504) or "timeout expired" in low or "deadline exceeded" in low:
        return InferenceTimeout(f"{text}; raise timeout_s or lower the load")
    if status == 503:
        return ServerUnavailable(f"{text}; the server is shutting down or overloaded")
    return InferenceServerError(
        f"{text} ({code or f'HTTP {status}'}); see the server log for details"
    )


# gRPC status name -> the HTTP status Triton would answer with over HTTP.
_GRPC_AS_HTTP: dict[str, int] = {
    "NOT_FOUND": 404,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "RESOURCE_EXHAUSTED": 503,
}


def _from_grpc(exc: Any, where: str) -> ClientError:
    code = exc.code()
    name = getattr(code, "name", str(code))
    details = exc.details() or name
    if name == "DEADLINE_EXCEEDED":
        return InferenceTimeout(
            f"{where}: no answer within the timeout ({details}); raise timeout_s"
        )
    if name == "UNAVAILABLE":
        low = details.lower()
        if "not ready" in low or "no available versions" in low:
            return error_for_reply(400, details, where, f"gRPC {name}")
        # A TLS server drops plaintext calls and calls without a client certificate this way.
        tls = " Or does it expect TLS (grpcs://, TLSOptions with a client certificate)?"
        return ServerUnavailable(
            f"{where}: cannot reach the server ({details}); is tritonserver running and is the "
            "gRPC port right?" + (tls if "socket closed" in low or "handshake" in low else "")
        )
    if name == "CANCELLED":
        return ServerUnavailable(f"{where}: the call was cancelled ({details})")
    return error_for_reply(_GRPC_AS_HTTP.get(name, 500), details, where, f"gRPC {name}")


@contextmanager
def translating(where: str, url: str = "") -> Iterator[None]:
    """Run a network step; re-raise any failure as a :class:`ClientError` subclass.

    ``where`` names the call (``"infer 'mlp'"``) and ``url`` the server, for the message.
    """
    try:
        yield
    except ClientError:
        raise
    except ServerReply as exc:
        raise error_for_reply(exc.status, exc.message, where) from exc
    except (TimeoutError, asyncio.TimeoutError) as exc:
        raise InferenceTimeout(
            f"{where}: no answer from {url or 'the server'} within the timeout; raise timeout_s "
            "or check the server's load"
        ) from exc
    except ssl.SSLError as exc:
        raise ServerUnavailable(
            f"{where}: TLS handshake with {url} failed ({exc}); check the scheme (https/grpcs "
            "only for TLS servers) and the certificate options"
        ) from exc
    except ConnectionClosed as exc:
        raise ServerUnavailable(
            f"{where}: {url} closed the connection before answering; the server stopped or "
            "restarted"
        ) from exc
    except (ConnectionError, socket.gaierror, OSError) as exc:
        raise ServerUnavailable(
            f"{where}: cannot reach the server at {url} ({exc.__class__.__name__}: {exc}); "
            "is tritonserver running, and are the host, port and protocol right?"
        ) from exc
    except Exception as exc:
        if _is_grpc_error(exc):
            raise _from_grpc(exc, where) from exc
        raise


def _is_grpc_error(exc: BaseException) -> bool:
    # grpc is imported only by gRPC clients; an HTTP-only process never loads it.
    import sys

    grpc = sys.modules.get("grpc")
    return grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code")
