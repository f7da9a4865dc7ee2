"""`docker` and `k8s` through click's CliRunner (files are checked; no Docker engine, no cluster)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from packager.cli import main
from tests.support.deploy import BUILT, mixed_repo, validate_resource
from tests.support.tree import snapshot


def run(*args: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return mixed_repo(tmp_path)


def test_docker_writes_assets_and_prints_commands_no_docker_engine(
    repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "docker"
    code, stdout, stderr = run("docker", repo, "--gpus", "all", "-o", out, "--pip", "scipy==1.13.1")
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == ["Dockerfile", "compose.yaml"]
    lines = dict(line.split(":", 1) for line in stdout.splitlines() if not line.startswith("wrote"))
    run_argv = shlex.split(lines["run"])
    assert run_argv[:3] == ["docker", "run", "--rm"]
    assert run_argv[run_argv.index("--gpus") + 1] == "all"
    assert f"{repo.resolve()}:/models:ro" in run_argv
    assert shlex.split(lines["build"])[:2] == ["docker", "build"]
    assert '"scipy==1.13.1"' in (out / "Dockerfile").read_text()
    assert stderr == ""


def test_docker_json(repo: Path, tmp_path: Path) -> None:
    code, stdout, _ = run("docker", repo, "--gpus", "0", "-o", tmp_path / "d", "--json")
    assert code == 0
    info = json.loads(stdout)
    assert info["files"] == [
        str(tmp_path / "d" / "Dockerfile"),
        str(tmp_path / "d" / "compose.yaml"),
    ]
    assert info["pip"] == ["numpy==1.26.4", "onnxruntime-gpu==1.19.2"]
    assert info["shm_size"] == "1g"
    assert '"device=0"' in shlex.split(info["run_command"])


def test_docker_bad_gpus_is_an_error_and_writes_nothing(repo: Path, tmp_path: Path) -> None:
    code, _, stderr = run("docker", repo, "--gpus", "first", "-o", tmp_path / "d")
    assert code == 1
    assert stderr.startswith("error: --gpus 'first'")
    assert not (tmp_path / "d").exists()


def test_docker_unpinned_extra_is_noted(repo: Path, tmp_path: Path) -> None:
    code, _, stderr = run("docker", repo, "-o", tmp_path / "d", "--pip", "scipy")
    assert code == 0
    assert "note: --pip scipy is not pinned" in stderr


def test_k8s_writes_valid_manifests(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "k8s"
    code, stdout, stderr = run(
        "k8s",
        repo,
        "--repository-uri",
        "s3://bucket/models",
        "--replicas",
        "2",
        "--gpus-per-replica",
        "1",
        "--namespace",
        "ml",
        "--credentials-secret",
        "s3-creds",
        "--image",
        BUILT,
        "-o",
        out,
    )
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    for path in out.iterdir():
        assert validate_resource(yaml.safe_load(path.read_text())) == []
    assert f"apply: kubectl apply -f {out}" in stdout
    assert "Deployment model-repository" in stdout


def test_k8s_kserve_json(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "isvc"
    code, stdout, stderr = run(
        "k8s",
        repo,
        "--repository-uri",
        "gs://b/m",
        "--kserve",
        "--gpus-per-replica",
        "2",
        "--image",
        BUILT,
        "-o",
        out,
        "--json",
    )
    assert code == 0, stdout + stderr
    info = json.loads(stdout)
    assert [r["kind"] for r in info["resources"]] == ["InferenceService", "ServingRuntime"]
    assert any("workload identity" in n for n in info["notes"])
    for name in ("inferenceservice.yaml", "servingruntime.yaml"):
        assert validate_resource(yaml.safe_load((out / name).read_text())) == []


def test_k8s_refuses_the_stock_image_and_prints_the_way_out(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    for extra in ((), ("--kserve",)):
        code, _, stderr = run(
            "k8s", repo, "--repository-uri", "s3://b/m", *extra, "-o", out
        )  # fmt: skip
        assert code == 1
        assert "pymlp need pip packages that nvcr.io/nvidia/tritonserver:24.10-py3 lacks" in stderr
        assert f"triton-packager docker {repo} --output docker" in stderr
        assert 'docker build -t "$REGISTRY/triton-packager/model_repository:24.10-py3"' in stderr
        assert 'docker push "$REGISTRY/triton-packager/model_repository:24.10-py3"' in stderr
        assert '--image "$REGISTRY/triton-packager/model_repository:24.10-py3"' in stderr
        assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas", "-1"], "--replicas must be at least 1"),
        (["--repository-uri", "ftp://x/models"], "unknown scheme"),
        (["--min-replicas", "4", "--max-replicas", "2"], "--min-replicas"),
    ],
)
def test_k8s_bad_option_is_a_clear_error_and_writes_nothing(
    repo: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "k8s"
    before = snapshot(repo)
    code, _, stderr = run("k8s", repo, "--repository-uri", "s3://b/m", *args, "-o", out)
    assert code == 1
    assert stderr.startswith("error: ") and message in stderr
    assert not out.exists()
    assert snapshot(repo) == before


@pytest.mark.parametrize("command", ["docker", "k8s"])
def test_help(command: str) -> None:
    code, stdout, _ = run(command, "--help")
    assert code == 0 and "REPOSITORY" in stdout
