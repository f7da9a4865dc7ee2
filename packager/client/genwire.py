"""Text generation on the wire (pure): requests and answers of the vLLM-backend interface.

A generative model (``build --task text-generation``, or Triton's vLLM backend) takes
``text_input`` (+ optional ``stream``, ``sampling_parameters``, ``exclude_input_in_output``)
and answers ``text_output``, one response per chunk when streaming. Over HTTP the calls are
Triton's ``POST /v2/models/NAME/generate`` (one JSON answer) and ``generate_stream``
(server-sent events); over gRPC, ``ModelStreamInfer`` (a bidirectional stream) with
``triton_enable_empty_final_response`` so that the end of a request is seen even when its last
response carries no text. Nothing here touches the network.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from packager.client.errors import error_for_reply
from packager.errors import ClientError, InferenceServerError, InvalidInput

__all__ = [
    "Chunk",
    "SseParser",
    "generate_body",
    "generate_path",
    "grpc_request",
    "grpc_text",
    "raise_frame",
]

FINAL = "triton_final_response"
# The additional outputs a request may ask for (Triton's vLLM backend names, r24.12+; the
# python engine of ``build --task text-generation`` answers them too): input return_<name>.
EXTRAS = ("finish_reason", "num_input_tokens", "num_output_tokens")


@dataclass(frozen=True)
class Chunk:
    """One response of a generation: its text and, when asked for (``details=True``), the
    finish reason ("stop" / "length", on the final response), the prompt's token count and
    the number of tokens this response adds."""

    text: str
    final: bool = False
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    new_tokens: int | None = None


def generate_path(model: str, version: str, stream: bool) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    return path + ("/generate_stream" if stream else "/generate")


def sampling_json(sampling: Mapping[str, Any]) -> str:
    """The sampling parameters as the JSON the vLLM backend reads (tuples become lists)."""
    try:
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sampling.items()})
    except TypeError as exc:
        raise InvalidInput(f"sampling parameters must be JSON values: {exc}") from None


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise InvalidInput(f"the prompt must be a str, got {type(prompt).__name__}")
    return prompt


def _options(details: bool, special_tokens: bool | None) -> dict[str, bool]:
    """The optional BOOL inputs: ``return_<extra>`` for details, ``add_special_tokens``."""
    out = {f"return_{name}": True for name in EXTRAS} if details else {}
    if special_tokens is not None:
        out["add_special_tokens"] = special_tokens
    return out


def generate_body(
    prompt: str,
    sampling: Mapping[str, Any],
    *,
    stream: bool,
    include_prompt: bool,
    details: bool = False,
    special_tokens: bool | None = None,
) -> bytes:
    """The JSON body of ``generate`` / ``generate_stream``: tensors by name. The sampling
    parameters travel as the ``sampling_parameters`` tensor (one JSON string), as over gRPC:
    Triton's generate endpoint takes only scalar request parameters, so ``stop`` and
    ``stop_token_ids`` (lists) could not travel as ``parameters``."""
    body = {
        "text_input": check_prompt(prompt),
        "stream": stream,
        "exclude_input_in_output": not include_prompt,
        **_options(details, special_tokens),
        "sampling_parameters": sampling_json(sampling),
    }
    return json.dumps(body).encode("utf-8")


def _bytes_tensor(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value


def grpc_request(
    model: str,
    version: str,
    prompt: str,
    sampling: Mapping[str, Any],
    *,
    stream: bool,
    include_prompt: bool,
    request_id: str = "",
    details: bool = False,
    special_tokens: bool | None = None,
) -> Any:
    """A ``ModelInferRequest`` for ``ModelStreamInfer``."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    raw = []
    for name, datatype, data in (
        ("text_input", "BYTES", _bytes_tensor(check_prompt(prompt).encode("utf-8"))),
        ("stream", "BOOL", b"\x01" if stream else b"\x00"),
        ("sampling_parameters", "BYTES", _bytes_tensor(sampling_json(sampling).encode())),
        ("exclude_input_in_output", "BOOL", b"\x00" if include_prompt else b"\x01"),
        *(
            (k, "BOOL", b"\x01" if v else b"\x00")
            for k, v in _options(details, special_tokens).items()
        ),
    ):
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.append(1)
        raw.append(data)
    request.raw_input_contents.extend(raw)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


def frame_error(message: str, where: str) -> ClientError:
    """The error a model sent as a response (bad request, or a failure while generating)."""
    if message.startswith("generation failed"):
        return InferenceServerError(f"{where}: {message}; see the server log")
    return error_for_reply(400, message, where, "error frame")


def raise_frame(message: str, where: str) -> None:
    raise frame_error(message, where)


def grpc_chunk(response: Any, where: str) -> Chunk:
    """One ``ModelStreamInferResponse`` as a :class:`Chunk`; an error frame raises."""
    if response.error_message:
        raise_frame(response.error_message, where)
    infer = response.infer_response
    final = bool(infer.parameters[FINAL].bool_param) if FINAL in infer.parameters else False
    values: dict[str, Any] = {}
    for i, out in enumerate(infer.outputs):
        if i >= len(infer.raw_output_contents):
            continue
        raw = infer.raw_output_contents[i]
        if out.datatype == "BYTES":
            values[out.name] = "".join(_strings(raw))
        elif out.datatype == "UINT32" and len(raw) >= 4:
            values[out.name] = struct.unpack_from("<I", raw)[0]
    return _chunk(values, final)


def grpc_text(response: Any, where: str) -> tuple[str, bool]:
    """(text, final) of one ``ModelStreamInferResponse``; an error frame raises."""
    chunk = grpc_chunk(response, where)
    return chunk.text, chunk.final


def _chunk(values: Mapping[str, Any], final: bool) -> Chunk:
    text = values.get("text_output", "")
    if isinstance(text, list):  # a batch of one, as some servers send it
        text = "".join(str(t) for t in text)
    reason = values.get("finish_reason")
    if isinstance(reason, list):
        reason = "".join(str(t) for t in reason)
    return Chunk(
        str(text),
        final,
        str(reason) if reason else None,
        _count(values.get("num_input_tokens")),
        _count(values.get("num_output_tokens")),
    )


def _count(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else int(value)


def _strings(raw: bytes) -> Iterator[str]:
    pos = 0
    while pos + 4 <= len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        yield raw[pos + 4 : pos + 4 + n].decode("utf-8", errors="replace")
        pos += 4 + n


def json_chunk(data: Any, where: str) -> Chunk:
    """One JSON answer (``generate``, or an SSE event) as a :class:`Chunk`; errors raise.
    (Triton's SSE events do not flag the last one: the stream's end does.)"""
    if not isinstance(data, dict):
        raise InferenceServerError(f"{where}: the server answered {data!r}, not a JSON object")
    if "error" in data:
        raise_frame(str(data["error"]), where)
    return _chunk(data, False)


def json_text(data: Any, where: str) -> str:
    """``text_output`` of one JSON answer (``generate``, or an SSE event); errors raise."""
    return json_chunk(data, where).text


class SseParser:
    """Server-sent events of ``generate_stream``: feed body bytes, get each event's JSON."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        events: list[Any] = []
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                return events
            block, self._buf = self._buf[:end], self._buf[end + 2 :]
            payload = b"\n".join(
                line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")
            )
            if payload:
                try:
                    events.append(json.loads(payload))
                except ValueError:
                    events.append({"error": f"unreadable event {payload[:80]!r}"})
