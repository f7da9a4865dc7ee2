"""Errors in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}`` and its
status codes (400 bad request, 401 no or wrong key, 404 unknown model, 5xx server side)."""

from __future__ import annotations

from typing import Any

from packager.errors import (
    ClientError,
    InferenceTimeout,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerUnavailable,
)

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    500: "internal_error",
    503: "service_unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """A request the service answers with an error (status and OpenAI's error object)."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        code = {404: "model_not_found", 401: "invalid_api_key"}.get(self.status)
        return {
            "error": {
                "message": self.message,
                "type": TYPES.get(self.status, "internal_error"),
                "param": self.param,
                "code": code,
            }
        }


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def from_client(exc: ClientError, model: str) -> ApiError:
    """A failure of the Triton call, as the status an OpenAI client expects."""
    if isinstance(exc, ModelNotFound):
        return ApiError(404, f"The model {model!r} does not exist", param="model")
    if isinstance(exc, InvalidInput):
        return ApiError(400, _server_message(exc, model))
    if isinstance(exc, InferenceTimeout):
        return ApiError(504, str(exc))
    if isinstance(exc, (ServerUnavailable, ModelNotReady)):
        return ApiError(503, str(exc))
    return ApiError(500, str(exc))


def _server_message(exc: ClientError, model: str) -> str:
    """The model's own words (e.g. the context numbers), without the client's prefix."""
    text = str(exc)
    for call in ("stream", "generate", "infer"):
        prefix = f"{call} {model!r}: "
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
