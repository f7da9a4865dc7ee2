"""vLLM's ``model.json`` path is right wherever the repository is deployed, or the deployment is
refused with the reason.

Triton's vLLM backend (r24.10 ``src/model.py``) passes model.json's ``"model"`` to vLLM as written;
nothing resolves it against the model folder. So the absolute path chosen at build time must be
where each deployment puts the repository: ``/models`` for docker and for a PVC (mounted as a
subPath), ``/mnt/models`` for KServe; object storage lands in a temporary folder (refused).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from packager.builder import build
from packager.deploy.docker import render_docker
from packager.deploy.k8s import K8sOptions, render_k8s, write_k8s
from packager.deploy.mesh import MeshOptions, render_mesh
from packager.errors import PackagerError
from packager.releases import NGC_VLLM_IMAGE
from tests.support.deploy import validate_resource
from tests.support.gen_models import make_causal_lm


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_causal_lm(tmp_path_factory.mktemp("vllm") / "llama", "llama")


@pytest.fixture
def repo(llama: Path, tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    build(str(llama), name="chat", output=out, backend="vllm", kind="gpu")
    return out


def _model_path(repo: Path) -> str:
    return str(json.loads((repo / "chat" / "1" / "model.json").read_text())["model"])


def test_docker_mounts_the_repository_where_model_json_points(repo: Path, tmp_path: Path) -> None:
    assert _model_path(repo) == "/models/chat/1/hf"
    assets = render_docker(repo, tmp_path / "docker", gpus="0")
    assert any(arg.endswith(":/models:ro") for arg in assets.run_command)


def test_a_pvc_sub_path_is_mounted_at_models(repo: Path, tmp_path: Path) -> None:
    manifests = render_k8s(repo, K8sOptions("pvc://store/teams/llm"), tmp_path)
    deployment = yaml.safe_load(manifests.files["deployment.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == NGC_VLLM_IMAGE
    assert "--model-repository=/models" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "model-repository")
    assert mount == {
        "name": "model-repository", "mountPath": "/models", "readOnly": True,
        "subPath": "teams/llm",
    }  # fmt: skip
    # /models/chat/1/hf in the pod is <claim>/teams/llm/chat/1/hf: where the weights are.
    assert _model_path(repo) == f"{mount['mountPath']}/chat/1/hf"
    assert validate_resource(deployment) == []


@pytest.mark.parametrize("uri", ["s3://bucket/llm", "gs://bucket/llm", "az://acct/models/llm"])
def test_object_storage_is_refused_with_the_reason(repo: Path, tmp_path: Path, uri: str) -> None:
    out = tmp_path / "k8s"
    with pytest.raises(PackagerError) as info:
        write_k8s(repo, K8sOptions(uri), out)
    message = str(info.value)
    assert "temporary folder" in message and "as written" in message
    assert "pvc://CLAIM/PATH" in message and "--kserve" in message
    assert not out.exists()
    with pytest.raises(PackagerError, match="temporary folder"):
        render_mesh(repo, MeshOptions(K8sOptions(uri), canary_uri=uri), tmp_path / "mesh")


def test_kserve_needs_the_path_it_downloads_to(llama: Path, repo: Path, tmp_path: Path) -> None:
    with pytest.raises(PackagerError) as info:
        render_k8s(repo, K8sOptions("s3://bucket/llm", kserve=True), tmp_path)
    message = str(info.value)
    assert "KServe" in message and "/mnt/models" in message
    assert "--parameter vllm.model=/mnt/models/chat/1/hf" in message
    # The way out works: built for KServe's folder, the manifests are written and valid...
    for_kserve = tmp_path / "kserve-repo"
    build(str(llama), name="chat", output=for_kserve, backend="vllm", kind="gpu",
          parameters={"vllm.model": "/mnt/models/chat/1/hf"})  # fmt: skip
    manifests = render_k8s(for_kserve, K8sOptions("s3://bucket/llm", kserve=True), tmp_path)
    runtime = next(d for d in manifests.resources if d["kind"] == "ServingRuntime")
    assert runtime["spec"]["containers"][0]["image"] == NGC_VLLM_IMAGE
    assert "--model-repository=/mnt/models" in runtime["spec"]["containers"][0]["args"]
    for doc in manifests.resources:
        assert validate_resource(doc) == [], doc["kind"]
    # ... and docker, which mounts at /models, now refuses that build, naming both paths.
    with pytest.raises(PackagerError, match=r"'/mnt/models/chat/1/hf', but there it is /models"):
        render_docker(for_kserve, tmp_path / "docker", gpus="0")
