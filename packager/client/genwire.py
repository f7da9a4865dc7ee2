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
from typing import Any
from urllib.parse import quote

from packager.client.errors import error_for_reply
from packager.errors import ClientError, InferenceServerError, InvalidInput

__all__ = [
    "SseParser",
    "generate_body",
    "generate_path",
    "grpc_request",
    "grpc_text",
    "raise_frame",
]

FINAL = "triton_final_response"


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


def generate_body(
    prompt: str, sampling: Mapping[str, Any], *, stream: bool, include_prompt: bool
) -> bytes:
    """The JSON body of ``generate`` / ``generate_stream``: tensors by name. The sampling
    parameters travel as the ``sampling_parameters`` tensor (one JSON string), as over gRPC:
    Triton's generate endpoint takes only scalar request parameters, so ``stop`` and
    ``stop_token_ids`` (lists) could not travel as ``parameters``."""
    body = {
        "text_input": check_prompt(prompt),
        "stream": stream,
        "exclude_input_in_output": not include_prompt,
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


def grpc_text(response: Any, where: str) -> tuple[str, bool]:
    """(text, final) of one ``ModelStreamInferResponse``; an error frame raises."""
    if response.error_message:
        raise_frame(response.error_message, where)
    infer = response.infer_response
    final = bool(infer.parameters[FINAL].bool_param) if FINAL in infer.parameters else False
    text = ""
    for i, out in enumerate(infer.outputs):
        if out.name == "text_output" and i < len(infer.raw_output_contents):
            text = "".join(_strings(infer.raw_output_contents[i]))
    return text, final


def _strings(raw: bytes) -> Iterator[str]:
    pos = 0
    while pos + 4 <= len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        yield raw[pos + 4 : pos + 4 + n].decode("utf-8", errors="replace")
        pos += 4 + n


def json_text(data: Any, where: str) -> str:
    """``text_output`` of one JSON answer (``generate``, or an SSE event); errors raise."""
    if not isinstance(data, dict):
        raise InferenceServerError(f"{where}: the server answered {data!r}, not a JSON object")
    if "error" in data:
        raise_frame(str(data["error"]), where)
    text = data.get("text_output", "")
    if isinstance(text, list):  # a batch of one, as some servers send it
        text = "".join(str(t) for t in text)
    return str(text)


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
