"""``triton-packager bench-generate``: TTFT, inter-token latency, tokens/s and goodput of a
generative model, through Triton's streaming or an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from packager.commands._options import PROTOCOL, TIMEOUT, URL, int_list


@click.command("bench-generate")
@click.argument("model")
@URL
@PROTOCOL
@click.option(
    "--openai",
    "openai_url",
    default=None,
    metavar="BASE_URL",
    help="Measure an OpenAI-compatible endpoint instead (e.g. http://localhost:9000/v1); its "
    "key from $TRITON_PACKAGER_API_KEY.",
)
@click.option(
    "--prompts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Prompts, one per line (or JSON lines with a 'prompt' key); default: synthetic ones.",
)
@click.option(
    "--input-words",
    type=click.IntRange(1, None),
    default=32,
    show_default=True,
    help="Words per synthetic prompt.",
)
@click.option(
    "--output-tokens",
    type=click.IntRange(1, None),
    default=64,
    show_default=True,
    help="Tokens per request (max_tokens; with EOS ignored every request has exactly this many).",
)
@click.option(
    "--ignore-eos/--stop-at-eos",
    default=True,
    show_default=True,
    help="Generate --output-tokens tokens whatever the model says (vLLM's ignore_eos).",
)
@click.option(
    "--concurrency",
    default="1,8",
    show_default=True,
    callback=int_list(minimum=1),
    help="Streams in flight (closed loop), one measurement per level (comma-separated).",
)
@click.option(
    "--rate",
    "rates",
    type=float,
    multiple=True,
    help="Requests per second (open loop, Poisson arrivals) instead of --concurrency (repeatable).",
)
@click.option(
    "--requests",
    type=click.IntRange(1, None),
    default=None,
    help="Requests per level [default: 4 x concurrency, at least 8].",
)
@click.option("--ttft-limit", type=float, default=None, help="Goodput: TTFT limit (ms).")
@click.option("--itl-limit", type=float, default=None, help="Goodput: mean ITL limit (ms).")
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
def bench_generate(
    model: str,
    url: str | None,
    protocol: str | None,
    openai_url: str | None,
    prompts: Path | None,
    input_words: int,
    output_tokens: int,
    ignore_eos: bool,
    concurrency: tuple[int, ...],
    rates: tuple[float, ...],
    requests: int | None,
    ttft_limit: float | None,
    itl_limit: float | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Measure MODEL's time to first token, inter-token latency, request latency, output
    tokens/s (total and per stream), requests/s and goodput at each load level."""
    from packager.client import Client
    from packager.client import genbench as gb
    from packager.client.core import parse_url

    texts = gb.read_prompts(prompts.read_text(encoding="utf-8")) if prompts else None
    sampling: dict[str, Any] = {"temperature": 0, "max_tokens": output_tokens}
    if ignore_eos:
        sampling["ignore_eos"] = True
    client = None
    if openai_url:
        endpoint = openai_url
        key = os.environ.get("TRITON_PACKAGER_API_KEY", "").split(",")[0] or None
        target = gb.openai_target(openai_url, model, key, timeout_s)
    else:
        endpoint = str(parse_url(url, protocol))
        client = Client(endpoint, timeout_s=timeout_s)
        target = gb.triton_target(client, model)
    levels = [("rate", r) for r in rates] or [("concurrency", c) for c in concurrency]
    results = []
    try:
        for kind, value in levels:
            n = requests or max(8, 4 * int(value) if kind == "concurrency" else 8)
            pool = texts or gb.synthetic_prompts(n, input_words)
            click.echo(f"{kind} {value:g}: {n} requests ...", err=True)
            if kind == "rate":
                level = gb.run_rate(target, pool, sampling, value, n)
            else:
                level = gb.run_concurrency(target, pool, sampling, int(value), n)
            ttft = None if ttft_limit is None else ttft_limit / 1e3
            itl = None if itl_limit is None else itl_limit / 1e3
            results.append(level.summary(ttft, itl))
    finally:
        if client is not None:
            client.close()
    if as_json:
        doc = {"model": model, "endpoint": endpoint, "sampling": sampling, "levels": results}
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(_table(model, endpoint, results))
    for r in results:
        if r["errors"]:
            click.echo(f"{r['load']}: {r['errors']} errors; first: {r['first_error']}", err=True)


def _table(model: str, endpoint: str, results: list[dict[str, Any]]) -> str:
    def ms(stats: dict[str, float] | None, key: str) -> str:
        return f"{stats[key]:.1f}" if stats else "-"

    head = (f"{'load':>16}  {'TTFT p50':>8}  {'TTFT p99':>8}  {'ITL p50':>7}  {'ITL p99':>7}  "
            f"{'latency p50':>11}  {'tok/s':>8}  {'tok/s/stream':>12}  {'req/s':>6}  "
            f"{'goodput':>7}  {'errors':>6}")  # fmt: skip
    lines = [f"{model} at {endpoint} (times in ms)", head]
    for r in results:
        lines.append(
            f"{r['load']:>16}  {ms(r['ttft_ms'], 'p50'):>8}  {ms(r['ttft_ms'], 'p99'):>8}  "
            f"{ms(r['itl_ms'], 'p50'):>7}  {ms(r['itl_ms'], 'p99'):>7}  "
            f"{ms(r['latency_ms'], 'p50'):>11}  {r['output_tokens_per_s']:>8.1f}  "
            f"{r['output_tokens_per_s_per_stream'] or 0:>12.1f}  {r['requests_per_s']:>6.2f}  "
            f"{r['goodput_requests_per_s']:>7.2f}  {r['errors']:>6}"
        )
    return "\n".join(lines)
