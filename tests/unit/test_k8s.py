"""Kubernetes/KServe manifests: validated offline against Kubernetes' and the CRDs' schemas."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager.deploy import footprint
from packager.deploy.k8s import ALL_FILES, K8sOptions, StorageUri, render_k8s, write_k8s
from packager.errors import PackagerError
from tests.support.deploy import (
    BUILT,
    mixed_repo,
    native_cpu_repo,
    python_model,
    validate_resource,
    write_model,
)
from tests.support.tree import snapshot

ROOT = Path(__file__).resolve().parents[2]


def opts(repository_uri: str, **changes: Any) -> K8sOptions:
    return K8sOptions(repository_uri, **{"image": BUILT, **changes})


CONFIGS: dict[str, dict[str, Any]] = {
    "s3-1gpu": {"repository_uri": "s3://bucket/models", "replicas": 2, "gpus_per_replica": 1},
    "s3-secret-monitor": {
        "repository_uri": "s3://bucket/models",
        "credentials_secret": "s3-creds",
        "service_monitor": True,
        "namespace": "ml",
    },
    "gs-2gpu-secret": {
        "repository_uri": "gs://bucket/a/b",
        "gpus_per_replica": 2,
        "credentials_secret": "gcs",
        "min_replicas": 1,
        "max_replicas": 6,
    },
    "az-queue": {
        "repository_uri": "az://acct/models/repo",
        "credentials_secret": "azure",
        "scale_metric": "queue",
        "scale_target": 4,
    },
    "pvc-4gpu": {
        "repository_uri": "pvc://model-store/triton",
        "gpus_per_replica": 4,
        "replicas": 3,
    },
    "overrides": {
        "repository_uri": "s3://host.example:9000/bucket/models",
        "cpu": "2500m",
        "memory": "8Gi",
        "shm_size": "2g",
        "name": "scorer",
    },
    "kserve-s3": {"repository_uri": "s3://bucket/models", "kserve": True, "replicas": 2},
    "kserve-gs-secret": {
        "repository_uri": "gs://bucket/m",
        "kserve": True,
        "credentials_secret": "gcs",
        "gpus_per_replica": 2,
    },
    "kserve-az": {"repository_uri": "az://acct/models", "kserve": True, "namespace": "ml"},
    "kserve-pvc": {"repository_uri": "pvc://claim/repo", "kserve": True, "max_replicas": 5},
}


def _docs(manifests: Any) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in manifests.resources}


def _container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return mixed_repo(tmp_path)


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_resource_passes_its_schema(repo: Path, tmp_path: Path, config: str) -> None:
    manifests = render_k8s(repo, opts(**CONFIGS[config]), tmp_path / "out")
    assert manifests.resources
    for name, text in manifests.files.items():
        [doc] = list(yaml.safe_load_all(text))  # one resource per file, parses back
        assert validate_resource(doc) == [], name
    kinds = {doc["kind"] for doc in manifests.resources}
    if CONFIGS[config].get("kserve"):
        assert "InferenceService" in kinds and "Deployment" not in kinds
    else:
        assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0, "resourcez"], {}),
        ("Deployment", ["spec", "replicas"], "2"),
        ("HorizontalPodAutoscaler", ["spec", "maxReplicas"], "many"),
        ("InferenceService", ["spec", "predictor", "model", "storageURI"], "s3://x"),
        ("InferenceService", ["spec", "predictor", "minReplicas"], "1"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "prot"], "metrics"),
    ],
)
def test_validators_catch_a_broken_resource(
    repo: Path, tmp_path: Path, kind: str, path: list[Any], value: Any
) -> None:
    """The schema checks can fail: one wrong field is reported."""
    config = "kserve-s3" if kind == "InferenceService" else "s3-secret-monitor"
    doc = copy.deepcopy(_docs(render_k8s(repo, opts(**CONFIGS[config]), tmp_path))[kind])
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert validate_resource(doc)


def test_example_repository_validates_with_one_and_several_gpus(tmp_path: Path) -> None:
    repo = ROOT / "model_repository"
    if not any(repo.glob("*/config.pbtxt")):
        pytest.skip("model_repository/ is not built yet")
    for gpus in (1, 2, 4):
        for kserve in (False, True):
            options = opts("s3://bucket/models", replicas=2, gpus_per_replica=gpus, kserve=kserve)
            for doc in render_k8s(repo, options, tmp_path).resources:
                assert validate_resource(doc) == []


# --------------------------------------------------------------------------- content


def test_deployment_runs_triton_on_the_uri_with_gpus_probes_and_shm(
    repo: Path, tmp_path: Path
) -> None:
    docs = _docs(render_k8s(repo, opts(**CONFIGS["s3-1gpu"]), tmp_path))
    deployment = docs["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    c = _container(docs)
    assert deployment["spec"]["replicas"] == 2
    assert c["args"][:2] == ["tritonserver", "--model-repository=s3://bucket/models"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["failureThreshold"] >= 30
    assert [p["containerPort"] for p in c["ports"]] == [8000, 8001, 8002]
    [shm] = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8002"
    assert "env" not in c  # no credentials asked for, none invented


def test_service_and_hpa(repo: Path, tmp_path: Path) -> None:
    options = opts("s3://b/m", replicas=2, min_replicas=1, max_replicas=5)
    docs = _docs(render_k8s(repo, options, tmp_path))
    service, hpa = docs["Service"], docs["HorizontalPodAutoscaler"]
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_queue_metric_scales_on_pending_requests(repo: Path, tmp_path: Path) -> None:
    docs = _docs(render_k8s(repo, opts(**CONFIGS["az-queue"]), tmp_path))
    [metric] = docs["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "4"}


def test_s3_credentials_come_from_the_secret(repo: Path, tmp_path: Path) -> None:
    manifests = render_k8s(repo, opts(**CONFIGS["s3-secret-monitor"]), tmp_path)
    env = {e["name"]: e for e in _container(_docs(manifests))["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": key}
        assert "value" not in env[key]  # never inlined
    assert env["AWS_DEFAULT_REGION"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert all(doc["metadata"]["namespace"] == "ml" for doc in manifests.resources)
    monitor = _docs(manifests)["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_gcs_credentials_are_a_mounted_secret_file(repo: Path, tmp_path: Path) -> None:
    docs = _docs(render_k8s(repo, opts(**CONFIGS["gs-2gpu-secret"]), tmp_path))
    c = _container(docs)
    env = {e["name"]: e for e in c["env"]}
    path = env["GOOGLE_APPLICATION_CREDENTIALS"]["value"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "gcs-credentials")
    assert path.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
    volumes = docs["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "gcs-credentials", "secret": {"secretName": "gcs"}} in volumes
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2


def test_azure_uri_is_spelled_for_triton_and_kserve() -> None:
    uri = StorageUri.parse("az://acct/models/repo")
    assert uri.for_triton() == "as://acct/models/repo"
    assert uri.for_kserve() == "https://acct.blob.core.windows.net/models/repo"
    assert StorageUri.parse("as://acct/models") == StorageUri.parse("az://acct/models")


def test_pvc_repository_is_mounted_read_only(repo: Path, tmp_path: Path) -> None:
    docs = _docs(render_k8s(repo, opts(**CONFIGS["pvc-4gpu"]), tmp_path))
    c = _container(docs)
    # The claim's folder is the repository itself at /models (a subPath), as docker mounts it:
    # paths written at build time (vLLM's model.json) hold in both.
    assert "--model-repository=/models" in c["args"]
    volumes = docs["Deployment"]["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in volumes if v["name"] == "model-repository")["persistentVolumeClaim"]
    assert claim == {"claimName": "model-store", "readOnly": True}
    mount = {"name": "model-repository", "mountPath": "/models", "readOnly": True}
    assert {**mount, "subPath": "triton"} in c["volumeMounts"]


def test_kserve_inference_service(repo: Path, tmp_path: Path) -> None:
    manifests = render_k8s(repo, opts(**CONFIGS["kserve-gs-secret"]), tmp_path)
    docs = _docs(manifests)
    predictor = docs["InferenceService"]["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "triton", "version": "2"}
    # KServe's way to run a custom image: our own ServingRuntime, named by the model.
    runtime = docs["ServingRuntime"]
    assert model["runtime"] == runtime["metadata"]["name"]
    [container] = runtime["spec"]["containers"]
    assert container["image"] == BUILT
    assert "--model-repository=/mnt/models" in container["args"]
    assert "--http-port=8080" in container["args"] and "--grpc-port=9000" in container["args"]
    assert runtime["spec"]["supportedModelFormats"] == [
        {"name": "triton", "version": "2", "autoSelect": False}
    ]
    assert model["storageUri"] == "gs://bucket/m"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert model["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 2)
    assert predictor["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert docs["ServiceAccount"]["secrets"] == [{"name": "gcs"}]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in model["volumeMounts"]
    assert sorted(manifests.files) == [
        "inferenceservice.yaml", "serviceaccount.yaml", "servingruntime.yaml",
    ]  # fmt: skip


def test_resources_follow_the_repository(tmp_path: Path) -> None:
    """More instances and bigger models ask for more CPU and memory."""
    small, big = tmp_path / "small", tmp_path / "big"
    python_model(small, "m", "model.onnx", "{ kind: KIND_CPU count: 1 }", size=1 << 20)
    python_model(big, "m", "model.onnx", "{ kind: KIND_CPU count: 4 }", size=300 << 20)
    options = opts("s3://b/m", gpus_per_replica=0)

    def requests(repo: Path) -> dict[str, str]:
        return _container(_docs(render_k8s(repo, options, tmp_path)))["resources"]["requests"]

    assert requests(small) == {"cpu": "1500m", "memory": "1Gi"}
    # 4 stubs x (300 MiB x 1.5 + 256 MiB) + 512 MiB = 3336 MiB -> 3584 MiB (256 MiB steps)
    assert requests(big) == {"cpu": "4500m", "memory": "3584Mi"}


def test_memory_limit_leaves_room_for_shm(repo: Path, tmp_path: Path) -> None:
    c = _container(_docs(render_k8s(repo, opts(**CONFIGS["overrides"]), tmp_path)))
    assert c["resources"]["requests"] == {"cpu": "2500m", "memory": "8Gi"}
    assert c["resources"]["limits"]["memory"] == "10Gi"  # 8Gi + 2g of /dev/shm


# --------------------------------------------------------------------------- footprint


def test_footprint_counts_instances_versions_and_bytes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(
        repo,
        "gpu",
        'platform: "onnxruntime_onnx"',
        instance_groups="{ kind: KIND_GPU count: 2 }, { kind: KIND_CPU count: 1 }",
        extra="version_policy { latest { num_versions: 2 } }\n",
        files={1: {"model.onnx": 100}, 2: {"model.onnx": 200}, 3: {"model.onnx": 400}},
    )
    write_model(repo, "auto", 'platform: "pytorch_libtorch"', files={1: {"model.pt": 7}})
    write_model(
        repo,
        "pinned",
        'platform: "onnxruntime_onnx"',
        instance_groups="{ kind: KIND_GPU count: 1 gpus: [ 0, 2 ] }",
        extra="version_policy { specific { versions: [ 1 ] } }\n",
        files={1: {"model.onnx": 5}, 2: {"model.onnx": 50}},
    )
    write_model(repo, "ens", 'platform: "ensemble"', files={1: {}})
    by_name = {m.name: m for m in footprint.scan(repo, gpus=3)}
    gpu = by_name["gpu"]
    assert gpu.served_versions == (2, 3) and gpu.file_bytes == 600
    assert (gpu.gpu_instances, gpu.cpu_instances) == (6, 1)  # 2 per GPU x 3 GPUs
    assert (by_name["auto"].gpu_instances, by_name["auto"].cpu_instances) == (3, 0)
    assert by_name["pinned"].pinned_gpus == (0, 2) and by_name["pinned"].gpu_instances == 2
    assert by_name["pinned"].served_versions == (1,) and by_name["pinned"].file_bytes == 5
    assert by_name["ens"].instances == 0
    cpu_only = {m.name: m for m in footprint.scan(repo, gpus=0)}
    assert (cpu_only["auto"].cpu_instances, cpu_only["auto"].gpu_instances) == (1, 0)
    with pytest.raises(PackagerError, match="pins GPU 2 but --gpus-per-replica gives 2 GPUs"):
        render_k8s(repo, opts("s3://b/m", gpus_per_replica=2), tmp_path)


# --------------------------------------------------------------------------- determinism, writing


def test_output_is_deterministic(repo: Path, tmp_path: Path) -> None:
    options = opts(**CONFIGS["gs-2gpu-secret"], service_monitor=True)
    write_k8s(repo, options, tmp_path / "a")
    write_k8s(repo, options, tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert (
        render_k8s(repo, options, tmp_path / "a").files
        == render_k8s(repo, options, tmp_path / "a").files
    )
    first_line = (tmp_path / "a" / "deployment.yaml").read_text().splitlines()[1]
    assert "triton-packager k8s ../model_repository --repository-uri gs://bucket/a/b" in first_line


def test_rerun_removes_our_stale_files_only(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_k8s(repo, opts("s3://b/m", service_monitor=True), out)
    (out / "notes.yaml").write_text("mine: true\n")
    write_k8s(repo, opts("s3://b/m", kserve=True), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "inferenceservice.yaml", "notes.yaml", "servingruntime.yaml",
    ]  # fmt: skip
    assert set(ALL_FILES) >= {"inferenceservice.yaml", "servicemonitor.yaml"}


def test_foreign_file_is_not_overwritten(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "service.yaml").write_text("apiVersion: v1\nkind: Service\n")
    before = snapshot(out)
    with pytest.raises(PackagerError, match="not generated by triton-packager"):
        write_k8s(repo, opts("s3://b/m"), out)
    assert snapshot(out) == before


BAD = [
    ({"replicas": -1}, "--replicas must be at least 1"),
    ({"replicas": 0}, "--replicas must be at least 1"),
    ({"gpus_per_replica": -2}, "--gpus-per-replica must be 0 or more"),
    ({"repository_uri": "ftp://host/models"}, "unknown scheme"),
    ({"repository_uri": "/data/models"}, "unknown scheme"),
    ({"repository_uri": "pvc://Bad_Claim/x"}, "not a PersistentVolumeClaim name"),
    ({"repository_uri": "az://acct"}, "az://ACCOUNT/CONTAINER"),
    ({"min_replicas": 3, "max_replicas": 2}, "--min-replicas"),
    ({"replicas": 5, "max_replicas": 4}, "--max-replicas"),
    ({"repository_uri": "pvc://claim/x", "credentials_secret": "s"}, "needs none"),
    ({"credentials_secret": "Bad Secret"}, "not a Secret name"),
    ({"name": "My_Model"}, "--name"),
    ({"namespace": "ML"}, "--namespace"),
    ({"scale_target": 0}, "--scale-target"),
    ({"kserve": True, "scale_metric": "queue"}, "with --kserve use cpu"),
    ({"image": "nvcr.io/nvidia/tritonserver:24.10-py3"}, "need pip packages that nvcr.io"),
    ({"kserve": True, "image": "nvcr.io/nvidia/tritonserver:24.10-py3"}, "docker build -t"),
    ({"kserve": True, "repository_uri": "s3://minio:9000/b/m"}, "s3-endpoint"),
    ({"cpu": "lots"}, "--cpu"),
    ({"memory": "8 GB"}, "--memory"),
    ({"image": "nvcr.io/nvidia/tritonserver:latest"}, "latest"),
    ({"gpus_per_replica": 0}, "KIND_GPU instances but --gpus-per-replica gives no GPU"),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_options_fail_clearly_and_write_nothing(
    repo: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    out = tmp_path / "deploy"
    options = opts(**{"repository_uri": "s3://b/m", **changes})
    with pytest.raises(PackagerError, match=message.replace("(", r"\(")):
        write_k8s(repo, options, out)
    assert not out.exists()


def test_cpu_only_repository_needs_no_gpu(tmp_path: Path) -> None:
    repo = native_cpu_repo(tmp_path)
    docs = _docs(render_k8s(repo, opts("s3://b/m", gpus_per_replica=0), tmp_path))
    c = _container(docs)
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert "tolerations" not in docs["Deployment"]["spec"]["template"]["spec"]
    assert docs["Deployment"]["metadata"]["name"] == "native-repository"
