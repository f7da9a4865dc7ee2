"""``triton-packager generate``: ask a served generative model for a completion."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from packager.commands._options import PROTOCOL, TIMEOUT, URL, VERSION


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. min_tokens=4")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw  # a bare string
    return out


@click.command("generate")
@click.argument("model")
@click.argument("prompt")
@click.option("--stream", is_flag=True, help="Print the text as it is generated.")
@click.option("--max-tokens", type=int, default=None, help="Tokens to generate [vLLM: 16].")
@click.option("--temperature", type=float, default=None, help="0 = greedy [vLLM: 1.0].")
@click.option("--top-p", type=float, default=None, help="Nucleus sampling mass, (0, 1].")
@click.option("--top-k", type=int, default=None, help="Sample among the k likeliest (-1: all).")
@click.option("--seed", type=int, default=None, help="Seed of this request's sampling.")
@click.option("--stop", multiple=True, help="Stop before this text (repeatable).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other sampling parameter (JSON value), e.g. --param min_tokens=4.",
)
@click.option("--include-prompt", is_flag=True, help="Print the prompt before the completion.")
@URL
@PROTOCOL
@VERSION
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Print text, chunks and timings as JSON.")
def generate(
    model: str,
    prompt: str,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    seed: int | None,
    stop: tuple[str, ...],
    params: tuple[str, ...],
    include_prompt: bool,
    url: str | None,
    protocol: str | None,
    version: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Send PROMPT to the generative MODEL (built with --task text-generation, or served by
    Triton's vLLM backend) and print the completion."""
    from packager.client import Client

    sampling = _params(params)
    given = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "seed": seed,
        "stop": list(stop) or None,
    }
    sampling.update({k: v for k, v in given.items() if v is not None})
    if stream and include_prompt:
        raise click.UsageError("--include-prompt does not combine with --stream")
    start = time.perf_counter()
    first: float | None = None
    chunks: list[str] = []
    with Client(url, protocol=protocol, timeout_s=timeout_s) as client:
        if stream:
            for chunk in client.stream(model, prompt, version=version, **sampling):
                if first is None:
                    first = time.perf_counter() - start
                chunks.append(chunk)
                if not as_json:
                    click.echo(chunk, nl=False)
            text = "".join(chunks)
            if not as_json:
                click.echo()
        else:
            text = client.generate(
                model, prompt, version=version, include_prompt=include_prompt, **sampling
            )
            if not as_json:
                click.echo(text)
    if as_json:
        doc: dict[str, Any] = {
            "model": model,
            "text": text,
            "seconds": round(time.perf_counter() - start, 4),
            "sampling": sampling,
        }
        if stream:
            doc["chunks"] = chunks
            doc["first_chunk_seconds"] = None if first is None else round(first, 4)
        click.echo(json.dumps(doc, indent=2))
