"""vLLM-style sampling parameters: names, defaults and checks (``temperature 0`` = greedy).

Copied beside the engine into the repository (``tp_sampling.py``); pure Python, no imports
beyond the standard library. A bad value raises :class:`GenerationError`, whose message is the
error frame the client receives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# vLLM's SamplingParams fields that this engine implements (vLLM's defaults)...
SUPPORTED: dict[str, Any] = {
    "n": 1,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "seed": None,
    "max_tokens": 16,
    "min_tokens": 0,
    "stop": (),
    "stop_token_ids": (),
    "ignore_eos": False,
    "skip_special_tokens": True,
}
# ...and those it does not (a request naming one is refused; vLLM on a GPU host has them).
VLLM_ONLY = (
    "best_of", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p",
    "use_beam_search", "length_penalty", "early_stopping", "include_stop_str_in_output",
    "logprobs", "prompt_logprobs", "detokenize", "spaces_between_special_tokens",
    "truncate_prompt_tokens", "logits_processors", "lora_name",
)  # fmt: skip


# Bounds that keep every accepted request computable. Below vLLM's floor of 0.01 the logits
# divided by the temperature overflow float32 (1e-300 gives inf, then NaN probabilities);
# stop strings are searched at every step, so their number and length bound that work.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 100.0
MAX_STOP = 16
MAX_STOP_CHARS = 200


class GenerationError(ValueError):
    """A request this engine refuses; the message goes to the client as the error frame."""


@dataclass(frozen=True)
class Sampling:
    """Checked sampling parameters of one request."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    max_tokens: int = 16
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    skip_special_tokens: bool = True

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _number(key: str, value: Any, kind: type) -> Any:
    """``value`` as a finite ``kind`` (int or float); strings of numbers are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise GenerationError(f"sampling parameter {key} must be a number, got {value!r}")
    digits = value.strip().lstrip("+-") if isinstance(value, str) else ""
    if kind is int and digits.isascii() and digits.isdigit() and len(digits) < 40:
        return int(value)  # exact (a float would round a 64-bit seed)
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = math.nan
    if isinstance(number, float) and not math.isfinite(number):
        raise GenerationError(f"sampling parameter {key} must be a finite number, got {value!r}")
    if kind is int and number != int(number):
        raise GenerationError(f"sampling parameter {key} must be an integer, got {value!r}")
    return kind(number)


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise GenerationError(f"sampling parameter {key} must be true or false, got {value!r}")


def parse_sampling(params: Mapping[str, Any] | str | None) -> Sampling:
    """vLLM-style sampling parameters (a mapping, or its JSON text) -> :class:`Sampling`.

    Keys Triton adds to request parameters (``triton_*``) are ignored; unknown keys, keys only
    vLLM implements and out-of-range values raise :class:`GenerationError`, all named at once.
    """
    if isinstance(params, str):
        try:
            params = json.loads(params) if params.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise GenerationError(f"sampling_parameters is not valid JSON: {exc}") from None
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise GenerationError("sampling_parameters must be a JSON object")
    given = {k: v for k, v in params.items() if not str(k).startswith("triton_")}
    vllm_only = sorted(k for k in given if k in VLLM_ONLY)
    unknown = sorted(k for k in given if k not in SUPPORTED and k not in VLLM_ONLY)
    problems = []
    if unknown:
        problems.append(
            f"unknown sampling parameter(s) {', '.join(unknown)}; known: {', '.join(SUPPORTED)}"
        )
    if vllm_only:
        problems.append(
            f"{', '.join(vllm_only)} not supported by this engine (Triton's vLLM backend has "
            f"them); supported: {', '.join(SUPPORTED)}"
        )
    if problems:
        raise GenerationError("; ".join(problems))
    v = {**SUPPORTED, **given}
    stop = v["stop"]
    stop = (stop,) if isinstance(stop, str) else (stop or ())
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise GenerationError(f"stop must be a string or a list of non-empty strings, got {stop!r}")
    if len(stop) > MAX_STOP or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise GenerationError(
            f"stop takes at most {MAX_STOP} strings of at most {MAX_STOP_CHARS} characters each"
        )
    ids = v["stop_token_ids"] or ()
    if isinstance(ids, str):  # a JSON list sent where only scalars pass (HTTP parameters)
        try:
            ids = json.loads(ids)
        except ValueError:
            ids = None
    if not isinstance(ids, (list, tuple)):
        raise GenerationError(
            f"stop_token_ids must be a list of integers, got {v['stop_token_ids']!r}"
        )
    out = Sampling(
        temperature=_number("temperature", v["temperature"], float),
        top_p=_number("top_p", v["top_p"], float),
        top_k=_number("top_k", v["top_k"], int),
        seed=None if v["seed"] is None else _number("seed", v["seed"], int),
        max_tokens=_number("max_tokens", v["max_tokens"], int),
        min_tokens=_number("min_tokens", v["min_tokens"], int),
        stop=tuple(stop),
        stop_token_ids=tuple(sorted({_number("stop_token_ids", i, int) for i in ids})),
        ignore_eos=_flag("ignore_eos", v["ignore_eos"]),
        skip_special_tokens=_flag("skip_special_tokens", v["skip_special_tokens"]),
    )
    bad = []
    if _number("n", v["n"], int) != 1:
        bad.append("n must be 1 (one completion per request)")
    t = out.temperature
    if t != 0 and not MIN_TEMPERATURE <= t <= MAX_TEMPERATURE:
        bad.append(
            f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE:g}], got {t}"
        )
    if not 0 < out.top_p <= 1:
        bad.append(f"top_p must be in (0, 1], got {out.top_p}")
    if out.top_k == 0 or out.top_k < -1:
        bad.append(f"top_k must be -1 (all tokens) or >= 1, got {out.top_k}")
    if out.seed is not None and not -(2**63) <= out.seed < 2**64:
        bad.append(f"seed must be in [-2**63, 2**64), got {out.seed}")
    if out.max_tokens < 1:
        bad.append(f"max_tokens must be >= 1, got {out.max_tokens}")
    if not 0 <= out.min_tokens <= out.max_tokens:
        bad.append(f"min_tokens must be in 0..max_tokens ({out.max_tokens}), got {out.min_tokens}")
    if any(i < 0 for i in out.stop_token_ids):
        bad.append(f"stop_token_ids must be token ids (>= 0), got {min(out.stop_token_ids)}")
    if bad:
        raise GenerationError("; ".join(bad))
    return out
