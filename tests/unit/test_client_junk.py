"""Random junk at every public method of Client and AsyncClient: whatever comes back is a
ClientError subclass, never a bare TypeError / ValueError / UnicodeError (a property test).

The clients point at a port where nothing listens, so a call whose arguments pass the checks
ends in ServerUnavailable (a ClientError too); what is tested is the boundary itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.client import AsyncClient, Client
from packager.errors import ClientError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = _closed_port()
URLS = {"http": f"127.0.0.1:{PORT}", "grpc": f"grpc://127.0.0.1:{PORT}"}

text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)  # surrogates too
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), text, st.binary(max_size=8)
)
junk = st.one_of(
    scalar,
    st.lists(scalar, max_size=3),
    st.dictionaries(text, scalar, max_size=3),
    st.dictionaries(st.integers(), scalar, max_size=2),
    st.builds(object),
    st.builds(lambda n: np.arange(n, dtype=np.float32), st.integers(0, 4)),
    st.sampled_from([float("nan"), float("inf"), -1, 0, 2**70, "", "\ud800", "m\x00"]),
)


# Time parameters get junk or short valid values: a valid hour would only make the test wait.
def _long(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and value == value and 0.2 < value < float("inf")


seconds = st.one_of(junk.filter(lambda v: not _long(v)), st.floats(0.01, 0.2))


def public_methods(cls: type) -> list[str]:
    return sorted(
        n
        for n in dir(cls)
        if not n.startswith("_") and callable(inspect.getattr_static(cls, n, None))
    )


@st.composite
def arguments(draw: Any, fn: Any) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(inspect.signature(fn).parameters.values())[1:]:  # after self
        if p.kind is p.VAR_KEYWORD:
            kwargs.update(draw(st.dictionaries(st.sampled_from(["temperature", "x", "stop",
                "version", "timeout_s", "headers"]), junk, max_size=2)))  # fmt: skip
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        required = p.default is p.empty
        timed = "timeout" in p.name or "interval" in p.name
        if not required and not timed and draw(st.booleans()):
            continue  # leave the default (not for times: wait_until_ready waits 30 s)
        value = draw(seconds if timed else junk)
        if p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and required):
            args.append(value)
        else:
            kwargs[p.name] = value
    return args, kwargs


def _call_sync(client: Client, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    out = getattr(client, name)(*args, **kwargs)
    if hasattr(out, "__next__"):
        for _ in range(3):
            next(out, None)
    elif hasattr(out, "__enter__"):
        with out:
            pass


async def _call_async(
    client: AsyncClient, name: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    out = getattr(client, name)(*args, **kwargs)
    if inspect.isawaitable(out):
        out = await out
    if hasattr(out, "__anext__"):
        for _ in range(3):
            try:
                await out.__anext__()
            except StopAsyncIteration:
                break
    elif hasattr(out, "__aenter__"):
        async with out:
            pass


SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", public_methods(Client))
def test_sync_client_raises_only_client_errors(protocol: str, name: str) -> None:
    @SETTINGS
    @given(arguments(getattr(Client, name)))
    def check(call: tuple[list[Any], dict[str, Any]]) -> None:
        client = Client(URLS[protocol], retries=0, timeout_s=0.5, connect_timeout_s=0.5)
        with client, contextlib.suppress(ClientError):
            _call_sync(client, name, *call)

    check()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", public_methods(AsyncClient))
def test_async_client_raises_only_client_errors(protocol: str, name: str) -> None:
    @SETTINGS
    @given(arguments(getattr(AsyncClient, name)))
    def check(call: tuple[list[Any], dict[str, Any]]) -> None:
        async def run() -> None:
            async with AsyncClient(
                URLS[protocol], retries=0, timeout_s=0.5, connect_timeout_s=0.5
            ) as client:
                with contextlib.suppress(ClientError):
                    await _call_async(client, name, *call)

        asyncio.run(run())

    check()


@SETTINGS
@given(arguments(Client.__init__))
def test_constructors_raise_only_client_errors(call: tuple[list[Any], dict[str, Any]]) -> None:
    for cls in (Client, AsyncClient):
        with contextlib.suppress(ClientError):
            cls(*call[0], **call[1])
