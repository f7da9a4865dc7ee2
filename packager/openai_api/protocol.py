"""OpenAI request bodies -> the generation model's sampling parameters; response objects.

Sampling keys follow OpenAI's names (``max_tokens`` / ``max_completion_tokens``,
``temperature``, ``top_p``, ``seed``, ``stop``) plus vLLM's extensions that OpenAI clients pass
in ``extra_body`` (``top_k``, ``min_tokens``, ``ignore_eos``, ``stop_token_ids``,
``skip_special_tokens``). What the engine cannot do (``n`` > 1, penalties, ``logprobs``,
tools, JSON mode) is refused by name with a 400, never silently ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from packager.openai_api.errors import bad

NUMBERS = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
INTEGERS = ("seed", "top_k", "min_tokens")
FLAGS = ("ignore_eos", "skip_special_tokens")
UNSUPPORTED = {  # key -> the value that means "not used"
    "n": 1,
    "best_of": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": None,
    "top_logprobs": None,
    "logit_bias": None,
    "tools": None,
    "functions": None,
    "suffix": None,
}


def _get(body: dict[str, Any], key: str) -> Any:
    return body.get(key)


def model_name(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model is required: the name of a model of the repository", "model")
    return model


def sampling(body: dict[str, Any], default_max: int | None) -> dict[str, Any]:
    """The sampling parameters of a completions or chat request (checked types)."""
    for key, unused in UNSUPPORTED.items():
        value = body.get(key)
        if value not in (None, unused, False) and value != []:
            raise bad(f"{key}={value!r} is not supported by this server; leave it out", key)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise bad("response_format other than text is not supported", "response_format")
    out: dict[str, Any] = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        limit = default_max
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise bad(f"max_tokens must be a positive integer, got {limit!r}", "max_tokens")
        out["max_tokens"] = limit
    for key, (low, high) in NUMBERS.items():
        value = body.get(key)
        if value is None:
            continue
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise bad(f"{key} must be a number from {low} to {high}, got {value!r}", key)
        out[key] = float(value)
    for key in INTEGERS:
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad(f"{key} must be an integer, got {value!r}", key)
            out[key] = value
    for key in FLAGS:
        if body.get(key) is not None:
            if not isinstance(body[key], bool):
                raise bad(f"{key} must be true or false", key)
            out[key] = body[key]
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise bad("stop must be a string or a list of strings", "stop")
        out["stop"] = stops
    ids = body.get("stop_token_ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise bad("stop_token_ids must be a list of integers", "stop_token_ids")
        out["stop_token_ids"] = ids
    return out


def completion_prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise bad("prompt must be a non-empty string (one prompt per request)", "prompt")
    return prompt


def stream_options(body: dict[str, Any]) -> tuple[bool, bool]:
    """(include_usage, continuous_usage_stats) of a streamed request."""
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("stream_options must be an object", "stream_options")
    if options and not body.get("stream"):
        raise bad("stream_options is only allowed with stream: true", "stream_options")
    return bool(options.get("include_usage")), bool(options.get("continuous_usage_stats"))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def choice(chat: bool, text: str, reason: str | None, *, delta: bool, first: bool = False) -> Any:
    if not chat:
        return {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
    if not delta:
        message = {"role": "assistant", "content": text}
        return {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
    part: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
    return {"index": 0, "delta": part, "finish_reason": reason, "logprobs": None}


def envelope(chat: bool, ident: str, model: str, created: int, *, chunk: bool) -> dict[str, Any]:
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if chat else "text_completion"
    return {"id": ident, "object": kind, "created": created, "model": model}


def now() -> int:
    return int(time.time())
