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


@functools.cache
def _crd_validator(filename: str) -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / filename).read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(schema)))


CRD_SCHEMAS = {
    (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    ): "kserve_inferenceservice_v1beta1.schema.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.schema.json",
}


def validate_resource(doc: dict[str, Any]) -> list[str]:
    """Every schema problem of one resource: Kubernetes' own schemas, or the vendored CRD's."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        validator = _crd_validator(CRD_SCHEMAS[key])  # type: ignore[index]
        return [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            problems.append(f"k8s {version}: {path}: {exc.message}")
    return problems
