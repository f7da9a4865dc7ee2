"""Benchmark a generative deployment the way its users see it: time to first token (TTFT),
inter-token latency (ITL), request latency, output tokens/s (total and per stream), request
throughput and goodput against TTFT/ITL limits.

Two targets: Triton's own streaming (``Client.stream_chunks`` over gRPC or HTTP SSE; every
response says how many tokens it adds) or an OpenAI-compatible ``/v1/completions`` endpoint
(streamed, with ``stream_options.continuous_usage_stats`` for the running token count, as vLLM
and ``triton-packager openai`` send it). Load: closed loop at each concurrency level (each
stream sends its next request when the last one ends), or open loop at a request rate.

Tokens and gaps: a response carrying k tokens, t seconds after the previous one, counts k
gaps of t/k (the first response's extra tokens: gaps of 0), so a request of N tokens has
exactly N-1 gaps, whatever the server merged into one response.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from packager.errors import ClientError, InvalidInput

WORDS = ("the", "model", "serves", "tokens", "quick", "fox", "story", "cache", "stream", "time")


@dataclass
class Request:
    """One measured request."""

    start: float = 0.0
    first: float | None = None  # seconds from start to the first token
    end: float = 0.0
    tokens: int = 0
    prompt_tokens: int = 0
    gaps: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start

    def add(self, now: float, k: int) -> None:
        """``k`` tokens arrived at ``now`` (perf_counter)."""
        if k <= 0:
            return
        if self.first is None:
            self.first = now - self.start
            self.gaps += [0.0] * (k - 1)
        else:
            last = self.start + self.first + sum(self.gaps)
            self.gaps += [max(0.0, now - last) / k] * k
        self.tokens += k


@dataclass
class Level:
    """The results of one concurrency level (or request rate)."""

    label: str
    requests: list[Request]
    wall_s: float

    def summary(self, ttft_limit_s: float | None, itl_limit_s: float | None) -> dict[str, Any]:
        ok = [r for r in self.requests if r.error is None and r.first is not None]
        ttft = [r.first for r in ok if r.first is not None]
        gaps = [g for r in ok for g in r.gaps]
        latency = [r.latency for r in ok]
        tokens = sum(r.tokens for r in ok)
        good = [
            r
            for r in ok
            if (ttft_limit_s is None or (r.first or 0.0) <= ttft_limit_s)
            and (itl_limit_s is None or not r.gaps or statistics.mean(r.gaps) <= itl_limit_s)
        ]
        errors = [r.error for r in self.requests if r.error is not None]
        return {
            "load": self.label,
            "requests": len(ok),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "wall_s": self.wall_s,
            "output_tokens": tokens,
            "prompt_tokens_mean": _mean([r.prompt_tokens for r in ok]),
            "ttft_ms": _stats(ttft),
            "itl_ms": _stats(gaps),
            "latency_ms": _stats(latency),
            "output_tokens_per_s": tokens / self.wall_s if self.wall_s > 0 else 0.0,
            "output_tokens_per_s_per_stream": _mean(
                [r.tokens / r.latency for r in ok if r.latency > 0]
            ),
            "requests_per_s": len(ok) / self.wall_s if self.wall_s > 0 else 0.0,
            "goodput_requests_per_s": len(good) / self.wall_s if self.wall_s > 0 else 0.0,
            "tokens_per_request": sorted({r.tokens for r in ok}),
            "gaps_per_request": sorted({len(r.gaps) for r in ok}),
        }


def _mean(values: Sequence[float]) -> float | None:
    return statistics.mean(values) if values else None


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    """Mean and percentiles, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1e3

    return {"mean": statistics.mean(ordered) * 1e3, "p50": pct(50), "p90": pct(90),
            "p99": pct(99)}  # fmt: skip


# -- prompts -------------------------------------------------------------------------------------


def synthetic_prompts(count: int, words: int, seed: int = 0) -> list[str]:
    """``count`` prompts of ``words`` words each (seeded)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(1, words))) for _ in range(count)]


def read_prompts(text: str) -> list[str]:
    """Prompts of a file: JSON lines with a "prompt" key, or one prompt per line."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                prompt = json.loads(line).get("prompt")
            except (ValueError, AttributeError):
                prompt = None
            if not isinstance(prompt, str):
                raise InvalidInput(f"a JSON line without a string 'prompt': {line[:80]}")
            out.append(prompt)
        else:
            out.append(line)
    if not out:
        raise InvalidInput("the prompts file holds no prompt")
    return out


# -- targets -------------------------------------------------------------------------------------

# A target runs one request: (prompt, sampling, record) -> fills record via record.add().
Target = Callable[[str, dict[str, Any], Request], None]


def triton_target(client: Any, model: str) -> Target:
    """Triton's streaming through ``client`` (a :class:`packager.client.Client`)."""

    def run(prompt: str, sampling: dict[str, Any], record: Request) -> None:
        for chunk in client.stream_chunks(model, prompt, **sampling):
            now = time.perf_counter()
            if chunk.prompt_tokens is not None:
                record.prompt_tokens = chunk.prompt_tokens
            record.add(now, chunk.new_tokens or 0)

    return run


def openai_target(base_url: str, model: str, api_key: str | None, timeout_s: float) -> Target:
    """``POST {base_url}/completions`` with streaming and continuous usage; one keep-alive
    connection per load thread, as an OpenAI client's pool keeps them."""
    import http.client

    parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
    path = parts.path.rstrip("/") + "/completions"
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    local = threading.local()

    def run(prompt: str, sampling: dict[str, Any], record: Request) -> None:
        body = {"model": model, "prompt": prompt, "stream": True, **sampling,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = cls(parts.hostname or "localhost", parts.port, timeout=timeout_s)
        try:
            conn.request("POST", path, json.dumps(body).encode("utf-8"), headers)
            answer = conn.getresponse()
            if answer.status != 200:
                raise ClientError(f"HTTP {answer.status}: {answer.read()[:300].decode()}")
            seen = 0
            for event in _sse_lines(answer):
                if event == "[DONE]":
                    break
                data = json.loads(event)
                if "error" in data:
                    raise ClientError(str(data["error"].get("message", data["error"])))
                usage = data.get("usage") or {}
                record.prompt_tokens = usage.get("prompt_tokens", record.prompt_tokens)
                total = usage.get("completion_tokens", seen)
                record.add(time.perf_counter(), total - seen)
                seen = total
            answer.read()  # the end of the chunked body: the connection is reusable
        except BaseException:
            conn.close()
            local.conn = None
            raise

    return run


def _sse_lines(answer: Any) -> Iterator[str]:
    for raw in answer:
        line = raw.decode("utf-8").strip()
        if line.startswith("data:"):
            yield line[5:].strip()


# -- load ----------------------------------------------------------------------------------------


def _one(target: Target, prompt: str, sampling: dict[str, Any]) -> Request:
    record = Request(start=time.perf_counter())
    try:
        target(prompt, sampling, record)
    except (ClientError, OSError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.end = time.perf_counter()
    return record


def run_concurrency(
    target: Target, prompts: Sequence[str], sampling: dict[str, Any], concurrency: int,
    requests: int,
) -> Level:  # fmt: skip
    """Closed loop: ``concurrency`` streams, ``requests`` requests in all."""
    lock = threading.Lock()
    results: list[Request] = []
    issued = [0]

    def worker() -> None:
        while True:
            with lock:
                if issued[0] >= requests:
                    return
                i = issued[0]
                issued[0] += 1
            record = _one(target, prompts[i % len(prompts)], sampling)
            with lock:
                results.append(record)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Level(f"concurrency {concurrency}", results, time.perf_counter() - start)


def run_rate(
    target: Target, prompts: Sequence[str], sampling: dict[str, Any], rate: float,
    requests: int, seed: int = 0,
) -> Level:  # fmt: skip
    """Open loop: ``requests`` requests sent at ``rate`` per second (Poisson arrivals)."""
    rng = random.Random(seed)
    results: list[Request] = []
    lock = threading.Lock()
    threads = []

    def fire(i: int) -> None:
        record = _one(target, prompts[i % len(prompts)], sampling)
        with lock:
            results.append(record)

    start = time.perf_counter()
    due = start
    for i in range(requests):
        time.sleep(max(0.0, due - time.perf_counter()))
        thread = threading.Thread(target=fire, args=(i,), daemon=True)
        thread.start()
        threads.append(thread)
        due += rng.expovariate(rate)
    for t in threads:
        t.join()
    return Level(f"rate {rate:g}/s", results, time.perf_counter() - start)
