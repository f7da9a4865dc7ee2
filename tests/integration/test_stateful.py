"""Stateful models on the real embedded tritonserver through Triton's own backends.

- silero VAD (the corpus' ONNX model) built with ``stateful=True``: the server keeps the RNN
  state as an implicit state; 8 interleaved audio streams equal the in-process loop that carries
  the state by hand; a chunk of an unknown sequence is a typed error; an abandoned sequence is
  freed by the server after its idle timeout;
- a GRU cell exported to ONNX and TorchScript, built with ``stateful=True``: per-sequence answers
  equal torch's, with several sequences batched in one execution (server statistics).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from packager.builder import build
from packager.client import AsyncClient, Client, SequenceNotStarted
from packager.manifest.builder import build_manifest
from packager.serve.server import LocalServer
from tests.conftest import StartServer
from tests.support.polling import settled

torch = pytest.importorskip("torch")

STREAMS = 8
CHUNKS = 6
SAMPLES = 512  # silero's chunk at 16 kHz
GRU_SEQUENCES = 6
GRU_STEPS = 5


def silero_onnx() -> Path:
    found = Path(
        str(
            importlib.metadata.distribution("silero-vad").locate_file(
                "silero_vad/data/silero_vad.onnx"
            )
        )
    )
    assert found.is_file(), "silero-vad wheel missing (scripts/setup.sh installs it)"
    return found


class Cell(torch.nn.Module):  # type: ignore[misc,name-defined]
    """A GRU cell: the hidden state goes in and comes out beside a per-step output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cell = torch.nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cell(x, hidden)
        return h.sum(dim=1, keepdim=True), h


@pytest.fixture(scope="module")
def server(start_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> LocalServer:
    root = tmp_path_factory.mktemp("stateful")
    repo = root / "repo"
    build(silero_onnx(), name="vad", output=repo, stateful=True)
    # One batch slot (direct strategy, one instance, no batching) and a short idle timeout.
    build(
        silero_onnx(),
        name="vad_idle",
        output=repo,
        stateful=True,
        sequence_strategy="direct",
        sequence_idle_us=300_000,
        kind="cpu",
    )
    cell = Cell().eval()
    x, h = torch.randn(2, 4), torch.zeros(2, 8)
    names = ["x", "hidden", "y", "hidden_out"]
    torch.onnx.export(
        cell, (x, h), str(root / "gru.onnx"), input_names=names[:2], output_names=names[2:],
        dynamic_axes={n: {0: "batch"} for n in names}, dynamo=False,
    )  # fmt: skip
    torch.jit.trace(cell, (x, h)).save(str(root / "gru.pt"))
    # A preferred batch of every sequence, and a long wait for it: batches form on a busy host.
    batching = {
        "stateful": True,
        "max_candidate_sequences": GRU_SEQUENCES,
        "preferred_batch_sizes": [GRU_SEQUENCES],
        "max_queue_delay_us": 2_000_000,
        "kind": "cpu",
    }
    build(root / "gru.onnx", name="gru_onnx", output=repo, **batching)
    # Triton's PyTorch backend reads implicit state only with NAME__INDEX names.
    build(root / "gru.pt", name="gru_ts", output=repo,
          input_specs=["x__0:FP32:4", "hidden__1:FP32:8"], **batching)  # fmt: skip
    # A Python step with the sequence batcher keeps a running sum per sequence itself.
    (root / "acc.py").write_text(ACCUMULATOR)
    step = {
        "name": "acc", "file": "acc.py", "class": "Accumulate", "max_batch_size": 4,
        "inputs": [{"name": "x", "dtype": "FP32", "dims": [1]}],
        "outputs": [{"name": "total", "dtype": "FP32", "dims": [1]},
                    {"name": "flags", "dtype": "INT32", "dims": [2]}],
        "sequence_batching": True,
    }  # fmt: skip
    (root / "acc.yaml").write_text(yaml.safe_dump({"python_steps": [step]}))
    build_manifest(root / "acc.yaml", repo)
    # Implicit state is served by Triton's own backends only (the Python runtime refuses it, as
    # tested in tests/unit), so these tests ask for them in both suite modes.
    return start_server(repo, native=True)


ACCUMULATOR = """
import numpy as np


class Accumulate:
    def __init__(self):
        self.totals = {}

    def __call__(self, x, sequence):
        if sequence.start:
            self.totals[sequence.id] = 0.0
        total = self.totals[sequence.id] = self.totals[sequence.id] + float(x.sum())
        if sequence.end:
            del self.totals[sequence.id]
        flags = np.array([[sequence.start, sequence.end]], np.int32)
        return {"total": np.full((1, 1), total, np.float32), "flags": flags}
"""


def vad_reference(chunks: np.ndarray) -> np.ndarray:
    """The in-process loop: ONNX Runtime with the state carried by hand."""
    session = ort.InferenceSession(str(silero_onnx()), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    out = []
    for chunk in chunks:
        probability, state = session.run(
            None, {"input": chunk, "state": state, "sr": np.array(16000, np.int64)}
        )
        out.append(probability)
    return np.stack(out)


def test_the_config_hides_the_state_and_keeps_the_data(server: LocalServer) -> None:
    with Client(server.http_url) as client:
        config = client.config("vad")
        meta = client.metadata("vad")
    assert [s.input_name for s in config.sequence_batching.state] == ["state"]
    assert [s.output_name for s in config.sequence_batching.state] == ["stateN"]
    assert {t.name for t in meta.inputs} == {"input", "sr"}  # clients send only the data
    assert {t.name for t in meta.outputs} == {"output"}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_eight_interleaved_vad_streams_equal_the_in_process_loop(
    server: LocalServer, protocol: str
) -> None:
    rng = np.random.default_rng(3)
    audio = rng.standard_normal((STREAMS, CHUNKS, 1, SAMPLES)).astype(np.float32) * 0.3
    url = server.http_url if protocol == "http" else f"grpc://{server.grpc_url}"
    sr = np.array([16000], np.int64)

    async def run() -> list[list[np.ndarray]]:
        got: list[list[np.ndarray]] = [[] for _ in range(STREAMS)]
        async with AsyncClient(url) as client:
            sequences = [client.sequence("vad") for _ in range(STREAMS)]
            for c in range(CHUNKS):  # chunk c of every stream in flight together
                outs = await asyncio.gather(
                    *(
                        s.infer({"input": audio[i, c], "sr": sr}, end=c == CHUNKS - 1)
                        for i, s in enumerate(sequences)
                    )
                )
                for i, out in enumerate(outs):
                    got[i].append(out["output"])
            assert all(s.ended for s in sequences)
        return got

    got = asyncio.run(run())
    worst = max(
        float(np.abs(np.stack(got[i]) - vad_reference(audio[i])).max()) for i in range(STREAMS)
    )
    print(
        f"silero VAD, {STREAMS} streams x {CHUNKS} chunks over {protocol}: max abs error {worst:.3g}"
    )
    assert worst <= 1e-5
    # The streams differ: a state mixed up between sequences could not pass the check above.
    assert not np.allclose(np.stack(got[0]), np.stack(got[1]))


def test_a_chunk_of_a_sequence_never_started_is_a_typed_error(server: LocalServer) -> None:
    chunk = {"input": np.zeros((1, SAMPLES), np.float32), "sr": np.array([16000])}
    with Client(server.http_url) as client, pytest.raises(SequenceNotStarted, match="START"):
        client.infer("vad", chunk, sequence_id=987_654_321)
    with Client(server.http_url) as client:
        with client.sequence("vad") as s:
            s.infer(chunk, end=True)
        with pytest.raises(SequenceNotStarted, match="has ended"):
            s.infer(chunk)


def test_an_abandoned_sequence_is_freed_after_its_idle_timeout(server: LocalServer) -> None:
    """vad_idle has one batch slot: a second sequence runs only once the server has freed the
    first, abandoned one (idle 0.3 s); the first then no longer exists on the server."""
    chunk = {"input": np.zeros((1, SAMPLES), np.float32), "sr": np.array([16000])}
    with Client(server.http_url, timeout_s=60) as client:
        client.infer("vad_idle", chunk, sequence_id=11, sequence_start=True)  # never ended
        # Queued behind sequence 11 until the server's reaper frees the slot.
        client.infer("vad_idle", chunk, sequence_id=12, sequence_start=True, sequence_end=True)
        with pytest.raises(SequenceNotStarted):
            client.infer("vad_idle", chunk, sequence_id=11)


@pytest.mark.parametrize("model", ["gru_onnx", "gru_ts"])
def test_a_gru_built_stateful_answers_per_sequence_in_shared_batches(
    server: LocalServer, model: str
) -> None:
    cell = Cell().eval()
    x_name = "x" if model == "gru_onnx" else "x__0"
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((GRU_SEQUENCES, GRU_STEPS, 1, 4)).astype(np.float32)

    async def run() -> np.ndarray:
        got = np.zeros((GRU_SEQUENCES, GRU_STEPS, 1, 1), np.float32)
        async with AsyncClient(f"grpc://{server.grpc_url}", timeout_s=60) as client:
            sequences = [client.sequence(model) for _ in range(GRU_SEQUENCES)]
            for t in range(GRU_STEPS):
                outs = await asyncio.gather(
                    *(
                        s.infer({x_name: xs[i, t]}, end=t == GRU_STEPS - 1)
                        for i, s in enumerate(sequences)
                    )
                )
                for i, out in enumerate(outs):
                    got[i, t] = next(iter(out.values()))
        return got

    with Client(server.http_url) as client:
        before = client.statistics(model).model_stats[0]
    got = asyncio.run(run())
    sent = GRU_SEQUENCES * GRU_STEPS
    with Client(server.http_url) as client:
        after = settled(
            lambda: client.statistics(model).model_stats[0],
            lambda s: s.inference_count - before.inference_count >= sent,
        )
    with torch.no_grad():
        for i in range(GRU_SEQUENCES):
            h = torch.zeros(1, 8)
            for t in range(GRU_STEPS):
                y, h = cell(torch.from_numpy(xs[i, t]), h)
                np.testing.assert_allclose(got[i, t], y.numpy(), atol=1e-5)
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    print(f"{model}: {inferences} inferences in {executions} executions")
    assert inferences == sent
    assert executions < inferences  # several sequences ran in one execution


def test_a_state_the_runtime_cannot_hold_stays_explicit_and_says_why(tmp_path: Path) -> None:
    cell = Cell().eval()
    torch.jit.trace(cell, (torch.randn(2, 4), torch.zeros(2, 8))).save(str(tmp_path / "g.pt"))
    result = build(tmp_path / "g.pt", name="g", output=tmp_path / "repo", stateful=True,
                   input_specs=["x:FP32:4", "hidden:FP32:8"], dry_run=True)  # fmt: skip
    notes = result.record["sequence"]["notes"]
    assert any("stays explicit" in n and "NAME__INDEX" in n for n in notes), notes
    assert {t.name for t in result.spec.inputs} == {"x", "hidden"}  # the client sends the state
    assert not result.spec.sequence_batching.states
    py = build(silero_onnx(), name="v", output=tmp_path / "repo", stateful=True, backend="python",
               dry_run=True)  # fmt: skip
    assert any("Python runtime" in n for n in py.record["sequence"]["notes"])
    assert "state" in {t.name for t in py.spec.inputs}


def test_a_python_step_gets_the_sequence_id_and_flags(server: LocalServer) -> None:
    with Client(f"grpc://{server.grpc_url}") as client:
        a, b = client.sequence("acc"), client.sequence("acc", sequence_id="utterance-b")
        rows = []
        for t in range(3):  # interleaved: a, b, a, b, ...
            for s, x in ((a, 1.0), (b, 10.0)):
                out = s.infer({"x": np.array([[x]], np.float32)}, end=t == 2)
                rows.append((float(out["total"][0, 0]), out["flags"][0].tolist()))
    assert rows == [
        (1.0, [1, 0]), (10.0, [1, 0]),
        (2.0, [0, 0]), (20.0, [0, 0]),
        (3.0, [0, 1]), (30.0, [0, 1]),
    ]  # fmt: skip


def test_the_infer_command_sends_sequence_flags(server: LocalServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from packager.cli import main

    np.save(tmp_path / "x.npy", np.zeros((1, SAMPLES), np.float32))
    np.save(tmp_path / "sr.npy", np.array([16000], np.int64))
    base = ["infer", "vad", "--url", server.http_url, "--input-file", f"input={tmp_path / 'x.npy'}",
            "--input-file", f"sr={tmp_path / 'sr.npy'}"]  # fmt: skip
    runner = CliRunner()
    r = runner.invoke(main, [*base, "--sequence-id", "cli-1", "--sequence-start"])
    assert r.exit_code == 0 and "output: float32 [1, 1]" in r.output, r.output
    r = runner.invoke(main, [*base, "--sequence-id", "cli-1", "--sequence-end"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, [*base, "--sequence-id", "cli-1"])  # ended: the server says so
    assert r.exit_code == 1 and "sequence_start=True" in r.output, r.output
