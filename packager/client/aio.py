"""The asyncio client: the same methods as :class:`~packager.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from packager.client.aiotransport import AioGrpcTransport, AioHttpTransport
from packager.client.base import (
    ClientBase,
    add_batch_dim,
    check_headers,
    not_ready_error,
    strip_batch_dim,
    version_text,
)
from packager.client.core import (
    ModelFacts,
    ModelInfo,
    ModelMetadata,
    SequenceFlags,
    ServerInfo,
    TLSOptions,
    concat_outputs,
    facts_from,
    split_batches,
)
from packager.client.genwire import Chunk
from packager.client.guard import check_seconds, guard_public
from packager.client.httpwire import HttpCall
from packager.errors import ClientError, ModelNotFound, ModelNotReady, ServerUnavailable

if TYPE_CHECKING:
    from packager.client.sequence import AsyncSequenceSession

__all__ = ["AsyncClient"]


@guard_public
class AsyncClient(ClientBase):
    """``async with AsyncClient("grpc://localhost:8001") as c: await c.infer(...)``.

    At most ``max_in_flight`` requests are on the wire at once; more calls wait their turn, so
    ``asyncio.gather`` over many calls is safe. Use one AsyncClient per event loop.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        protocol: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        retries: int = 2,
        retry_backoff_s: float = 0.05,
        tls: TLSOptions | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_in_flight: int = 64,
    ) -> None:
        super().__init__(
            url,
            protocol=protocol,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            headers=headers,
            retries=retries,
            retry_backoff_s=retry_backoff_s,
            tls=tls,
        )
        if max_in_flight < 1:
            raise ClientError(f"max_in_flight must be at least 1; got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._transport: Any
        if self.endpoint.protocol == "http":
            self._transport = AioHttpTransport(
                self.endpoint,
                connect_timeout_s=self.connect_timeout_s,
                headers=self.headers,
                retry=self.retry,
                max_in_flight=max_in_flight,
                tls=tls,
                ssl_context=ssl_context,
            )
        else:
            self._transport = AioGrpcTransport(
                self.endpoint,
                headers=self.headers,
                retry=self.retry,
                max_in_flight=max_in_flight,
                tls=tls,
            )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close connections; calls after this raise ServerUnavailable."""
        await self._transport.close()

    async def _send(self, call: Any, timeout_s: float | None = None, headers: Any = None) -> Any:
        return await self._transport.send(call, self._timeout(timeout_s), headers)

    # -- health and repository ---------------------------------------------------------------

    async def is_live(self) -> bool:
        """True when the server answers as live; False when it cannot be reached."""
        try:
            return bool(await self._send(self._codec.live()))
        except ServerUnavailable:
            return False

    async def is_ready(self, model: str | None = None, *, version: int | str = "") -> bool:
        """Server readiness, or a model's; False when unreachable or the model is unknown."""
        try:
            if model is None:
                return bool(await self._send(self._codec.ready()))
            return bool(await self._send(self._codec.model_ready(model, version_text(version))))
        except (ServerUnavailable, ModelNotFound, ModelNotReady):
            return False

    async def wait_until_ready(
        self,
        model: str | None = None,
        *,
        version: int | str = "",
        timeout_s: float = 30.0,
        interval_s: float = 0.1,
    ) -> None:
        """Poll until the server (or ``model``) is ready; raise a ClientError saying why not."""
        # 0 is allowed: one check, then the reason (evaluate does that for a model the server
        # does not know).
        deadline = time.monotonic() + check_seconds("timeout_s", timeout_s, zero=True)
        interval_s = check_seconds("interval_s", interval_s)
        while True:
            if await self.is_ready(model, version=version):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(interval_s, left))
        try:
            index: list[ModelInfo] | None = await self.models()
        except ClientError:
            index = None
        live = index is not None and await self.is_live()
        raise not_ready_error(self.url, model, timeout_s, index if live else None)

    async def server_metadata(self) -> ServerInfo:
        """The server's name, release version (e.g. 2.51.0) and protocol extensions."""
        return await self._send(self._codec.server_metadata())

    async def models(self) -> list[ModelInfo]:
        """The repository index: every model the server knows, with its state."""
        return list(await self._send(self._codec.index()))

    async def load_model(self, model: str, *, config: str | None = None) -> None:
        """Load (or reload) ``model``; needs explicit model control. ``config``: JSON override."""
        self.clear_cache(model)
        await self._send(self._codec.load(model, config))

    async def unload_model(self, model: str, *, unload_dependents: bool = False) -> None:
        """Unload ``model`` (returns once the server accepted; unloading finishes shortly after)."""
        self.clear_cache(model)
        await self._send(self._codec.unload(model, unload_dependents))

    # -- model facts -------------------------------------------------------------------------

    async def _model_facts(self, model: str, version: str) -> ModelFacts:
        facts = self._facts.get((model, version))
        if facts is None:
            meta, config = await asyncio.gather(
                self._send(self._codec.metadata(model, version)),
                self._send(self._codec.config(model, version)),
            )
            facts = self._facts[(model, version)] = facts_from(meta, config, version)
        return facts

    async def metadata(self, model: str, *, version: int | str = "") -> ModelMetadata:
        """Inputs, outputs, versions and platform of ``model`` (cached)."""
        return (await self._model_facts(model, version_text(version))).metadata

    async def config(self, model: str, *, version: int | str = "") -> Any:
        """The model's config as Triton's ``model_config_pb2.ModelConfig`` (a copy of the cache)."""
        cached = (await self._model_facts(model, version_text(version))).config
        out = type(cached)()
        out.CopyFrom(cached)
        return out

    async def statistics(self, model: str = "", *, version: int | str = "") -> Any:
        """Triton's ``ModelStatisticsResponse`` for ``model`` (all models when empty)."""
        return await self._send(self._codec.statistics(model, version_text(version)))

    # -- inference ---------------------------------------------------------------------------

    async def infer(
        self,
        model: str,
        inputs: Any,
        /,
        *,
        version: int | str = "",
        outputs: Sequence[str] | None = None,
        timeout_s: float | None = None,
        priority: int = 0,
        parameters: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str = "",
        sequence_id: int | str = 0,
        sequence_start: bool = False,
        sequence_end: bool = False,
    ) -> dict[str, np.ndarray]:
        """See :meth:`packager.client.Client.infer`."""
        v = version if version.__class__ is str and not version else version_text(version)
        facts = self._facts.get((model, v)) or await self._model_facts(model, v)
        seq = SequenceFlags.of(sequence_id, sequence_start, sequence_end)
        call = self._infer_call(facts, inputs, outputs, request_id, priority, parameters, seq)
        try:
            return await self._transport.send(call, self._timeout(timeout_s), headers)
        except (ModelNotReady, ModelNotFound):
            self.clear_cache(model)
            raise

    def sequence(
        self, model: str, /, *, sequence_id: int | str | None = None, **kwargs: Any
    ) -> AsyncSequenceSession:
        """A sequence of a stateful model: ``with client.sequence("vad") as s: s.infer(chunk)``.

        The first request starts it, ``s.infer(chunk, end=True)`` ends it (leaving the block
        ends it too); ``sequence_id`` defaults to a fresh id; ``kwargs`` (``version``,
        ``timeout_s``, ``priority``...) go with every request.
        """
        from packager.client.sequence import AsyncSequenceSession

        return AsyncSequenceSession(self, model, sequence_id, **kwargs)

    async def infer_sample(
        self, model: str, sample: Any, /, **kwargs: Any
    ) -> dict[str, np.ndarray]:
        """:meth:`infer` on one sample: adds the batch dim to inputs, strips it from outputs."""
        facts = await self._model_facts(model, version_text(kwargs.get("version", "")))
        out = await self.infer(model, add_batch_dim(facts, sample), **kwargs)
        return strip_batch_dim(facts, out)

    async def infer_batch(
        self,
        model: str,
        inputs: Any,
        /,
        *,
        batch_size: int | None = None,
        concurrency: int = 4,
        **kwargs: Any,
    ) -> dict[str, np.ndarray]:
        """See :meth:`packager.client.Client.infer_batch`."""
        facts = await self._model_facts(model, version_text(kwargs.get("version", "")))
        chunks, _ = split_batches(facts, inputs, batch_size)
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            async with gate:
                return await self.infer(model, chunk, **kwargs)

        return concat_outputs(await asyncio.gather(*(one(c) for c in chunks)))

    # -- text generation ---------------------------------------------------------------------

    async def generate(
        self,
        model: str,
        prompt: str,
        /,
        *,
        version: int | str = "",
        timeout_s: float | None = None,
        include_prompt: bool = False,
        headers: Mapping[str, str] | None = None,
        **sampling: Any,
    ) -> str:
        """:meth:`packager.client.Client.generate`, awaited."""
        from packager.client import genwire, streaming

        v, where = version_text(version), f"generate {model!r}"
        timeout = self._timeout(timeout_s)
        if self.endpoint.protocol == "http":
            body = genwire.generate_body(
                prompt, sampling, stream=False, include_prompt=include_prompt
            )
            path = genwire.generate_path(model, v, stream=False)
            call = HttpCall("POST", path, [body], b"Content-Type: application/json\r\n",
                            streaming.generate_parser(where), where)  # fmt: skip
            return str(await self._transport.send(call, timeout, headers))
        request = genwire.grpc_request(
            model, v, prompt, sampling, stream=False, include_prompt=include_prompt
        )
        parts = [t async for t in streaming.aio_grpc_texts(self, request, where, timeout, headers)]
        return "".join(parts)

    def stream(
        self,
        model: str,
        prompt: str,
        /,
        *,
        version: int | str = "",
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        **sampling: Any,
    ) -> AsyncIterator[str]:
        """``async for chunk in client.stream(model, prompt, max_tokens=64): ...``; leaving the
        loop early (or cancelling the task) closes the stream and stops the generation."""
        return self._open_stream(model, prompt, version, timeout_s, headers, sampling, False, None)

    def stream_chunks(
        self,
        model: str,
        prompt: str,
        /,
        *,
        version: int | str = "",
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        special_tokens: bool | None = None,
        **sampling: Any,
    ) -> AsyncIterator[Chunk]:
        """:meth:`stream` with every response as a :class:`~packager.client.genwire.Chunk`:
        its text, and the finish reason and token counts the model reports (the outputs
        ``finish_reason``, ``num_input_tokens``, ``num_output_tokens`` of Triton's vLLM backend
        and of ``build --task text-generation``); the last chunk is flagged ``final``.
        ``special_tokens=False``: the prompt is tokenized without BOS (a rendered chat prompt).
        """
        return self._open_stream(
            model, prompt, version, timeout_s, headers, sampling, True, special_tokens
        )

    def _open_stream(
        self,
        model: str,
        prompt: str,
        version: int | str,
        timeout_s: float | None,
        headers: Mapping[str, str] | None,
        sampling: Mapping[str, Any],
        details: bool,
        special_tokens: bool | None,
    ) -> AsyncIterator[Any]:
        """The one way :meth:`stream` and :meth:`stream_chunks` open a generation stream
        (``details``: every response as a Chunk with finish reason and token counts)."""
        from packager.client import genwire, streaming

        # Checked now: the stream is a generator, and a bad header found while iterating would
        # escape the method's InvalidInput boundary.
        headers = check_headers(headers)
        v, where = version_text(version), f"stream {model!r}"
        timeout = self._timeout(timeout_s)
        if self.endpoint.protocol == "http":
            body = genwire.generate_body(
                prompt, sampling, stream=True, include_prompt=False, details=details,
                special_tokens=special_tokens,
            )  # fmt: skip
            path = genwire.generate_path(model, v, stream=True)
            return streaming.aio_http_texts(self, path, body, where, timeout, headers, details)
        request = genwire.grpc_request(
            model, v, prompt, sampling, stream=True, include_prompt=False, details=details,
            special_tokens=special_tokens,
        )  # fmt: skip
        return streaming.aio_grpc_texts(self, request, where, timeout, headers, details)
