"""The generation engine in-process (token for token against transformers' generate), its
sampling parameters, the wire helpers, and the repositories ``--task text-generation`` and
``--backend vllm`` write (issue 21). The served runs are in tests/integration/test_generate.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from packager.builder import build
from packager.client.genwire import SseParser, grpc_request, grpc_text, json_text
from packager.errors import InvalidInput, PackagerError, SpecError
from packager.generate.engine import Engine, QueueSink
from packager.generate.sampling import SUPPORTED, GenerationError, Sampling, parse_sampling
from packager.generate.vllm import check_args, known_args
from packager.releases import NGC_VLLM_IMAGE
from packager.render import parse_config, spec_from_config
from tests.support.gen_models import PROMPTS, make_causal_lm, reference_generate


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("causal")
    return {arch: make_causal_lm(root / arch, arch) for arch in ("llama", "gpt2")}


@pytest.fixture(scope="module")
def engines(folders: dict[str, Path]) -> dict[str, Engine]:
    out = {arch: Engine.load(str(f)).start() for arch, f in folders.items()}
    yield out  # type: ignore[misc]
    for engine in out.values():
        engine.stop()


def run(engine: Engine, prompt: str, stream: bool = True, **params: object) -> QueueSink:
    sink = QueueSink()
    engine.submit(prompt, parse_sampling(params), sink, stream=stream, prepend=False)
    return sink


# -- sampling parameters ---------------------------------------------------------------------


def test_defaults_are_vllms() -> None:
    s = parse_sampling({})
    assert (s.temperature, s.top_p, s.top_k, s.max_tokens, s.min_tokens) == (1.0, 1.0, -1, 16, 0)
    assert parse_sampling('{"temperature": 0, "max_tokens": "8"}').greedy
    assert parse_sampling({"stop": "x", "triton_enable_empty_final_response": True}).stop == ("x",)
    assert parse_sampling({"stop_token_ids": "[3, 1, 3]"}).stop_token_ids == (1, 3)
    assert parse_sampling({"seed": str(2**64 - 1)}).seed == 2**64 - 1  # exact, not a float


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temprature": 1}, "unknown sampling parameter(s) temprature"),
        ({"presence_penalty": 1}, "presence_penalty not supported by this engine"),
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"max_tokens": 2.5}, "max_tokens must be an integer"),
        ({"temperature": -1}, "temperature must be 0 (greedy) or in [0.01, 100]"),
        ({"temperature": 1e-300}, "temperature must be 0 (greedy) or in [0.01, 100]"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"temperature": "nan"}, "temperature must be a finite number"),
        ('{"temperature": NaN}', "temperature must be a finite number"),
        ({"top_p": float("nan")}, "top_p must be a finite number"),
        ({"top_k": "inf"}, "top_k must be a finite number"),
        ({"max_tokens": 1e400}, "max_tokens must be a finite number"),
        ({"max_tokens": "²"}, "max_tokens must be a finite number"),
        ({"seed": 2**70}, "seed must be in [-2**63, 2**64)"),
        ({"seed": "9" * 5000}, "seed must be a finite number"),
        ({"stop_token_ids": [-1]}, "stop_token_ids must be token ids (>= 0)"),
        ({"stop_token_ids": "[1, 2.5]"}, "stop_token_ids must be an integer"),
        ({"stop_token_ids": "x"}, "stop_token_ids must be a list of integers"),
        ({"stop": ["ab"] * 17}, "stop takes at most 16 strings"),
        ({"stop": "x" * 201}, "of at most 200 characters"),
        ("[" * 100_000, "sampling_parameters is not valid JSON"),
        ({"top_k": 0}, "top_k must be -1"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"min_tokens": 9, "max_tokens": 4}, "min_tokens must be in 0..max_tokens"),
        ({"n": 2}, "n must be 1"),
        ({"ignore_eos": "maybe"}, "ignore_eos must be true or false"),
        ({"stop": [""]}, "stop must be a string or a list of non-empty strings"),
        ("{not json", "sampling_parameters is not valid JSON"),
    ],
)
def test_bad_sampling_parameters_are_named(params: object, message: str) -> None:
    with pytest.raises(GenerationError) as info:
        parse_sampling(params)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_every_supported_key_is_a_vllm_sampling_param() -> None:
    vllm_sampling_params_0_5 = {
        "n", "best_of", "presence_penalty", "frequency_penalty", "repetition_penalty",
        "temperature", "top_p", "top_k", "min_p", "seed", "use_beam_search", "length_penalty",
        "early_stopping", "stop", "stop_token_ids", "include_stop_str_in_output", "ignore_eos",
        "max_tokens", "min_tokens", "logprobs", "prompt_logprobs", "detokenize",
        "skip_special_tokens", "spaces_between_special_tokens", "logits_processors",
        "truncate_prompt_tokens",
    }  # fmt: skip
    assert set(SUPPORTED) <= vllm_sampling_params_0_5


# -- the engine against transformers ------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_greedy_tokens_equal_transformers_generate(
    engines: dict[str, Engine], folders: dict[str, Path], arch: str
) -> None:
    sinks = [run(engines[arch], p, temperature=0, max_tokens=32) for p in PROMPTS]  # together
    for prompt, sink in zip(PROMPTS, sinks, strict=True):
        chunks = list(sink)
        ids, text = reference_generate(folders[arch], prompt, 32)
        assert sink.tokens == ids
        assert "".join(chunks) == text and len(chunks) >= 2
    assert engines[arch].max_running >= 2  # the three ran in one batch


def test_chunks_hold_back_partial_characters_and_stop_strings(engines: dict[str, Engine]) -> None:
    engine = engines["gpt2"]  # byte-level BPE: tokens can split UTF-8 characters
    full = "".join(run(engine, PROMPTS[1], temperature=0, max_tokens=40))
    stop = full[10:13]
    chunks = list(run(engine, PROMPTS[1], temperature=0, max_tokens=40, stop=[stop]))
    assert "".join(chunks) == full[: full.index(stop)]
    assert all(stop not in c for c in chunks)
    streamed = list(run(engine, PROMPTS[0], temperature=0, max_tokens=40))
    assert all("\ufffd" not in c for c in streamed[:-1])  # only the end may keep a broken byte


def test_seeded_sampling_repeats_and_top_k_1_is_greedy(engines: dict[str, Engine]) -> None:
    engine = engines["llama"]
    sampled = {"temperature": 1.0, "top_p": 0.9, "seed": 7, "max_tokens": 24}
    a = run(engine, PROMPTS[0], **sampled)
    b = run(engine, PROMPTS[0], **sampled)
    assert "".join(a) == "".join(b)
    assert a.tokens == b.tokens
    greedy = run(engine, PROMPTS[0], temperature=0, max_tokens=24)
    top1 = run(engine, PROMPTS[0], temperature=0.8, top_k=1, seed=3, max_tokens=24)
    assert "".join(greedy) == "".join(top1)
    other = run(engine, PROMPTS[0], temperature=5.0, seed=8, max_tokens=24)
    list(other)
    assert other.tokens != greedy.tokens  # hot sampling leaves the greedy path


def test_min_tokens_and_ignore_eos_run_to_length(engines: dict[str, Engine]) -> None:
    sink = run(engines["gpt2"], PROMPTS[2], temperature=0, max_tokens=30, ignore_eos=True)
    list(sink)
    assert sink.tokens is not None and len(sink.tokens) == 30
    sink = run(engines["gpt2"], PROMPTS[2], temperature=0, max_tokens=12, min_tokens=12)
    list(sink)
    assert sink.tokens is not None and len(sink.tokens) == 12


def test_bad_requests_are_refused_before_queueing(engines: dict[str, Engine]) -> None:
    engine = engines["llama"]
    ok = parse_sampling({"max_tokens": 4})
    for prompt, sampling, message in (
        ("  ", ok, "text_input is empty"),
        ("word " * 300, ok, "the model's context is 128"),
        ("hi", parse_sampling({"max_tokens": 127}), "ask for at most"),
    ):
        with pytest.raises(GenerationError) as info:
            engine.submit(prompt, sampling, QueueSink())
        assert message in str(info.value)
    with pytest.raises(GenerationError, match="exclude_input_in_output = False"):
        engine.submit("hi", ok, QueueSink(), stream=True, prepend=True)


class _CancelAfterFirst(QueueSink):
    """A client that cancels once its first chunk is sent: the same point on every machine."""

    def send(self, text: str, final: bool) -> None:
        super().send(text, final)
        self.stopped = True


def test_a_cancelled_sequence_leaves_the_batch(engines: dict[str, Engine]) -> None:
    engine = engines["llama"]
    before = dict(engine.counts)
    long = _CancelAfterFirst()
    engine.submit(PROMPTS[0], parse_sampling({"temperature": 0, "max_tokens": 120,
                  "ignore_eos": True}), long, stream=True)  # fmt: skip
    short = run(engine, PROMPTS[1], temperature=0, max_tokens=8)
    assert len("".join(short)) > 0
    first = long.chunks.get()[0]
    deadline = time.monotonic() + 120  # a bound on hanging, not a figure
    while engine.counts["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first and engine.counts["cancelled"] == before["cancelled"] + 1
    assert long.chunks.empty()  # nothing was sent after the cancellation
    assert engine.counts["tokens"] - before["tokens"] < 120


def test_impossible_token_requests_are_refused_before_queueing(engines: dict[str, Engine]) -> None:
    engine = engines["gpt2"]
    everything = list(range(engine.vocab))
    for params, message in (
        ({"stop_token_ids": [engine.vocab]}, f"token ids are 0..{engine.vocab - 1}"),
        ({"min_tokens": 2, "stop_token_ids": everything}, "min_tokens 2 cannot be met"),
        ({"min_tokens": 1, "stop_token_ids": everything[1:]}, "cover all"),  # EOS is token 0..
    ):
        if "cover all" in message and engine.eos != {0}:
            params["stop_token_ids"] = [i for i in everything if i not in engine.eos]
        with pytest.raises(GenerationError, match=message):
            engine.submit("hi", parse_sampling(params), QueueSink())
    ok = parse_sampling({"min_tokens": 1, "stop_token_ids": everything[1:], "ignore_eos": True})
    engine.submit("hi", ok, QueueSink())  # token 0 stays free: this one can finish


def _greedy_streams(engine: Engine) -> list[QueueSink]:
    return [run(engine, PROMPTS[i % 3], temperature=0, max_tokens=24) for i in range(8)]


def test_a_request_failing_while_sampling_ends_alone(
    engines: dict[str, Engine], folders: dict[str, Path]
) -> None:
    """A temperature the door refuses (1e-300: NaN probabilities), submitted past the door:
    its sampling fails inside the shared loop; the 8 greedy streams beside it are untouched."""
    engine = engines["llama"]
    before = engine.counts["failed"]
    healthy = _greedy_streams(engine)
    poison = QueueSink()
    engine.submit(PROMPTS[0], Sampling(temperature=1e-300, max_tokens=24), poison, stream=True)
    with pytest.raises(GenerationError, match="generation failed: RuntimeError"):
        list(poison)
    for i, sink in enumerate(healthy):
        assert "".join(sink) == reference_generate(folders["llama"], PROMPTS[i % 3], 24)[1]
    assert engine.counts["failed"] == before + 1


def test_a_failed_batched_forward_pass_is_retried_without_its_culprit_injected(
    folders: dict[str, Path],
) -> None:
    """An injected fault: the forward pass fails whenever a batch holds position >= 60 (only
    the long prompt reaches it). The batch is retried without that sequence."""
    engine = Engine.load(str(folders["gpt2"]))
    real = engine._forward

    def forward(ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        if ids.shape[1] == 1 and int(positions.max()) >= 60:
            raise RuntimeError("injected: position 60")
        return real(ids, mask, positions, cache)

    engine._forward = forward  # type: ignore[method-assign]
    engine.start()
    try:
        healthy = _greedy_streams(engine)
        long = "The quick brown fox"
        while len(engine.tokenizer(long)["input_ids"]) < 61:
            long += " jumps"
        poison = run(engine, long, temperature=0, max_tokens=8)
        with pytest.raises(GenerationError, match="injected: position 60"):
            list(poison)
        for i, sink in enumerate(healthy):
            assert "".join(sink) == reference_generate(folders["gpt2"], PROMPTS[i % 3], 24)[1]
        assert engine.counts["failed"] == 1
    finally:
        engine.stop()


# -- the wire -----------------------------------------------------------------------------


def test_sse_events_split_anywhere() -> None:
    stream = (
        b'data: {"text_output":"a"}\n\ndata: {"text_output":"b\\u00e9"}\n\ndata: {"error":"x"}\n\n'
    )
    parser, events = SseParser(), []
    for i in range(0, len(stream), 7):
        events += parser.feed(stream[i : i + 7])
    assert [json_text(e, "w") for e in events[:2]] == ["a", "bé"]
    with pytest.raises(InvalidInput, match="x"):
        json_text(events[2], "w")


def test_grpc_request_carries_the_vllm_tensors() -> None:
    from tritonclient.grpc import service_pb2

    request = grpc_request("m", "", "hé", {"stop": ("a",)}, stream=True, include_prompt=False)
    assert [t.name for t in request.inputs] == [
        "text_input", "stream", "sampling_parameters", "exclude_input_in_output",
    ]  # fmt: skip
    assert request.raw_input_contents[0] == b"\x03\x00\x00\x00h\xc3\xa9"
    assert json.loads(request.raw_input_contents[2][4:]) == {"stop": ["a"]}
    assert request.parameters["triton_enable_empty_final_response"].bool_param
    response = service_pb2.ModelStreamInferResponse(error_message="max_tokens must be >= 1")
    with pytest.raises(InvalidInput, match="max_tokens"):
        grpc_text(response, "stream 'm'")


# -- repositories ---------------------------------------------------------------------------


def test_text_generation_repository(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "src"
    shutil.copytree(folders["gpt2"], folder)
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    tmp_path = tmp_path / "repo"
    result = build(folder, name="gpt2", output=tmp_path)  # detected from architectures
    config = parse_config((tmp_path / "gpt2" / "config.pbtxt").read_text())
    assert config.model_transaction_policy.decoupled and config.backend == "python"
    assert config.max_batch_size == 0
    assert [i.name for i in config.input] == [
        "text_input", "stream", "sampling_parameters", "exclude_input_in_output",
        "return_finish_reason", "return_num_input_tokens", "return_num_output_tokens",
        "add_special_tokens",
    ]  # fmt: skip
    assert [o.name for o in config.output] == [
        "text_output", "finish_reason", "num_input_tokens", "num_output_tokens",
    ]  # fmt: skip
    assert spec_from_config(config).decoupled
    files = set(result.written.files)  # type: ignore[union-attr]
    for name in (
        "model.py",
        "tp_engine.py",
        "tp_sampling.py",
        "hf/config.json",
        "hf/tokenizer.json",
        "hf/tokenizer_config.json",
        "hf/chat_template.jinja",  # the chat template is kept (the OpenAI service renders it)
    ):
        assert f"gpt2/1/{name}" in files
    record = json.loads((tmp_path / "gpt2" / "1" / "build.json").read_text())
    assert any(r.startswith("transformers==") for r in record["requires"])
    from packager.validation import validate

    assert validate(tmp_path).ok


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_vllm_repository(folders: dict[str, Path], tmp_path: Path) -> None:
    build(folders["llama"], name="chat", output=tmp_path, backend="vllm", kind="gpu", gpus=[0, 1],
          parameters={"vllm.enforce_eager": "true", "vllm.dtype": "float16"})  # fmt: skip
    args = json.loads((tmp_path / "chat" / "1" / "model.json").read_text())
    assert args == {
        "model": "/models/chat/1/hf",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "max_model_len": 128,
        "disable_log_requests": True,
        "enforce_eager": True,
        "dtype": "float16",
    }
    config = parse_config((tmp_path / "chat" / "config.pbtxt").read_text())
    assert config.backend == "vllm" and config.model_transaction_policy.decoupled
    assert [g.kind for g in config.instance_group] == [3]  # KIND_MODEL: vLLM places the GPUs
    assert "vllm.dtype" not in config.parameters
    assert (tmp_path / "chat" / "1" / "hf" / "model.safetensors").is_file()
    before = _snapshot(tmp_path)
    with pytest.raises(SpecError, match="enforce_eagr do not exist in the vLLM release"):
        build(folders["llama"], name="chat", output=tmp_path, backend="vllm",
              parameters={"vllm.enforce_eagr": "true"})  # fmt: skip
    assert _snapshot(tmp_path) == before  # a failed build leaves the repository as it was
    assert NGC_VLLM_IMAGE == "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3"


def test_a_causal_lm_sharded_as_bin_files_builds(folders: dict[str, Path], tmp_path: Path) -> None:
    """Shards + pytorch_model.bin.index.json (what save_pretrained wrote before safetensors):
    the same folder list as the Hugging Face source, so it builds, and the engine loads it."""
    import torch
    from safetensors.torch import load_file

    src, folder = folders["gpt2"], tmp_path / "sharded"
    folder.mkdir()
    weights = load_file(str(src / "model.safetensors"))
    names = sorted(weights)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        shard = f"pytorch_model-0000{i}-of-00002.bin"
        torch.save({n: weights[n] for n in part}, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    for f in src.glob("*.json"):
        (folder / f.name).write_bytes(f.read_bytes())
    result = build(folder, name="sharded", output=tmp_path / "repo")
    files = set(result.written.files)  # type: ignore[union-attr]
    assert "sharded/1/hf/pytorch_model.bin.index.json" in files
    assert {f"sharded/1/hf/pytorch_model-0000{i}-of-00002.bin" for i in (1, 2)} <= files
    engine = Engine.load(str(tmp_path / "repo" / "sharded" / "1" / "hf")).start()
    try:
        assert "".join(run(engine, PROMPTS[0], max_tokens=4, ignore_eos=True))
    finally:
        engine.stop()


def test_engine_argument_names_come_from_the_kept_list() -> None:
    names = known_args()
    assert {"model", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len"} <= names
    assert "disable_log_requests" in names  # AsyncEngineArgs, what the backend constructs
    check_args({"model": "x", "max_num_seqs": 8})
    with pytest.raises(SpecError, match="gpu_mem_util"):
        check_args({"gpu_mem_util": 0.5})


def test_refusals_name_the_problem(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="batches per decoding step"):
        build(folders["gpt2"], name="g", output=tmp_path, max_batch_size=8)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    with pytest.raises(SpecError, match="is not a causal LM"):
        build(bert, name="b", output=tmp_path / "out", task="text-generation")
    with pytest.raises(PackagerError, match="no weights"):
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "config.json").write_text(
            '{"model_type":"gpt2","architectures":["GPT2LMHeadModel"]}'
        )
        build(empty, name="e", output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_vllm_docker_and_k8s_assets(folders: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    from packager.deploy.docker import render_docker
    from packager.deploy.k8s import K8sOptions, render_k8s

    repo = tmp_path / "repo"
    build(folders["llama"], name="chat", output=repo, backend="vllm", kind="gpu", gpus=[0, 1])
    assets = render_docker(repo, tmp_path / "docker", gpus="0,1")
    assert f"FROM {NGC_VLLM_IMAGE}" in assets.files["Dockerfile"]
    assert assets.shm_size == "1g" and assets.pip == ()  # the image brings vLLM; NCCL wants shm
    assert '"device=0,1"' in " ".join(assets.run_command) and assets.notes == ()
    with pytest.raises(PackagerError, match="chat needs 2"):
        render_docker(repo, tmp_path / "docker", gpus="0")
    manifests = render_k8s(repo, K8sOptions("pvc://models/repo", gpus_per_replica=2))
    deployment = yaml.safe_load(manifests.files["deployment.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == NGC_VLLM_IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert not any("is not" in n for n in manifests.notes)
    with pytest.raises(PackagerError, match="--gpus-per-replica 1: vLLM shards"):
        render_k8s(repo, K8sOptions("s3://bucket/models", gpus_per_replica=1))
