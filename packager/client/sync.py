"""The blocking client. Safe to share between threads (see :mod:`packager.client.transport`)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

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
from packager.client.transport import GrpcTransport, HttpTransport
from packager.errors import ClientError, ModelNotFound, ModelNotReady, ServerUnavailable

if TYPE_CHECKING:
    from packager.client.sequence import SequenceSession

__all__ = ["Client"]


@guard_public
class Client(ClientBase):
    """A numpy-native Triton client over HTTP (default) or gRPC.

    ``Client("localhost:8000")``, ``Client("grpc://host:8001")``, ``Client("https://...")``.
    Every failure is a :class:`packager.errors.ClientError` subclass. Model metadata and config
    are fetched once per (model, version) and cached. One client may be used by many threads.
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
        self._transport: Any
        if self.endpoint.protocol == "http":
            self._transport = HttpTransport(
                self.endpoint,
                connect_timeout_s=self.connect_timeout_s,
                headers=self.headers,
                retry=self.retry,
                tls=tls,
                ssl_context=ssl_context,
            )
        else:
            self._transport = GrpcTransport(
                self.endpoint, headers=self.headers, retry=self.retry, tls=tls
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close idle connections; calls after this raise ServerUnavailable."""
        self._transport.close()

    def _send(self, call: Any, timeout_s: float | None = None, headers: Any = None) -> Any:
        return self._transport.send(call, self._timeout(timeout_s), headers)

    # -- health and repository ---------------------------------------------------------------

    def is_live(self) -> bool:
        """True when the server answers as live; False when it cannot be reached."""
        try:
            return bool(self._send(self._codec.live()))
        except ServerUnavailable:
            return False

    def is_ready(self, model: str | None = None, *, version: int | str = "") -> bool:
        """Server readiness, or a model's; False when unreachable or the model is unknown."""
        try:
            if model is None:
                return bool(self._send(self._codec.ready()))
            return bool(self._send(self._codec.model_ready(model, version_text(version))))
        except (ServerUnavailable, ModelNotFound, ModelNotReady):
            return False

    def wait_until_ready(
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
            if self.is_ready(model, version=version):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(interval_s, left))
        try:
            index: list[ModelInfo] | None = self.models()
        except ClientError:
            index = None
        live = index is not None and self.is_live()
        raise not_ready_error(self.url, model, timeout_s, index if live else None)

    def server_metadata(self) -> ServerInfo:
        """The server's name, release version (e.g. 2.51.0) and protocol extensions."""
        return self._send(self._codec.server_metadata())

    def models(self) -> list[ModelInfo]:
        """The repository index: every model the server knows, with its state."""
        return list(self._send(self._codec.index()))

    def load_model(self, model: str, *, config: str | None = None) -> None:
        """Load (or reload) ``model``; needs explicit model control. ``config``: JSON override."""
        self.clear_cache(model)
        self._send(self._codec.load(model, config))

    def unload_model(self, model: str, *, unload_dependents: bool = False) -> None:
        """Unload ``model`` (returns once the server accepted; unloading finishes shortly after)."""
        self.clear_cache(model)
        self._send(self._codec.unload(model, unload_dependents))

    # -- model facts -------------------------------------------------------------------------

    def _model_facts(self, model: str, version: str) -> ModelFacts:
        facts = self._facts.get((model, version))
        if facts is None:
            meta = self._send(self._codec.metadata(model, version))
            config = self._send(self._codec.config(model, version))
            facts = self._facts[(model, version)] = facts_from(meta, config, version)
        return facts

    def metadata(self, model: str, *, version: int | str = "") -> ModelMetadata:
        """Inputs, outputs, versions and platform of ``model`` (cached)."""
        return self._model_facts(model, version_text(version)).metadata

    def config(self, model: str, *, version: int | str = "") -> Any:
        """The model's config as Triton's ``model_config_pb2.ModelConfig`` (a copy of the cache)."""
        cached = self._model_facts(model, version_text(version)).config
        out = type(cached)()
        out.CopyFrom(cached)
        return out

    def statistics(self, model: str = "", *, version: int | str = "") -> Any:
        """Triton's ``ModelStatisticsResponse`` for ``model`` (all models when empty)."""
        return self._send(self._codec.statistics(model, version_text(version)))

    # -- inference ---------------------------------------------------------------------------

    def infer(
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
        """Run one request; ``inputs`` is ``{name: array}`` (or one array for one-input models).

        Inputs are checked against the model before sending (names, dtype with safe casts only,
        shape and batch size). Returns ``{output name: array}``.
        """
        v = version if version.__class__ is str and not version else version_text(version)
        facts = self._facts.get((model, v)) or self._model_facts(model, v)
        seq = SequenceFlags.of(sequence_id, sequence_start, sequence_end)
        call = self._infer_call(facts, inputs, outputs, request_id, priority, parameters, seq)
        try:
            return self._transport.send(call, self._timeout(timeout_s), headers)
        except (ModelNotReady, ModelNotFound):
            self.clear_cache(model)  # it may come back with another config
            raise

    def sequence(
        self, model: str, /, *, sequence_id: int | str | None = None, **kwargs: Any
    ) -> SequenceSession:
        """A sequence of a stateful model: ``with client.sequence("vad") as s: s.infer(chunk)``.

        The first request starts it, ``s.infer(chunk, end=True)`` ends it (leaving the block
        ends it too); ``sequence_id`` defaults to a fresh id; ``kwargs`` (``version``,
        ``timeout_s``, ``priority``...) go with every request.
        """
        from packager.client.sequence import SequenceSession

        return SequenceSession(self, model, sequence_id, **kwargs)

    def infer_sample(self, model: str, sample: Any, /, **kwargs: Any) -> dict[str, np.ndarray]:
        """:meth:`infer` on one sample: adds the batch dim to inputs, strips it from outputs."""
        facts = self._model_facts(model, version_text(kwargs.get("version", "")))
        return strip_batch_dim(facts, self.infer(model, add_batch_dim(facts, sample), **kwargs))

    def infer_batch(
        self,
        model: str,
        inputs: Any,
        /,
        *,
        batch_size: int | None = None,
        concurrency: int = 4,
        **kwargs: Any,
    ) -> dict[str, np.ndarray]:
        """:meth:`infer` on any number of samples: split into requests of at most
        ``batch_size`` (default: the model's max_batch_size), ``concurrency`` in flight,
        outputs reassembled in order."""
        facts = self._model_facts(model, version_text(kwargs.get("version", "")))
        chunks, _ = split_batches(facts, inputs, batch_size)
        if concurrency <= 1 or len(chunks) == 1:
            return concat_outputs([self.infer(model, c, **kwargs) for c in chunks])
        with ThreadPoolExecutor(min(concurrency, len(chunks)), "infer_batch") as pool:
            parts = list(pool.map(lambda c: self.infer(model, c, **kwargs), chunks))
        return concat_outputs(parts)

    # -- text generation ---------------------------------------------------------------------

    def generate(
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
        """The completion of ``prompt`` by a generative model (``build --task text-generation``
        or Triton's vLLM backend). ``sampling``: vLLM's sampling parameters, e.g.
        ``temperature=0`` (greedy), ``max_tokens=64``, ``top_p``, ``seed``, ``stop=[...]``.
        A bad request raises :class:`InvalidInput` with the server's message."""
        from packager.client import genwire, streaming

        v, where = version_text(version), f"generate {model!r}"
        timeout = self._timeout(timeout_s)
        if self.endpoint.protocol == "http":
            body = genwire.generate_body(
                prompt, sampling, stream=False, include_prompt=include_prompt
            )
            path = genwire.generate_path(model, v, stream=False)
            return streaming.http_generate(self._transport, path, body, where, timeout, headers)
        request = genwire.grpc_request(
            model, v, prompt, sampling, stream=False, include_prompt=include_prompt
        )
        return "".join(streaming.grpc_texts(self._transport, request, where, timeout, headers))

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
    ) -> Iterator[str]:
        """Text chunks of the completion as the model generates them (SSE over HTTP, a
        bidirectional stream over gRPC); they concatenate to :meth:`generate`'s text. Stopping
        early (``break``, ``.close()``) closes the stream and the server stops generating."""
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
    ) -> Iterator[Chunk]:
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
    ) -> Iterator[Any]:
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
            return streaming.http_texts(
                self._transport, path, body, where, timeout, headers, details
            )
        request = genwire.grpc_request(
            model, v, prompt, sampling, stream=True, include_prompt=False, details=details,
            special_tokens=special_tokens,
        )  # fmt: skip
        return streaming.grpc_texts(self._transport, request, where, timeout, headers, details)
