"""Every row of the one error mapping (packager.client.errors), one test per mapped case.

The integration tests (tests/integration/test_client_errors.py) provoke the same errors from
the real server; these pin the table itself, including cases a healthy server rarely produces.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import grpc
import pytest

from packager.client.errors import ConnectionClosed, ServerReply, error_for_reply, translating
from packager.client.http11 import ProtocolError
from packager.errors import (
    ClientError,
    InferenceServerError,
    InferenceTimeout,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PackagerError,
    ServerUnavailable,
)


class RpcError(grpc.RpcError):
    """A grpc error value as grpc raises it: ``code()`` and ``details()``."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def mapped(exc: BaseException) -> ClientError:
    with pytest.raises(ClientError) as info, translating("infer 'm'", "http://h:1"):
        raise exc
    assert info.value.__cause__ is exc  # raise ... from exc
    assert str(info.value).startswith("infer 'm'")
    return info.value


@pytest.mark.parametrize(
    ("status", "message", "expected", "hint"),
    [
        (404, "Request for unknown model: 'm' is not found", ModelNotFound, "client.models()"),
        (404, "Request for unknown model: 'm' version 3 is not found", ModelNotFound, "check"),
        # Explicit model control reports an unloaded model as unknown: say how to load it.
        (404, "Request for unknown model: 'm' is not found", ModelNotFound, "--load-model"),
        (500, "failed to load 'm', failed to poll from model repository", ModelNotFound, "check"),
        (404, "Request for unknown model: 'm' has no available versions", ModelNotReady, "load"),
        (400, "Model version not ready", ModelNotReady, "wait_until_ready"),
        (400, "unexpected inference input 'x' for model 'm'", InvalidInput, "unexpected"),
        (408, "Request timeout", InferenceTimeout, "raise timeout_s"),
        (500, "Request timeout expired", InferenceTimeout, "timeout"),
        (503, "Service Unavailable", ServerUnavailable, "shutting down"),
        (500, "echo was asked to fail", InferenceServerError, "HTTP 500"),
    ],
)
def test_http_status_and_message(status, message, expected, hint) -> None:
    err = mapped(ServerReply(status, message))
    assert type(err) is expected
    assert message in str(err) and hint in str(err)


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, "Request for unknown model: 'm' is not found", ModelNotFound),
        (grpc.StatusCode.NOT_FOUND, "'m' has no available versions", ModelNotReady),
        (grpc.StatusCode.UNAVAILABLE, "Request for model 'm' is not ready", ModelNotReady),
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", ServerUnavailable),
        (grpc.StatusCode.CANCELLED, "Channel closed", ServerUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", InferenceTimeout),
        (grpc.StatusCode.INVALID_ARGUMENT, "unexpected inference input 'x'", InvalidInput),
        (grpc.StatusCode.INTERNAL, "echo was asked to fail", InferenceServerError),
        (grpc.StatusCode.UNKNOWN, "boom", InferenceServerError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", ServerUnavailable),
    ],
)
def test_grpc_status(code: grpc.StatusCode, details: str, expected: type) -> None:
    err = mapped(RpcError(code, details))
    assert type(err) is expected and details in str(err)


def test_grpc_server_error_names_the_grpc_code() -> None:
    assert "gRPC INTERNAL" in str(mapped(RpcError(grpc.StatusCode.INTERNAL, "x")))


@pytest.mark.parametrize(
    ("exc", "expected", "words"),
    [
        (ConnectionRefusedError(111, "Connection refused"), ServerUnavailable, "is tritonserver"),
        (ConnectionResetError(104, "reset"), ServerUnavailable, "cannot reach"),
        (BrokenPipeError(32, "pipe"), ServerUnavailable, "cannot reach"),
        (ConnectionClosed("eof"), ServerUnavailable, "closed the connection"),
        (ProtocolError("not HTTP"), ServerUnavailable, "cannot reach"),
        (socket.gaierror(-2, "Name or service not known"), ServerUnavailable, "host"),
        (OSError(113, "No route to host"), ServerUnavailable, "cannot reach"),
        (TimeoutError("timed out"), InferenceTimeout, "within the timeout"),
        (asyncio.TimeoutError(), InferenceTimeout, "within the timeout"),
        (ssl.SSLError(1, "WRONG_VERSION_NUMBER"), ServerUnavailable, "TLS handshake"),
    ],
)
def test_socket_level_failures(exc: BaseException, expected: type, words: str) -> None:
    err = mapped(exc)
    assert type(err) is expected and words in str(err)


def test_our_own_errors_and_unrelated_exceptions_pass_through() -> None:
    mine = InvalidInput("already mapped")
    with pytest.raises(InvalidInput) as info, translating("x"):
        raise mine
    assert info.value is mine
    with pytest.raises(KeyError), translating("x"):
        raise KeyError("a bug is not a server error")


def test_every_client_error_is_a_packager_error() -> None:
    # The CLI prints PackagerError as one line; client errors must be among them.
    for cls in (ServerUnavailable, ModelNotFound, ModelNotReady, InvalidInput, InferenceTimeout):
        assert issubclass(cls, ClientError) and issubclass(cls, PackagerError)


def test_reply_without_code_names_http() -> None:
    assert "(HTTP 502)" in str(error_for_reply(502, "bad gateway", "w"))
