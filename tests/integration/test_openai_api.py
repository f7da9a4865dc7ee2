"""The OpenAI-compatible service (issue 31) with the real ``openai`` client, against the
embedded server: a seeded Llama with a chat template (tests/support/gen_models.py), a seeded
GPT-2 without one, and all-MiniLM-L6-v2 built with ``--text``. Greedy chat equals transformers'
``generate`` on ``apply_chat_template(messages)``; usage equals the tokenizer's counts; a
closed stream is cancelled on the server (its metric says so); keys, 404 and 400s."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from packager.builder import build
from packager.openai_api import OpenAIService
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.integration.test_generate import metric
from tests.support import hf_models
from tests.support.gen_models import make_causal_lm

openai = pytest.importorskip("openai")  # the dev extra installs it

pytestmark = pytest.mark.integration

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "Tell stories."},
    {"role": "user", "content": "Once upon a time"},
]
KEY = "sk-test-key"
TEXTS = ["The weather is lovely today.", "He drove to the stadium."]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("openai-models")
    # A long context: the cancellation test's stream must not finish before its cancel arrives.
    llama = make_causal_lm(root / "llama", "llama", context=16384)
    tok = AutoTokenizer.from_pretrained(llama)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(llama)  # chat_template.jinja (or tokenizer_config.json) beside it
    return {"llama": llama, "gpt2": make_causal_lm(root / "gpt2", "gpt2")}


@pytest.fixture(scope="module")
def served(
    folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, start_server: StartServer
) -> Iterator[tuple[LocalServer, OpenAIService]]:

    repo = tmp_path_factory.mktemp("openai-repo")
    for name, folder in folders.items():
        build(folder, name=name, output=repo)
    build(hf_models.minilm_folder(), name="minilm", output=repo, text=True)
    server = start_server(repo)
    service = OpenAIService(
        f"grpc://{server.grpc_url}", port=0, repository=repo, api_keys=(KEY,)
    ).start()
    yield server, service
    service.stop()


@pytest.fixture(scope="module")
def client(served: tuple[LocalServer, OpenAIService]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[1].url, api_key=KEY, max_retries=0)


def reference_chat(folder: Path, max_tokens: int) -> tuple[list[int], list[int], str]:
    """transformers: the template's prompt ids, the greedy new ids (EOS dropped), their text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    if not isinstance(ids, list):  # newer transformers return a BatchEncoding
        ids = ids["input_ids"]
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False, max_new_tokens=max_tokens, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
    new = [int(t) for t in out[0, len(ids) :]]
    if new and new[-1] == tok.eos_token_id:
        new = new[:-1]
    return list(ids), new, tok.decode(new, skip_special_tokens=True)


def test_chat_equals_transformers_with_usage(
    client: openai.OpenAI, folders: dict[str, Path]
) -> None:
    prompt_ids, new, want = reference_chat(folders["llama"], 24)
    answer = client.chat.completions.create(
        model="llama", messages=MESSAGES, temperature=0, max_tokens=24
    )
    assert answer.choices[0].message.content == want
    assert answer.choices[0].message.role == "assistant"
    assert answer.usage.prompt_tokens == len(prompt_ids)
    assert answer.usage.completion_tokens == len(new)
    assert answer.usage.total_tokens == len(prompt_ids) + len(new)
    assert answer.choices[0].finish_reason == ("length" if len(new) == 24 else "stop")

    stream = client.chat.completions.create(
        model="llama", messages=MESSAGES, temperature=0, max_tokens=24, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([t for t in texts if t]) >= 2 and "".join(texts) == want
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(new)
    assert chunks[-1].usage.prompt_tokens == len(prompt_ids)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] in ("stop", "length") and not any(reasons[:-1])


def test_completions_and_finish_reasons(client: openai.OpenAI, folders: dict[str, Path]) -> None:
    from tests.support.gen_models import reference_generate

    new, want = reference_generate(folders["gpt2"], "Once upon a time", 8)
    answer = client.completions.create(
        model="gpt2", prompt="Once upon a time", temperature=0, max_tokens=8
    )
    assert answer.choices[0].text == want
    assert answer.usage.completion_tokens == len(new)
    assert answer.choices[0].finish_reason == ("length" if len(new) == 8 else "stop")
    forced = client.completions.create(
        model="gpt2", prompt="Once", max_tokens=5, extra_body={"ignore_eos": True}, seed=3
    )
    assert forced.usage.completion_tokens == 5 and forced.choices[0].finish_reason == "length"
    parts = list(
        client.completions.create(model="gpt2", prompt="Once upon a time", temperature=0,
                                  max_tokens=8, stream=True)
    )  # fmt: skip
    assert "".join(p.choices[0].text for p in parts) == want


def test_embeddings_equal_in_process_minilm(client: openai.OpenAI) -> None:
    from tests.integration.test_hf_models import reference

    answer = client.embeddings.create(model="minilm", input=TEXTS)
    got = np.array([d.embedding for d in answer.data], dtype=np.float32)
    want = reference(hf_models.minilm_folder(), TEXTS, "embedding")
    assert got.shape == want.shape == (2, 384)
    assert np.abs(got - want).max() <= 1e-5
    b64 = client.embeddings.create(model="minilm", input=TEXTS[0], encoding_format="base64")
    raw = np.frombuffer(base64.b64decode(b64.data[0].embedding), dtype=np.float32)  # type: ignore[arg-type]
    assert np.abs(raw - want[0]).max() <= 1e-5


def test_models_list(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert {"llama", "gpt2", "minilm", "minilm_model", "minilm_tokenizer"} <= names
    assert client.models.retrieve("llama").id == "llama"


def test_health_answers_probes_without_a_key(served: tuple[LocalServer, OpenAIService]) -> None:
    """What docker's HEALTHCHECK and the sidecar's readiness probe call (no Authorization)."""
    import json
    import urllib.request

    health = served[1].url.removesuffix("/v1") + "/health"
    with urllib.request.urlopen(health, timeout=30) as response:
        assert response.status == 200 and json.load(response) == {"triton": "live"}


def test_closing_a_stream_cancels_it_on_the_server(
    client: openai.OpenAI, served: tuple[LocalServer, OpenAIService]
) -> None:
    server = served[0]
    before = metric(server, "tp_generation_requests_cancelled_total", "llama")
    # 16,000 tokens: on a loaded machine 2,000 (~2.5 s idle) ended before the close reached it.
    stream = client.completions.create(
        model="llama", prompt="Once", max_tokens=16000, temperature=0, stream=True,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    for _ in zip(range(2), stream, strict=False):
        pass
    stream.close()
    deadline = time.monotonic() + 20
    while metric(server, "tp_generation_requests_cancelled_total", "llama") == before:
        assert time.monotonic() < deadline, "the server did not see the cancellation"
        time.sleep(0.1)


def test_errors_in_openai_format(
    client: openai.OpenAI, served: tuple[LocalServer, OpenAIService]
) -> None:
    wrong = openai.OpenAI(base_url=served[1].url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        wrong.models.list()
    assert auth.value.status_code == 401
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="nope", prompt="hi")
    assert missing.value.status_code == 404 and "nope" in missing.value.message
    with pytest.raises(openai.BadRequestError, match="chat template"):  # gpt2 has none
        client.chat.completions.create(model="gpt2", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="128"):  # over the context, with numbers
        client.completions.create(model="gpt2", prompt="Once", max_tokens=500)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="gpt2", prompt="Once", temperature=7)
    with pytest.raises(openai.BadRequestError, match="n=2"):
        client.completions.create(model="gpt2", prompt="Once", n=2)
    with pytest.raises(openai.BadRequestError, match="not one that computes embeddings"):
        client.embeddings.create(model="gpt2", input="hi")
    assert client.completions.create(model="gpt2", prompt="Once", max_tokens=2).choices  # serving


@pytest.mark.parametrize("through", ["triton", "openai"])
def test_bench_generate_counts_exact_tokens_and_gaps(
    served: tuple[LocalServer, OpenAIService], through: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from packager.cli import main
    from packager.client import Client
    from packager.client import genbench as gb

    server, service = served
    sampling = {"temperature": 0, "max_tokens": 7, "ignore_eos": True}
    if through == "triton":
        client = Client(f"grpc://{server.grpc_url}")
        target = gb.triton_target(client, "gpt2")
        where = ["--url", f"grpc://{server.grpc_url}"]
    else:
        target = gb.openai_target(service.url, "gpt2", KEY, 60)
        where = ["--openai", service.url]
        monkeypatch.setenv("TRITON_PACKAGER_API_KEY", KEY)
    level = gb.run_concurrency(target, gb.synthetic_prompts(4, 5), sampling, 2, 4)
    assert len(level.requests) == 4 and all(r.error is None for r in level.requests)
    for r in level.requests:
        assert r.tokens == 7 and len(r.gaps) == 6  # N tokens, N-1 inter-token gaps
        assert r.first is not None and 0 < r.first <= r.latency
        assert r.prompt_tokens > 0
    args = ["bench-generate", "gpt2", *where, "--output-tokens", "5", "--concurrency", "1,2",
            "--requests", "3", "--input-words", "4", "--ttft-limit", "60000", "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [lv["load"] for lv in doc["levels"]] == ["concurrency 1", "concurrency 2"]
    for lv in doc["levels"]:
        assert lv["requests"] == 3 and lv["errors"] == 0
        assert lv["tokens_per_request"] == [5] and lv["gaps_per_request"] == [4]
        assert lv["ttft_ms"]["p50"] <= lv["latency_ms"]["p50"]
        assert lv["output_tokens"] == 15 and lv["goodput_requests_per_s"] > 0
    if through == "triton":
        client.close()


def test_serve_command_starts_the_service_beside_triton(tmp_path: Path) -> None:
    """``triton-packager serve REPO --openai-port 0``: the banner names the service, which
    answers with the repository's models and stops with the server."""
    import os
    import re
    import signal
    import subprocess
    import sys

    repo = tmp_path / "repo"
    build(make_causal_lm(tmp_path / "tiny", "gpt2"), name="tiny", output=repo)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("TRITON_PACKAGER_API_KEY", None)
    cmd = [
        sys.executable, "-m", "packager.cli", "serve", str(repo), "--http-port", "0",
        "--grpc-port", "0", "--metrics-port", "0", "--openai-port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        banner = "".join(lines)
        match = re.search(r"OpenAI +(http://\S+/v1) \(no API key\)", banner)
        assert match, banner
        local = openai.OpenAI(base_url=match.group(1), api_key="unused", max_retries=0)
        assert [m.id for m in local.models.list()] == ["tiny"]
        assert local.completions.create(model="tiny", prompt="Once", max_tokens=3).choices
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err


def test_a_client_leaving_a_non_streamed_request_cancels_it(
    served: tuple[LocalServer, OpenAIService],
) -> None:
    import json
    import socket

    server, service = served
    before = metric(server, "tp_generation_requests_cancelled_total", "llama")
    # 16,000 tokens (the llama's context is 16,384): a short generation can finish before the
    # service notices, on a loaded machine, that its client has left.
    body = json.dumps({"model": "llama", "prompt": "Once", "max_tokens": 16000, "temperature": 0,
                       "ignore_eos": True}).encode()  # fmt: skip
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(head.encode() + body)  # and leave at once, without reading the answer
    deadline = time.monotonic() + 20
    while metric(server, "tp_generation_requests_cancelled_total", "llama") == before:
        assert time.monotonic() < deadline, "the server did not see the cancellation"
        time.sleep(0.1)
