"""The Starlette application: routes, API keys, and the mapping onto Triton calls."""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from packager.client import AsyncClient
from packager.client.genwire import Chunk
from packager.errors import ClientError
from packager.openai_api import chat, protocol
from packager.openai_api.catalog import EMBED, GENERATE, Catalog, Model
from packager.openai_api.errors import ApiError, bad, from_client

OWNER = "triton-packager"
DISCONNECT_CHECK_S = 0.05  # how often a non-streamed request looks for its client's departure


def create_app(
    url: str, *, repository: Path | None = None, api_keys: tuple[str, ...] = ()
) -> Starlette:
    """The service for the Triton server at ``url``; ``repository``: its model repository
    folder (chat templates); ``api_keys``: accepted ``Authorization: Bearer`` keys (none: no
    check)."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with AsyncClient(url, timeout_s=600.0) as client:
            state["catalog"] = Catalog(client, repository)
            yield

    def catalog() -> Catalog:
        catalog: Catalog = state["catalog"]
        return catalog

    def route(handler: Callable[[Request, Catalog], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                _authorize(request, api_keys)
                return await handler(request, catalog())
            except ApiError as exc:
                return _error(exc)

        return endpoint

    async def health(_request: Request) -> Response:
        # No key: probes (docker HEALTHCHECK, Kubernetes readiness) call it unauthenticated.
        # An async def: Starlette runs a plain function (a lambda) in a thread and would get a
        # coroutine back instead of a response.
        return await _health(catalog())

    routes = [
        Route("/v1/models", route(_models), methods=["GET"]),
        Route("/v1/models/{model:path}", route(_model), methods=["GET"]),
        Route("/v1/completions", route(_completions), methods=["POST"]),
        Route("/v1/chat/completions", route(_chat), methods=["POST"]),
        Route("/v1/embeddings", route(_embeddings), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _authorize(request: Request, keys: tuple[str, ...]) -> None:
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(given.strip().encode(), k.encode()) for k in keys
    ):
        raise ApiError(401, "Incorrect API key provided: send Authorization: Bearer <key>")


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise bad(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    return body


async def _health(catalog: Catalog) -> Response:
    try:
        live = await catalog.client.is_live()
    except ClientError:
        live = False
    return JSONResponse({"triton": "live" if live else "down"}, status_code=200 if live else 503)


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


async def _models(_request: Request, catalog: Catalog) -> Response:
    try:
        ready = await catalog.ready()
    except ClientError as exc:
        raise from_client(exc, "") from None
    return JSONResponse({"object": "list", "data": [_model_object(m.name) for m in ready]})


async def _model(request: Request, catalog: Catalog) -> Response:
    name = request.path_params["model"]
    try:
        ready = {m.name for m in await catalog.ready()}
    except ClientError as exc:
        raise from_client(exc, name) from None
    if name not in ready:
        raise ApiError(404, f"The model {name!r} does not exist", param="model")
    return JSONResponse(_model_object(name))


# -- generation ---------------------------------------------------------------------------------


async def _completions(request: Request, catalog: Catalog) -> Response:
    body = await _body(request)
    model = await catalog.model(protocol.model_name(body), GENERATE)
    prompt = protocol.completion_prompt(body)
    sampling = protocol.sampling(body, 16)  # OpenAI's default for completions
    echo = prompt if body.get("echo") else ""
    return await _generate(request, catalog, model, prompt, sampling, body, chat=False, echo=echo)


async def _chat(request: Request, catalog: Catalog) -> Response:
    body = await _body(request)
    model = await catalog.model(protocol.model_name(body), GENERATE)
    messages = chat.messages_from(body)
    prompt = catalog.template(model).render(messages)
    special = False if model.special_tokens else None
    room = catalog.room(model, prompt, special is not False)
    sampling = protocol.sampling(body, room)
    return await _generate(
        request, catalog, model, prompt, sampling, body, chat=True, special=special
    )


async def _generate(
    request: Request,
    catalog: Catalog,
    model: Model,
    prompt: str,
    sampling: dict[str, Any],
    body: dict[str, Any],
    *,
    chat: bool,
    echo: str = "",
    special: bool | None = None,
) -> Response:
    include_usage, continuous = protocol.stream_options(body)
    client = catalog.client
    chunks: AsyncGenerator[Chunk, None]
    if model.details:
        chunks = cast(  # an async generator: aclose() ends the Triton stream
            AsyncGenerator[Chunk, None],
            client.stream_chunks(model.name, prompt, special_tokens=special, **sampling),
        )
    else:  # a server whose model reports no counts (e.g. vLLM backend before r24.12)
        chunks = _plain(client.stream(model.name, prompt, **sampling))
    ident = protocol.new_id("chatcmpl" if chat else "cmpl")
    created = protocol.now()
    try:
        first = await anext(chunks)  # a refused request is an HTTP error, not a broken stream
    except ClientError as exc:
        raise from_client(exc, model.name) from None
    except StopAsyncIteration:
        first = Chunk("", True)
    if body.get("stream"):
        events = _events(chunks, first, ident, model.name, created, chat, echo,
                         include_usage, continuous)  # fmt: skip
        return StreamingResponse(events, media_type="text/event-stream")
    counts = _Counts()
    parts = [echo]
    looked = 0.0  # look at the first chunk already
    try:
        chunk: Chunk | None = first
        while chunk is not None:
            counts.add(chunk)
            parts.append(chunk.text)
            if time.monotonic() - looked > DISCONNECT_CHECK_S:  # the client gave up: stop too
                looked = 0.0  # look at the first chunk already
                if await request.is_disconnected():
                    return Response(status_code=499)  # nobody reads it; the stream is closed
            chunk = await anext(chunks, None)
    except ClientError as exc:
        raise from_client(exc, model.name) from None
    finally:
        await chunks.aclose()
    answer = protocol.envelope(chat, ident, model.name, created, chunk=False)
    answer["choices"] = [protocol.choice(chat, "".join(parts), counts.reason, delta=False)]
    answer["usage"] = counts.usage()
    return JSONResponse(answer)


async def _plain(texts: AsyncIterator[str]) -> AsyncGenerator[Chunk, None]:
    async for text in texts:
        yield Chunk(text)
    yield Chunk("", True)


class _Counts:
    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.reason: str | None = None

    def add(self, chunk: Chunk) -> None:
        if chunk.prompt_tokens is not None:
            self.prompt = chunk.prompt_tokens
        self.completion += chunk.new_tokens or 0
        self.reason = chunk.finish_reason or self.reason
        if chunk.final and self.reason is None:
            self.reason = "stop"

    def usage(self) -> dict[str, int]:
        return protocol.usage(self.prompt, self.completion)


def _sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n"


async def _events(
    chunks: AsyncGenerator[Chunk, None],
    first: Chunk,
    ident: str,
    model: str,
    created: int,
    chat: bool,
    echo: str,
    include_usage: bool,
    continuous: bool,
) -> AsyncIterator[bytes]:
    """The SSE events of a streamed request: one per model response that carries text (the
    first chat event names the role), the finish reason on the last, then the usage event when
    asked, then ``[DONE]``. A client that goes away cancels this generator, and with it the
    Triton stream (the generation stops on the server)."""
    counts = _Counts()
    base = protocol.envelope(chat, ident, model, created, chunk=True)
    opening = True
    try:
        chunk: Chunk | None = first
        while chunk is not None:
            counts.add(chunk)
            done = chunk.final or chunk.finish_reason is not None
            text = (echo + chunk.text) if opening else chunk.text
            if text or done or (opening and chat):
                reason = counts.reason if done else None
                event = {**base, "choices": [protocol.choice(chat, text, reason, delta=True,
                                                             first=opening)]}  # fmt: skip
                if include_usage:
                    event["usage"] = counts.usage() if continuous else None
                yield _sse(event)
                opening = False
            if done:
                break
            chunk = await anext(chunks, None)
    except ClientError as exc:
        yield _sse(from_client(exc, model).body())
    finally:
        await chunks.aclose()
    if include_usage:
        yield _sse({**base, "choices": [], "usage": counts.usage()})
    yield b"data: [DONE]\n\n"


# -- embeddings ---------------------------------------------------------------------------------


async def _embeddings(request: Request, catalog: Catalog) -> Response:
    import numpy as np

    body = await _body(request)
    model = await catalog.model(protocol.model_name(body), EMBED)
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad("input must be a string or a non-empty list of strings", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad("encoding_format must be float or base64", "encoding_format")
    if body.get("dimensions") is not None:
        raise bad("dimensions is not supported: the model's size is fixed", "dimensions")
    try:
        rows = np.array(texts, dtype=np.object_).reshape(-1, 1)  # one text per row
        out = await catalog.client.infer(model.name, {model.text_input: rows})
    except ClientError as exc:
        raise from_client(exc, model.name) from None
    vectors = np.asarray(out["embedding"], dtype=np.float32).reshape(len(texts), -1)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(v.tobytes()).decode() if fmt == "base64" else v.tolist(),
        }
        for i, v in enumerate(vectors)
    ]
    return JSONResponse(
        {"object": "list", "data": data, "model": model.name, "usage": protocol.usage(0, 0)}
    )
