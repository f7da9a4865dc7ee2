"""Sequences of a stateful model: ``with client.sequence(model) as s: s.infer(chunk)``.

A sequence is the run of requests that share one ``sequence_id`` (Triton's correlation id): the
first carries ``sequence_start``, the last ``sequence_end``, and the server keeps the model's
state (an implicit state, or an instance slot) in between. These helpers choose the id, set the
flags, and end the sequence when the ``with`` block is left.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from typing import TYPE_CHECKING, Any

import numpy as np

from packager.errors import ClientError, SequenceNotStarted

if TYPE_CHECKING:
    from packager.client.aio import AsyncClient
    from packager.client.sync import Client

__all__ = ["AsyncSequenceSession", "SequenceSession", "new_sequence_id"]

# Ids are unique per process (a counter) and between processes (a random prefix): two clients
# that pick the same id would share one sequence on the server.
_PREFIX = secrets.randbits(31) ^ (os.getpid() & 0x7FFF_FFFF)
_COUNTER = itertools.count(1)


def new_sequence_id() -> int:
    """A fresh sequence id (a positive 63-bit integer)."""
    return (_PREFIX << 32) | (next(_COUNTER) & 0xFFFF_FFFF) or 1


class _Base:
    def __init__(self, model: str, sequence_id: int | str | None, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.sequence_id: int | str = sequence_id if sequence_id else new_sequence_id()
        self._kwargs = kwargs  # infer() keywords for every request (version, timeout_s, ...)
        self.requests = 0  # requests sent so far
        self.ended = False
        self._last: Any = None  # the last request's inputs: re-sent with END on an early exit

    def _flags(self, inputs: Any, end: bool) -> dict[str, Any]:
        if self.ended:
            raise SequenceNotStarted(
                f"sequence {self.sequence_id} of model '{self.model}' has ended; open a new "
                "one with client.sequence(model)"
            )
        self._last = inputs
        return {
            **self._kwargs,
            "sequence_id": self.sequence_id,
            "sequence_start": self.requests == 0,
            "sequence_end": end,
        }

    def _sent(self, end: bool) -> None:
        self.requests += 1
        self.ended = end

    def __repr__(self) -> str:
        state = "ended" if self.ended else f"{self.requests} request(s)"
        return f"{type(self).__name__}({self.model!r}, id={self.sequence_id}, {state})"


class SequenceSession(_Base):
    """One sequence on a :class:`~packager.client.Client` (see :meth:`Client.sequence`)."""

    def __init__(
        self, client: Client, model: str, sequence_id: int | str | None, **kwargs: Any
    ) -> None:
        super().__init__(model, sequence_id, kwargs)
        self._client = client

    def infer(self, inputs: Any, *, end: bool = False) -> dict[str, np.ndarray]:
        """The next request of the sequence (the first one starts it; ``end=True`` ends it)."""
        out = self._client.infer(self.model, inputs, **self._flags(inputs, end))
        self._sent(end)
        return out

    def end(self) -> None:
        """End the sequence now, if the last request did not: its last request is sent again
        with the END flag (the answer is dropped), so the server frees the sequence's slot at
        once instead of after its idle timeout."""
        if self.ended or self.requests == 0:
            self.ended = True
            return
        self._client.infer(self.model, self._last, **self._flags(self._last, True))
        self._sent(True)

    def __enter__(self) -> SequenceSession:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.end()
            return
        with contextlib.suppress(ClientError):  # keep the error that left the block
            self.end()


class AsyncSequenceSession(_Base):
    """One sequence on an :class:`~packager.client.AsyncClient`: ``async with``."""

    def __init__(
        self, client: AsyncClient, model: str, sequence_id: int | str | None, **kwargs: Any
    ) -> None:
        super().__init__(model, sequence_id, kwargs)
        self._client = client

    async def infer(self, inputs: Any, *, end: bool = False) -> dict[str, np.ndarray]:
        """See :meth:`SequenceSession.infer`."""
        out = await self._client.infer(self.model, inputs, **self._flags(inputs, end))
        self._sent(end)
        return out

    async def end(self) -> None:
        """See :meth:`SequenceSession.end`."""
        if self.ended or self.requests == 0:
            self.ended = True
            return
        await self._client.infer(self.model, self._last, **self._flags(self._last, True))
        self._sent(True)

    async def __aenter__(self) -> AsyncSequenceSession:
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            await self.end()
            return
        with contextlib.suppress(ClientError):
            await self.end()
