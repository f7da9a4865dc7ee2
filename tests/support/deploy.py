"""Small model repositories and offline validators for the Docker/Kubernetes asset tests."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

DATA = Path(__file__).resolve().parent.parent / "data"
# Oldest Kubernetes release we promise (autoscaling/v2 GA since 1.23) and the newest schemas.
K8S_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())

# The image `triton-packager docker` writes for model_repository/, pushed to a registry: what k8s,
# KServe and mesh need for repositories whose Python-backend models import pip packages.
BUILT = "registry.example.com/ml/triton-packager/model_repository:24.10-py3"

_IO = """input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""


def write_model(
    repo: Path,
    name: str,
    header: str,
    *,
    instance_groups: str = "",
    extra: str = "",
    files: dict[int, dict[str, int]] | None = None,
) -> Path:
    """A model folder: config.pbtxt from ``header`` (platform/backend lines) + files of given sizes."""
    model = repo / name
    model.mkdir(parents=True)
    config = f'name: "{name}"\n{header}\nmax_batch_size: 8\n{_IO}'
    if instance_groups:
        config += f"instance_group [ {instance_groups} ]\n"
    config += extra
    (model / "config.pbtxt").write_text(config, encoding="utf-8")
    for version, version_files in (files or {1: {}}).items():
        folder = model / str(version)
        folder.mkdir()
        for fname, size in version_files.items():
            with open(folder / fname, "wb") as f:
                f.truncate(size)  # sparse: only the size matters to the sizing rules
    return model


def python_model(repo: Path, name: str, artifact: str, groups: str, size: int = 1000) -> Path:
    return write_model(
        repo,
        name,
        'backend: "python"',
        instance_groups=groups,
        extra=f'parameters {{ key: "artifact" value: {{ string_value: "{artifact}" }} }}\n',
        files={1: {"model.py": 10, artifact: size}},
    )


def mixed_repo(root: Path) -> Path:
    """A python-backend ONNX model on 2 CPU instances and a native ONNX model on the GPU."""
    repo = root / "model_repository"
    python_model(repo, "pymlp", "model.onnx", "{ kind: KIND_CPU count: 2 }")
    write_model(
        repo,
        "native",
        'platform: "onnxruntime_onnx"',
        instance_groups="{ kind: KIND_GPU count: 1 }",
        files={1: {"model.onnx": 2000}},
    )
    return repo


def native_cpu_repo(root: Path) -> Path:
    repo = root / "native_repository"
    write_model(
        repo,
        "mlp",
        'platform: "onnxruntime_onnx"',
        instance_groups="{ kind: KIND_CPU count: 1 }",
        files={1: {"model.onnx": 500}},
    )
    return repo


# --------------------------------------------------------------------------- validators


def _strict(node: Any) -> Any:
    """Reject unknown fields, as `kubectl apply --validate=strict` does for a CRD."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


# The fields the API server gives every custom resource; some CRDs (Istio's) leave them out.
_IMPLICIT = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object"},
}


@functools.cache
def _crd_validator(filename: str) -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / filename).read_text(encoding="utf-8"))
    schema["properties"] = {**_IMPLICIT, **schema["properties"]}
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(schema)))


# (apiVersion, kind) -> the vendored schemas a resource must pass (each file's "$comment" names
# its source); a kind read by several controllers is checked against each one's schema.
CRD_SCHEMAS: dict[tuple[str, str], tuple[str, ...]] = {
    ("serving.kserve.io/v1beta1", "InferenceService"): (
        "kserve_inferenceservice_v1beta1.schema.json",
    ),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): (
        "kserve_servingruntime_v1alpha1.schema.json",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("servicemonitor_v1.schema.json",),
    ("networking.istio.io/v1", "VirtualService"): ("istio_virtualservice_v1.schema.json",),
    ("networking.istio.io/v1", "DestinationRule"): ("istio_destinationrule_v1.schema.json",),
    ("security.istio.io/v1", "PeerAuthentication"): ("istio_peerauthentication_v1.schema.json",),
    # Gateway API v1.6.1 (standard channel) and v1.1.1 as Linkerd 2.18 installs it.
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (
        "gateway_httproute_v1.schema.json",
        "linkerd_gateway_httproute_v1.schema.json",
    ),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): (
        "gateway_grpcroute_v1.schema.json",
        "linkerd_gateway_grpcroute_v1.schema.json",
    ),
}


def validate_resource(doc: dict[str, Any], schemas: tuple[str, ...] | None = None) -> list[str]:
    """Every schema problem of one resource: Kubernetes' own schemas, or the vendored CRDs'.

    ``schemas`` picks some of the CRD files (e.g. only the Gateway API's own for a route that
    uses a field Linkerd's older copy lacks); default: every file listed for the kind.
    """
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        return [
            f"{filename}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for filename in schemas or CRD_SCHEMAS[key]  # type: ignore[index]
            for e in _crd_validator(filename).iter_errors(doc)
        ]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            problems.append(f"k8s {version}: {path}: {exc.message}")
    return problems
