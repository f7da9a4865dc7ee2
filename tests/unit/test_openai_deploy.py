"""The OpenAI service beside Triton in docker / k8s / mesh assets (offline, no engine or cluster)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from packager.cli import main
from packager.deploy import openai_sidecar as oai
from packager.deploy.docker import render_docker
from packager.deploy.k8s import K8sOptions, render_k8s
from packager.deploy.mesh import MeshOptions, render_mesh
from packager.errors import PackagerError
from tests.support.deploy import mixed_repo, validate_resource
from tests.support.tree import snapshot
from tests.unit.test_docker import _tool

BUILT = "registry.example.com/ml/triton-packager/model_repository:24.10-py3"
OPENAI_IMAGE = "registry.example.com/ml/triton-packager/model_repository-openai:0.1.0"


def _opts(uri: str = "pvc://claim/repo", **changes: Any) -> K8sOptions:
    given = {"image": BUILT, "openai_port": 9000, "openai_image": OPENAI_IMAGE}
    return K8sOptions(uri, **{**given, "api_key_secret": "openai-key", **changes})


def test_docker_adds_an_openai_image_and_compose_service_that_lint(tmp_path: Path) -> None:
    assets = render_docker(mixed_repo(tmp_path), tmp_path / "docker", openai_port=9000)
    dockerfile = tmp_path / "Dockerfile.openai"
    dockerfile.write_text(assets.files[oai.DOCKERFILE], encoding="utf-8")
    compose = tmp_path / "compose.yaml"
    compose.write_text(assets.files["compose.yaml"], encoding="utf-8")
    lint = [_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)]
    proc = subprocess.run(lint, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)]
    proc = subprocess.run(spec, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    text = assets.files[oai.DOCKERFILE]
    assert f'"{oai.requirement()}"' in text and "USER 10001" in text and "EXPOSE 9000" in text
    service = yaml.safe_load(assets.files["compose.yaml"])["services"]["openai"]
    assert service["build"]["dockerfile"] == oai.DOCKERFILE
    assert "--url=grpc://triton:8001" in service["command"]
    assert "--host=0.0.0.0" in service["command"] and "--repository=/models" in service["command"]
    assert service["ports"] == ["9000:9000"]
    # The key comes from the shell at `compose up` (which fails if it is unset), never the file.
    assert service["environment"] == {
        oai.KEY_ENV: f"${{{oai.KEY_ENV}:?set {oai.KEY_ENV} to the API key clients must send}}"
    }
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service["depends_on"] == {"triton": {"condition": "service_healthy"}}
    assert any(oai.KEY_ENV in note for note in assets.notes)


def test_docker_without_the_flag_is_unchanged(tmp_path: Path) -> None:
    assets = render_docker(mixed_repo(tmp_path), tmp_path / "docker")
    assert oai.DOCKERFILE not in assets.files
    assert "openai" not in yaml.safe_load(assets.files["compose.yaml"])["services"]


@pytest.mark.parametrize("port", [8001, 0, 70000])
def test_docker_refuses_a_clashing_port(tmp_path: Path, port: int) -> None:
    with pytest.raises(PackagerError, match="--openai-port"):
        render_docker(mixed_repo(tmp_path), tmp_path / "d", openai_port=port)


@pytest.mark.parametrize("uri", ["pvc://claim/repo", "s3://bucket/models"])
def test_k8s_sidecar_with_probes_secret_and_service_port(tmp_path: Path, uri: str) -> None:
    manifests = render_k8s(mixed_repo(tmp_path), _opts(uri), tmp_path / "out")
    docs = {d["kind"]: d for d in manifests.resources}
    for doc in manifests.resources:
        assert validate_resource(doc) == [], doc["kind"]
    assert "&id" not in "".join(manifests.files.values())  # no YAML anchors
    triton, sidecar = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert triton["name"] == "tritonserver" and sidecar["image"] == OPENAI_IMAGE
    assert "--url=grpc://localhost:8001" in sidecar["args"] and "--host=0.0.0.0" in sidecar["args"]
    assert sidecar["env"] == [
        {
            "name": oai.KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": "openai-key", "key": oai.SECRET_KEY}},
        }
    ]
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/health", "port": "openai"}
    assert sidecar["livenessProbe"]["tcpSocket"] == {"port": "openai"}
    # A PVC is mounted in the sidecar too (chat templates); object storage is Triton's alone.
    assert ("--repository=/models" in sidecar["args"]) == uri.startswith("pvc")
    assert ("volumeMounts" in sidecar) == uri.startswith("pvc")
    ports = {p["name"]: p for p in docs["Service"]["spec"]["ports"]}
    assert ports["openai"]["port"] == 9000 and ports["openai"]["targetPort"] == "openai"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_key_secret": None}, "--api-key-secret"),
        ({"openai_image": None}, "--openai-image"),
        ({"api_key_secret": "Bad_Name"}, "not a Secret name"),
        ({"kserve": True}, "--kserve"),
        ({"openai_port": None}, "need --openai-port"),
        ({"openai_image": "tp-openai:latest"}, "latest"),
    ],
)
def test_k8s_refuses_an_incomplete_sidecar(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(PackagerError, match=message):
        render_k8s(mixed_repo(tmp_path), _opts("s3://bucket/m", **changes), tmp_path / "o")


@pytest.mark.parametrize("mesh", ["istio", "gateway", "linkerd"])
def test_mesh_routes_the_openai_port_like_triton(tmp_path: Path, mesh: str) -> None:
    options = MeshOptions(k8s=_opts(), canary_uri="pvc://claim/repo2", mesh=mesh, canary_weight=10)
    manifests = render_mesh(mixed_repo(tmp_path), options, tmp_path / "m")
    for doc in manifests.resources:
        assert validate_resource(doc) == [], doc["kind"]
    deployments = [d for d in manifests.resources if d["kind"] == "Deployment"]
    for d in deployments:
        assert [c["name"] for c in d["spec"]["template"]["spec"]["containers"]][-1] == "openai"
    if mesh == "istio":
        [vs] = [d for d in manifests.resources if d["kind"] == "VirtualService"]
        [route] = [r for r in vs["spec"]["http"] if r["name"] == "openai"]
        assert route["match"] == [{"port": 9000}]
        assert [r["weight"] for r in route["route"]] == [90, 10]
    else:
        [route] = [d for d in manifests.resources if d["metadata"]["name"].endswith("-openai")]
        assert route["kind"] == "HTTPRoute"
        assert route["spec"]["parentRefs"][0]["port"] == 9000
        assert [b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]] == [90, 10]


def test_cli_docker_and_k8s_write_the_sidecar(tmp_path: Path) -> None:
    repo = mixed_repo(tmp_path)
    runner = CliRunner()
    out = tmp_path / "docker"
    result = runner.invoke(
        main, ["docker", str(repo), "-o", str(out), "--openai-port", "9000", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert (out / oai.DOCKERFILE).is_file()
    k8s_out = tmp_path / "k8s"
    args = ["k8s", str(repo), "--repository-uri", "s3://bucket/m", "--image", BUILT]
    args += ["--openai-port", "9000", "--openai-image", OPENAI_IMAGE]
    args += ["--api-key-secret", "openai-key", "-o", str(k8s_out), "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    text = (k8s_out / "deployment.yaml").read_text()
    assert "--openai-port 9000" in text.splitlines()[1]  # the regenerate line carries the flags
    before = snapshot(k8s_out)
    refused = runner.invoke(main, [*args[:-5], "-o", str(k8s_out), "--json"])  # no secret
    assert refused.exit_code != 0 and "--api-key-secret" in refused.output
    assert snapshot(k8s_out) == before


def test_the_container_command_needs_a_key_and_answers_health(tmp_path: Path) -> None:
    """The sidecar's command line, run for real (no Triton behind it): refused without a key on
    0.0.0.0; with one, /health says 503 (Triton down), which keeps the pod unready."""
    import os
    import socket
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port, triton = s.getsockname()[1], s.getsockname()[1]
    args = [sys.executable, "-m", "packager", *oai.command(port, "127.0.0.1", None)[1:]]
    args = [a.replace(":8001", f":{triton}") for a in args]  # a closed port: Triton is down
    env = {k: v for k, v in os.environ.items() if k != oai.KEY_ENV}
    refused = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and oai.KEY_ENV in refused.stderr
    proc = subprocess.Popen(args, env={**env, oai.KEY_ENV: "sk-test"}, stderr=subprocess.PIPE)
    try:
        status = None
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{oai.HEALTH_PATH}", timeout=5)
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
                continue
            break
        assert status == 503
    finally:
        proc.terminate()
        proc.wait(timeout=60)
