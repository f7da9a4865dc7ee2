"""`build` options of stateful models, the response cache, the rate limiter and priority queue
policies through the CLI, and the server flags `docker` and `k8s` derive from them."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from packager.cli import main
from packager.render import parse_config
from tests.support.tree import snapshot

SILERO = str(
    importlib.metadata.distribution("silero-vad").locate_file("silero_vad/data/silero_vad.onnx")
)


def run(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def run_json(*args: object) -> dict:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_build_stateful_writes_implicit_state_and_says_what_it_decided(tmp_path: Path) -> None:
    code, out = run(
        "build",
        SILERO,
        "-n",
        "vad",
        "-o",
        tmp_path,
        "--stateful",
        "--sequence-idle-us",
        "5000000",
        "--max-candidate-sequences",
        "8",
    )
    assert code == 0, out
    assert "stateful: state state -> stateN: its dynamic dim set to 1" in out
    config = parse_config((tmp_path / "vad" / "config.pbtxt").read_text())
    sb = config.sequence_batching
    assert sb.max_sequence_idle_microseconds == 5_000_000
    assert sb.oldest.max_candidate_sequences == 8
    assert list(sb.state[0].dims) == [2, 1, 128] and sb.state[0].initial_state[0].zero_data
    assert [i.name for i in config.input] == ["input", "sr"]
    assert not config.HasField("dynamic_batching")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stateful", "--dynamic-batching"], "exclude each other"),
        (["--stateful", "--response-cache"], "response cache does not support sequence"),
        (["--state", "state:nope"], "is not INPUT:OUTPUT"),
        (["--sequence-control", "begin=START"], "is not KIND=NAME"),
        (["--sequence-control", "start=START"], "not inputs of the model"),
        (
            ["--stateful", "--sequence-strategy", "direct", "--max-candidate-sequences", "4"],
            "belong to the oldest strategy",
        ),
        (["--rate-limit-resource", "gpu:x"], "NAME[:COUNT[:global]]"),
        (["--priority-queue-policy", "2:oops"], "LEVEL:TIMEOUT_US"),
        (
            [
                "--priority-levels",
                "2",
                "--default-priority-level",
                "1",
                "--priority-queue-policy",
                "3:100",
            ],
            "priority 3 needs priority levels",
        ),
    ],
)
def test_bad_scheduling_options_are_clear_errors_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    before = snapshot(tmp_path)
    code, out = run("build", SILERO, "-n", "vad", "-o", tmp_path / "repo", *args)
    assert code != 0
    assert message in out, out
    assert snapshot(tmp_path) == before


def test_cache_and_rate_limiter_reach_the_config_docker_and_k8s(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    repo = tmp_path / "repo"
    code, out = run(
        "build",
        model_files["mlp"],
        "-n",
        "mlp",
        "-o",
        repo,
        "--response-cache",
        "--rate-limit-resource",
        "gpu_mem:2:global",
        "--rate-limit-priority",
        "2",
        "--priority-levels",
        "2",
        "--default-priority-level",
        "2",
        "--priority-queue-policy",
        "1:5000:DELAY:8",
    )
    assert code == 0, out
    config = parse_config((repo / "mlp" / "config.pbtxt").read_text())
    assert config.response_cache.enable
    limiter = config.instance_group[0].rate_limiter
    assert (limiter.resources[0].name, limiter.resources[0].count) == ("gpu_mem", 2)
    assert getattr(limiter.resources[0], "global") and limiter.priority == 2
    policy = config.dynamic_batching.priority_queue_policy[1]
    assert (policy.default_timeout_microseconds, policy.max_queue_size) == (5000, 8)

    code, out = run("docker", repo, "-o", tmp_path / "docker")
    assert code == 0, out
    dockerfile = (tmp_path / "docker" / "Dockerfile").read_text()
    assert '"--cache-config=local,size=67108864", "--rate-limit=execution_count"]' in dockerfile
    compose = yaml.safe_load((tmp_path / "docker" / "compose.yaml").read_text())
    service = next(iter(compose["services"].values()))
    assert "--rate-limit=execution_count" in service["command"]

    for extra, kind in (([], "Deployment"), (["--kserve"], "InferenceService")):
        out_dir = tmp_path / f"k8s-{kind}"
        code, out = run("k8s", repo, "--repository-uri", "s3://b/m", "-o", out_dir, *extra)
        assert code == 0, out
        name = "deployment.yaml" if kind == "Deployment" else "inferenceservice.yaml"
        doc = yaml.safe_load((out_dir / name).read_text())
        if kind == "Deployment":
            args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        else:
            args = doc["spec"]["predictor"]["model"]["args"]
        assert "--rate-limit=execution_count" in args
        assert any(a.startswith("--cache-config=local") for a in args)
