"""Generative models on the embedded server (issue 21), against transformers in this process.

Two seeded causal LMs from standard configs (Llama and GPT-2 architectures, tiny sizes, real
trained tokenizers: tests/support/gen_models.py) are built with ``--task text-generation`` and
served once. Greedy output must equal ``transformers`` ``generate(do_sample=False)`` over the
``generate`` endpoint, ``generate_stream`` (SSE), gRPC streaming, ``Client.generate`` and
``AsyncClient``; streams arrive in several chunks that concatenate to the same text; concurrent
streams are batched per step; bad requests get one error frame while the server keeps serving;
a cancelled stream stops generating on the server (its counters on the metrics port say so).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from packager.builder import build
from packager.client import AsyncClient, Client, InvalidInput
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support.gen_models import PROMPTS, make_causal_lm, reference_generate

pytestmark = pytest.mark.integration

ARCHS = ("llama", "gpt2")
MAX_TOKENS = 24
GREEDY = {"temperature": 0, "max_tokens": MAX_TOKENS}
CONTEXT = {"llama": 16384, "gpt2": 128}
# 16,000 tokens: this tiny llama makes 2,000 in about 2.5 s on an idle core, so a stream of 2,000
# finished before a starved client's cancel reached the server (seen with both cores busy).
LONG = {"temperature": 0, "max_tokens": 16000, "ignore_eos": True}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("causal")
    # Llama's context is long: a stream of LONG tokens cannot end before a client that cancels
    # it after two chunks is seen, however busy the machine (GPT-2 keeps 128 for BAD below).
    return {arch: make_causal_lm(root / arch, arch, context=CONTEXT[arch]) for arch in ARCHS}


@pytest.fixture(scope="module")
def expected(folders: dict[str, Path]) -> dict[tuple[str, str], str]:
    """transformers' greedy text for every (arch, prompt)."""
    return {
        (arch, prompt): reference_generate(folders[arch], prompt, MAX_TOKENS)[1]
        for arch in ARCHS
        for prompt in PROMPTS
    }


@pytest.fixture(scope="module")
def server(
    folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, start_server: StartServer
) -> LocalServer:
    repo = tmp_path_factory.mktemp("gen-repo")
    for arch in ARCHS:
        build(folders[arch], name=arch, output=repo)  # task from config.json's architectures
    return start_server(repo)


def post(server: LocalServer, path: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{server.http_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sse_texts(body: str) -> list[str]:
    events = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
    return [e["text_output"] for e in events]


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_endpoint_equals_transformers(
    server: LocalServer, expected: dict[tuple[str, str], str], arch: str
) -> None:
    for prompt in PROMPTS:
        want = expected[(arch, prompt)]
        status, body = post(
            server, f"/v2/models/{arch}/generate", {"text_input": prompt, "parameters": GREEDY}
        )
        assert status == 200, body
        assert json.loads(body)["text_output"] == prompt + want  # vLLM's default: prompt first
        status, body = post(
            server,
            f"/v2/models/{arch}/generate_stream",
            {"text_input": prompt, "stream": True, "parameters": GREEDY},
        )
        chunks = sse_texts(body)
        assert status == 200 and len(chunks) >= 2
        assert "".join(chunks) == want


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_client_generate_and_stream_equal_transformers(
    server: LocalServer, expected: dict[tuple[str, str], str], arch: str, scheme: str
) -> None:
    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"
    with Client(url) as client:
        for prompt in PROMPTS:
            want = expected[(arch, prompt)]
            assert client.generate(arch, prompt, **GREEDY) == want
            assert client.generate(arch, prompt, include_prompt=True, **GREEDY) == prompt + want
            chunks = list(client.stream(arch, prompt, **GREEDY))
            assert len(chunks) >= 2
            assert "".join(chunks) == want


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_async_client(
    server: LocalServer, expected: dict[tuple[str, str], str], scheme: str
) -> None:
    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"

    async def run() -> tuple[list[str], list[list[str]]]:
        async with AsyncClient(url) as client:
            texts = await asyncio.gather(*(client.generate("llama", p, **GREEDY) for p in PROMPTS))

            async def chunks(prompt: str) -> list[str]:
                return [c async for c in client.stream("gpt2", prompt, **GREEDY)]

            streams = await asyncio.gather(*(chunks(p) for p in PROMPTS))
            return list(texts), list(streams)

    texts, streams = asyncio.run(run())
    assert texts == [expected[("llama", p)] for p in PROMPTS]
    assert ["".join(s) for s in streams] == [expected[("gpt2", p)] for p in PROMPTS]
    assert all(len(s) >= 2 for s in streams)


def test_concurrent_streams_are_batched_per_step(
    server: LocalServer, expected: dict[tuple[str, str], str]
) -> None:
    """8 streams at once: the same text as alone, and the server advanced several of them in
    one forward pass. Measured by what the server did (its step and row counters: rows are the
    sum of every step's batch width), not by time or step counts, which a busy machine changes."""
    params = {"temperature": 0, "max_tokens": 96, "ignore_eos": True}
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(8)]
    with Client(f"grpc://{server.grpc_url}") as client:
        alone = client.generate("llama", prompts[0], **params)
        results: list[str] = [""] * len(prompts)
        ready = threading.Barrier(len(prompts))

        def run(i: int) -> None:
            ready.wait()
            results[i] = "".join(client.stream("llama", prompts[i], **params))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        before = {k: metric(server, k, "llama") for k in BATCH_METRICS}
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = {k: metric(server, k, "llama") for k in BATCH_METRICS}
    assert results[0] == alone
    short = {p: client_text for p, client_text in zip(prompts, results, strict=True)}
    for prompt in PROMPTS:  # the first MAX_TOKENS tokens agree with transformers too
        assert short[prompt].startswith(expected[("llama", prompt)])
    steps, rows, tokens = (after[k] - before[k] for k in BATCH_METRICS)
    # Each stream's first token comes from its prefill, the other 95 from decoding steps.
    assert tokens == 8 * 96 and rows == 8 * 95
    # Batched: fewer forward passes than sequence-steps (one at a time, steps == rows).
    assert steps < rows, f"{steps} decoding steps advanced {rows} sequence-steps"


BATCH_METRICS = (
    "tp_generation_steps_total",
    "tp_generation_step_rows_total",
    "tp_generation_tokens_total",
)


BAD = [
    ("", {"max_tokens": 4}, "text_input is empty"),
    ("hello", {"max_tokens": 0}, "max_tokens must be >= 1"),
    ("hello", {"max_tokens": 1000}, "exceed the model's context of 128"),
    ("hello", {"temprature": 0.5}, "unknown sampling parameter(s) temprature"),
    ("hello", {"presence_penalty": 0.5}, "not supported by this engine"),
    ("hello " * 200, {"max_tokens": 4}, "the model's context is 128"),
    ("hello", {"top_p": 0}, "top_p must be in (0, 1]"),
]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_bad_requests_get_one_error_and_the_server_keeps_serving(
    server: LocalServer, expected: dict[tuple[str, str], str], scheme: str
) -> None:
    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"
    good = expected[("gpt2", PROMPTS[0])]
    with Client(url) as client:
        background: list[str] = []
        worker = threading.Thread(
            target=lambda: background.append("".join(client.stream("gpt2", PROMPTS[0], **GREEDY)))
        )
        worker.start()  # a healthy stream runs while the bad ones arrive
        for prompt, params, message in BAD:
            for call in (client.generate, lambda *a, **k: "".join(client.stream(*a, **k))):
                with pytest.raises(InvalidInput) as info:
                    call("gpt2", prompt, **params)
                assert message in str(info.value)
        worker.join()
        assert background == [good]
        assert client.generate("gpt2", PROMPTS[0], **GREEDY) == good
    status, body = post(
        server,
        "/v2/models/gpt2/generate_stream",
        {"text_input": "", "stream": True, "parameters": {}},
    )
    events = [json.loads(x[5:]) for x in body.splitlines() if x.startswith("data:")]
    assert status == 400 and len(events) == 1 and "text_input is empty" in events[0]["error"]


def poisons(vocab: int) -> list[tuple[dict[str, Any], str]]:
    """Requests that used to fail inside the shared decoding loop (ending every stream), each
    with the message it now gets at the door."""
    return [
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"temperature": "nan"}, "temperature must be a finite number"),
        ({"temperature": 1e-300}, "temperature must be 0 (greedy) or in [0.01, 100]"),
        ({"min_tokens": 4, "stop_token_ids": list(range(vocab))}, "min_tokens 4 cannot be met"),
        ({"stop_token_ids": [10**9]}, f"this model's token ids are 0..{vocab - 1}"),
        ({"stop_token_ids": [-3]}, "stop_token_ids must be token ids (>= 0)"),
        ({"top_k": "inf"}, "top_k must be a finite number"),
        ({"seed": 2**70}, "seed must be in [-2**63, 2**64)"),
        ({"max_tokens": "1e400"}, "max_tokens must be a finite number"),
    ]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_poisonous_requests_harm_no_healthy_stream(
    server: LocalServer,
    folders: dict[str, Path],
    expected: dict[tuple[str, str], str],
    scheme: str,
) -> None:
    """8 healthy greedy streams run while each poisonous request arrives: the 8 end with their
    greedy reference text, every poisonous request gets its own clear error."""
    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"
    vocab = json.loads((folders["llama"] / "config.json").read_text())["vocab_size"]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(8)]
    with Client(url) as client:
        results: list[str | BaseException] = [""] * len(prompts)
        started = threading.Barrier(len(prompts) + 1)

        def healthy(i: int) -> None:
            started.wait()
            try:
                results[i] = "".join(client.stream("llama", prompts[i], **GREEDY))
            except BaseException as exc:  # the assertion below names it
                results[i] = exc

        threads = [threading.Thread(target=healthy, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        started.wait()
        for params, message in poisons(vocab):
            for call in (client.generate, lambda *a, **k: "".join(client.stream(*a, **k))):
                with pytest.raises(InvalidInput) as info:
                    call("llama", prompts[0], **{**GREEDY, **params})
                assert message in str(info.value), params
        for t in threads:
            t.join()
    assert results == [expected[("llama", p)] for p in prompts]
    assert metric(server, "tp_generation_requests_failed_total", "llama") == 0


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_stop_and_stop_token_ids_work_over_both_protocols(
    server: LocalServer, folders: dict[str, Path], scheme: str
) -> None:
    """Lists as sampling parameters: Triton's HTTP generate endpoint takes scalar parameters
    only, so the client sends them in the sampling_parameters tensor (JSON), as over gRPC."""
    from transformers import AutoTokenizer

    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"
    prompt = PROMPTS[2]
    with Client(url) as client:
        full = client.generate("gpt2", prompt, **GREEDY)
        stop = full[8:11]
        cut = full[: full.index(stop)]
        assert client.generate("gpt2", prompt, stop=[stop], **GREEDY) == cut
        assert "".join(client.stream("gpt2", prompt, stop=["@@@", stop], **GREEDY)) == cut
        few = client.generate("gpt2", prompt, temperature=0, max_tokens=3)
        tokenizer = AutoTokenizer.from_pretrained(folders["gpt2"], local_files_only=True)
        first = tokenizer(few, add_special_tokens=False)["input_ids"][0]
        assert client.generate("gpt2", prompt, stop_token_ids=[first], **GREEDY) == ""


def metric(server: LocalServer, name: str, model: str) -> float:
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {model} not in the metrics")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_cancelled_stream_stops_generation_on_the_server(server: LocalServer, scheme: str) -> None:
    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"
    before = metric(server, "tp_generation_requests_cancelled_total", "llama")
    tokens_before = metric(server, "tp_generation_tokens_total", "llama")
    with Client(url) as client:
        stream = client.stream("llama", "Once", **LONG)
        got = [next(stream), next(stream)]
        stream.close()  # what a `break` out of the for loop does
        assert all(got)
        deadline = time.monotonic() + 120  # a bound on hanging, not a figure
        while metric(server, "tp_generation_requests_cancelled_total", "llama") == before:
            assert time.monotonic() < deadline, "the server did not see the cancellation"
            time.sleep(0.1)
        settled = metric(server, "tp_generation_tokens_total", "llama")
        time.sleep(0.5)
        assert metric(server, "tp_generation_tokens_total", "llama") == settled  # stopped
        assert settled - tokens_before < LONG["max_tokens"]  # it did not run to max_tokens
        assert client.generate("llama", PROMPTS[0], temperature=0, max_tokens=4)  # still serving


def test_cli_generate(server: LocalServer, expected: dict[tuple[str, str], str]) -> None:
    from click.testing import CliRunner

    from packager.cli import main

    prompt, want = PROMPTS[1], expected[("gpt2", PROMPTS[1])]
    base = ["generate", "gpt2", prompt, "--temperature", "0", "--max-tokens", str(MAX_TOKENS)]
    result = CliRunner().invoke(main, [*base, "--url", server.http_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["text"] == want
    grpc = ["--url", f"grpc://{server.grpc_url}", "--stream", "--json"]
    result = CliRunner().invoke(main, [*base, *grpc])
    doc = json.loads(result.output)
    assert doc["text"] == want and len(doc["chunks"]) >= 2 and doc["first_chunk_seconds"] > 0
    result = CliRunner().invoke(main, [*base, "--url", server.http_url, "--stream"])
    assert result.output == want + "\n"
    stop = want[5:8]
    result = CliRunner().invoke(main, [*base, "--url", server.http_url, "--stop", stop, "--json"])
    assert result.exit_code == 0, result.output  # lists travel over HTTP too
    assert json.loads(result.output)["text"] == want[: want.index(stop)]
    result = CliRunner().invoke(main, [*base, "--url", server.http_url, "--param", "bogus=1"])
    assert result.exit_code == 1 and "unknown sampling parameter(s) bogus" in result.output


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_async_stream_left_early_is_cancelled(server: LocalServer, scheme: str) -> None:
    url = server.http_url if scheme == "http" else f"grpc://{server.grpc_url}"
    before = metric(server, "tp_generation_requests_cancelled_total", "llama")

    async def run() -> list[str]:
        got = []
        async with AsyncClient(url) as client:
            stream = client.stream("llama", "Once", **LONG)
            async for chunk in stream:
                got.append(chunk)
                if len(got) == 2:
                    break
            await stream.aclose()  # type: ignore[attr-defined]
        return got

    assert len(asyncio.run(run())) == 2
    deadline = time.monotonic() + 120  # a bound on hanging, not a figure
    while metric(server, "tp_generation_requests_cancelled_total", "llama") == before:
        assert time.monotonic() < deadline, "the server did not see the cancellation"
        time.sleep(0.1)
