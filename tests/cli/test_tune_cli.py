"""`tune` through click's CliRunner: help, options refused before any server starts, one tiny
search end to end with --apply --json, and Ctrl-C (exit 130, repository unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from packager.builder import build
from packager.cli import main
from packager.repository import read_config, write_model
from packager.serve.server import started_pids
from packager.spec import DynamicBatching, InstanceGroup, ModelSpec, TensorSpec
from tests.support.tree import snapshot

SPEC = ModelSpec(
    name="mlp",
    platform="onnxruntime_onnx",
    max_batch_size=8,
    inputs=(TensorSpec("input", "FP32", (16,)),),
    outputs=(TensorSpec("output", "FP32", (4,)),),
    instance_groups=(InstanceGroup("KIND_CPU", 1),),
    dynamic_batching=DynamicBatching(),
)
TINY = (
    "--concurrency",
    "2",
    "--instances",
    "1",
    "--max-batch-size",
    "8",
    "--queue-delay-us",
    "100",
    "--search",
    "full",
    "--duration-s",
    "1",
    "--warmup-s",
    "0.3",
    "--budget-s",
    "120",
)


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def fake_repo(tmp_path: Path) -> Path:
    """Configs only (artifacts are placeholder bytes): enough for options that fail early."""
    repo = tmp_path / "repo"
    write_model(repo, SPEC, {"model.onnx": b"not served"})
    write_model(
        repo,
        SPEC.replace(name="flat", max_batch_size=0, dynamic_batching=None),
        {"model.onnx": b"not served"},
    )
    return repo


def test_help_lists_the_options() -> None:
    r = run("tune", "--help")
    assert r.exit_code == 0
    for option in (
        "--concurrency",
        "--max-latency-ms",
        "--min-throughput",
        "--budget-s",
        "--instances",
        "--max-batch-size",
        "--queue-delay-us",
        "--search",
        "--url",
        "--output-dir",
        "--apply",
        "--json",
    ):
        assert option in r.output
    assert "tune" in run("--help").output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("mlp", "--budget-s", "2"), 1, "raise --budget-s"),
        (("mlp", "--concurrency", "1,x"), 2, "not a comma-separated list"),
        (("mlp", "--max-latency-ms", "0"), 1, "--max-latency-ms must be > 0"),
        (("flat", "--max-batch-size", "8"), 1, "does not batch"),
        (("mlp", "--output-dir", "{repo}/mlp/reports"), 1, "inside the model repository"),
        (("mlp", "--output-dir", "{repo}/reports"), 1, "inside the model repository"),
        (("missing",), 1, "does not exist"),
    ],
)
def test_bad_options_fail_before_a_server_starts(
    fake_repo: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    before = snapshot(fake_repo)
    pids = list(started_pids())
    model, *rest = args
    r = run("tune", fake_repo / model, *[a.format(repo=fake_repo) for a in rest])
    assert r.exit_code == code, r.output
    assert message in r.output
    assert started_pids() == pids
    assert snapshot(fake_repo) == before


@pytest.fixture()
def repo(tmp_path: Path, model_files: dict[str, Path]) -> Path:
    repo = tmp_path / "repo"
    build(model_files["mlp"], name="mlp", output=repo, max_batch_size=8)
    build(model_files["two_io"], name="two_io", output=repo, max_batch_size=4)
    return repo


@pytest.mark.integration
def test_tiny_search_applies_and_prints_json(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    out = tmp_path / "reports"
    r = run("tune", repo / "mlp", *TINY, "--output-dir", out, "--apply", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [t["label"] for t in report["trials"]] == ["i1-b8-q100", "i1-b8-off"]
    assert report["applied"] is True
    assert "[2] i1-b8-off" in r.stderr  # progress goes to stderr
    for name in ("tune.csv", "tune.json", "tune.png"):
        assert (out / name).is_file()
    assert json.loads((out / "tune.json").read_text())["winner"] == report["winner"]
    after = snapshot(repo)
    assert {k for k in after if before.get(k) != after[k]} == {
        "mlp/config.pbtxt",
        "mlp/tuning.json",
        "mlp/SHA256SUMS",  # rewritten by the same writer: the tuned config stays verifiable
    }
    config = read_config(repo / "mlp")
    assert config.HasField("dynamic_batching") == report["winner"]["dynamic_batching"]
    assert config.instance_group[0].count == 1


@pytest.mark.integration
def test_ctrl_c_exits_130_and_leaves_the_repository_unchanged(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import packager.tune.run

    def interrupted(_job: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(packager.tune.run, "default_load", lambda: interrupted)
    before = snapshot(repo)
    r = run("tune", repo / "mlp", *TINY, "--output-dir", tmp_path / "reports", "--apply")
    assert r.exit_code == 130
    assert "interrupted" in r.stderr and "not changed" in r.stderr
    assert snapshot(repo) == before
    assert not (tmp_path / "reports").exists()


def test_a_decoupled_model_is_refused_before_any_server_starts(
    fake_repo: Path, tmp_path: Path
) -> None:
    # Issue 32: tune spent its budget on HTTP 501s and wrote a blank plot.
    write_model(fake_repo, SPEC.replace(name="streamer", decoupled=True, dynamic_batching=None),
                {"model.onnx": b"not served"})  # fmt: skip
    before, pids = snapshot(fake_repo), list(started_pids())
    out = tmp_path / "reports"
    r = run("tune", fake_repo / "streamer", "--output-dir", out, "--budget-s", "60")
    assert r.exit_code == 1 and "is decoupled (it streams its responses)" in r.output
    assert "Nothing was measured" in r.output
    assert started_pids() == pids and not out.exists() and snapshot(fake_repo) == before


def test_a_sequence_model_is_refused_before_any_server_starts(
    fake_repo: Path, tmp_path: Path
) -> None:
    from packager.scheduling import SequenceBatching

    spec = SPEC.replace(
        name="stateful", dynamic_batching=None, sequence_batching=SequenceBatching()
    )
    write_model(fake_repo, spec, {"model.onnx": b"not served"})
    before, pids = snapshot(fake_repo), list(started_pids())
    r = run("tune", fake_repo / "stateful", "--output-dir", tmp_path / "r", "--budget-s", "60")
    assert r.exit_code == 1 and "uses the sequence batcher" in r.output
    assert "--max-candidate-sequences" in r.output
    assert started_pids() == pids and snapshot(fake_repo) == before


@pytest.mark.integration
def test_gpu_config_measured_on_cpu_is_said_and_not_applied_unless_asked(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    repo = tmp_path / "repo"
    build(model_files["mlp"], name="mlp", output=repo, max_batch_size=8, kind="gpu")
    assert read_config(repo / "mlp").instance_group[0].kind == 1  # KIND_GPU
    before = snapshot(repo)
    out = tmp_path / "reports"
    refused = run("tune", repo / "mlp", *TINY, "--output-dir", out, "--apply")
    assert refused.exit_code == 1, refused.output
    assert "configured for GPUs (KIND_GPU) but the server runs it on the CPU" in refused.output
    assert "refusing --apply before measuring" in refused.output and "--apply-cpu-figures" in (
        refused.output
    )
    assert snapshot(repo) == before and not out.exists()

    r = run("tune", repo / "mlp", *TINY, "--output-dir", out, "--apply", "--apply-cpu-figures",
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["device"] == "cpu" and report["applied"] is True
    assert any("these are CPU figures" in w for w in report["warnings"])
    assert read_config(repo / "mlp").instance_group[0].kind == 1  # still a GPU config
