"""tune on the real tritonserver: a tiny search end to end (2 candidates, 1 s windows), the
report files, --apply, a running server left as found, and Ctrl-C leaving the repository as it was.

Figures are never asserted (two shared cores make them noise); what is asserted is what the
reports and the repository say, and that they agree with each other.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient

from packager.builder import build
from packager.repository import read_config
from packager.serve.server import LocalServer, started_pids
from packager.tune.apply import TUNING_RECORD
from packager.tune.run import default_load, tune
from packager.tune.search import Candidate, Point
from packager.tune.server import LoadJob
from packager.validation import validate
from tests.conftest import StartServer
from tests.support.servers import group_members
from tests.support.tree import snapshot

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Two candidates: dynamic batching off, and on with a 100 us delay (the current config's nearest).
TINY: dict[str, Any] = {
    "concurrency": (1, 4),
    "instances": (1,),
    "max_batch_sizes": (8,),
    "queue_delays_us": (100,),
    "search": "full",
    "duration_s": 1.0,
    "warmup_s": 0.3,
    "budget_s": 120,
}


def make_repo(root: Path, model_files: dict[str, Path]) -> Path:
    repo = root / "repo"
    build(model_files["mlp"], name="mlp", output=repo, max_batch_size=8)
    build(model_files["two_io"], name="two_io", output=repo, max_batch_size=4)
    return repo


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_tiny_search_on_the_embedded_server_reports_and_applies(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    repo = make_repo(tmp_path, model_files)
    before = snapshot(repo)
    lines: list[str] = []
    result = tune(
        repo / "mlp", **TINY, output_dir=tmp_path / "out", apply=True, progress=lines.append
    )

    assert result.embedded and result.server_version == "2.51.0"
    assert [t.candidate.label for t in result.trials] == ["i1-b8-q100", "i1-b8-off"]
    for t in result.trials:
        assert t.error is None
        assert [p.concurrency for p in t.points] == [1, 4]
        assert all(p.requests > 0 and p.errors == 0 and p.p99_ms >= p.p50_ms > 0 for p in t.points)
    assert result.winner is not None and result.stopped == "done"
    winner = result.winner.candidate
    best = result.objective.best_point(result.winner)
    assert best is not None
    assert any("i1-b8-off" in line for line in lines)

    # Reports: CSV rows, JSON and the plot agree with the result.
    out = tmp_path / "out"
    assert result.reports == {
        "csv": out / "tune.csv",
        "png": out / "tune.png",
        "json": out / "tune.json",
    }
    rows = list(csv.DictReader((out / "tune.csv").open()))
    assert [(r["label"], r["concurrency"]) for r in rows] == [
        ("i1-b8-q100", "1"),
        ("i1-b8-q100", "4"),
        ("i1-b8-off", "1"),
        ("i1-b8-off", "4"),
    ]
    assert {r["label"] for r in rows if r["winner"] == "True"} == {winner.label}
    report = json.loads((out / "tune.json").read_text())
    assert report["winner"]["label"] == winner.label
    assert report["winner"]["point"]["throughput"] == round(best.throughput, 3)
    assert report["applied"] is True and len(report["trials"]) == 2
    assert report["machine"]["cores"] >= 1
    assert (out / "tune.png").read_bytes()[:8] == PNG_MAGIC

    # --apply: the config (and the model-level SHA256SUMS covering it) says what the report says.
    after = snapshot(repo)
    assert changed(before, after) == {"mlp/config.pbtxt", "mlp/SHA256SUMS", f"mlp/{TUNING_RECORD}"}
    config = read_config(repo / "mlp")
    assert config.instance_group[0].count == winner.instances
    assert config.max_batch_size == 8
    assert config.HasField("dynamic_batching") == winner.dynamic_batching
    if winner.dynamic_batching:
        assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert validate(repo).ok
    record = json.loads((repo / "mlp" / TUNING_RECORD).read_text())
    assert record["settings"]["label"] == winner.label
    assert record["measurement"] == best.to_dict()
    assert record["previous"]["label"] == "i1-b8-q100"


def test_ctrl_c_mid_search_leaves_the_repository_unchanged(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    repo = make_repo(tmp_path, model_files)
    before = snapshot(repo)
    pids_before = set(started_pids())
    real = default_load()
    calls: list[LoadJob] = []

    def interrupted(job: LoadJob) -> Point:
        calls.append(job)
        if len(calls) == 2:  # the second window of the first candidate
            raise KeyboardInterrupt
        return real(job)

    with pytest.raises(KeyboardInterrupt):
        tune(repo / "mlp", **TINY, output_dir=tmp_path / "out", apply=True, load=interrupted)
    assert len(calls) == 2
    assert snapshot(repo) == before
    assert not (tmp_path / "out").exists()
    new = set(started_pids()) - pids_before
    assert len(new) == 1
    assert [m for pid in new for m in group_members(pid)] == []  # server and stubs are gone


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory,
    model_files: dict[str, Path],
    start_server: StartServer,
) -> tuple[LocalServer, Path]:
    # The embedded server serves a linked view of the repository; a native ONNX model's config
    # there is a rewritten copy, so a reload after --apply would not see the new file. A
    # python-backend model's config.pbtxt is linked: the server reloads the tuned file.
    repo = tmp_path_factory.mktemp("served") / "repo"
    build(model_files["mlp"], name="mlp", output=repo, max_batch_size=8, backend="python")
    build(model_files["two_io"], name="two_io", output=repo, max_batch_size=4, backend="python")
    server = start_server(repo, model_control_mode="explicit", load_models=["mlp"])
    return server, repo


def test_a_running_server_is_tuned_applied_and_left_serving_the_result(
    running: tuple[LocalServer, Path], tmp_path: Path
) -> None:
    server, repo = running
    before = snapshot(repo)
    result = tune(
        repo / "mlp",
        url=server.http_url,
        concurrency=(2,),
        instances=(1,),
        max_batch_sizes=(8,),
        queue_delays_us=(100,),  # the file says 0: either winner changes the config
        max_latency_ms=10_000,
        search="quick",
        duration_s=1.0,
        warmup_s=0.2,
        budget_s=90,
        output_dir=tmp_path / "out",
        apply=True,
    )
    assert not result.embedded and result.url == server.http_url
    # quick search: the current config (snapped to the grid), then its only neighbour
    assert {t.candidate for t in result.trials} == {
        Candidate(1, 8, True, 100),
        Candidate(1, 8, False),
    }
    assert result.winner is not None and result.warnings == []
    assert changed(before, snapshot(repo)) == {
        "mlp/config.pbtxt",
        "mlp/SHA256SUMS",
        f"mlp/{TUNING_RECORD}",
    }
    # The model was loaded before tuning: it is loaded again, from the (tuned) repository.
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert client.is_model_ready("mlp")
        served = client.get_model_config("mlp")
    finally:
        client.close()
    assert ("dynamic_batching" in served) == result.winner.candidate.dynamic_batching
    if result.winner.candidate.dynamic_batching:
        assert int(served["dynamic_batching"]["max_queue_delay_microseconds"]) == 100
    assert [g["count"] for g in served["instance_group"]] == [1]
