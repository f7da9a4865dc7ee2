"""Kubernetes and KServe resources as plain dicts, built from a resolved :class:`Plan`.

:mod:`packager.deploy.k8s` checks the options and sizes the pods; this module only knows what each
resource looks like and why (GPU taints, probes, credentials from Secrets, memory-backed /dev/shm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from packager import releases as rel
from packager.deploy import openai_sidecar
from packager.deploy.docker import CONTAINER_REPOSITORY
from packager.errors import PackagerError
from packager.releases import TRITON_PORTS

GPU = "nvidia.com/gpu"
KSERVE_MOUNT = (
    "/mnt/models"  # where KServe's storage initializer (or a pvc:// mount) puts the repository
)
# Ports of KServe's own Triton runtime (config/runtimes/kserve-tritonserver.yaml): the
# InferenceService's Service and probes expect HTTP on 8080 and gRPC on 9000.
KSERVE_PORTS = {"http": 8080, "grpc": 9000}
PENDING_METRIC = "nv_inference_pending_request_count"  # Triton gauge: queued + executing requests
MOUNT = CONTAINER_REPOSITORY  # a PVC's repository folder is mounted where docker mounts it
GCS_KEY = "gcloud-application-credentials.json"  # the key name KServe's storage initializer reads
GCS_DIR = "/var/run/secrets/gcs"
SCHEMES = ("s3", "gs", "az", "pvc")
# Pod label that tells a stable from a canary Deployment of one name (the label Kubernetes' own
# canary example uses); mesh subsets and per-track Services select on it.
TRACK_LABEL = "track"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # and at most 63 characters
# Secret keys Triton reads as environment variables: (name, required).
_CREDENTIAL_ENV = {
    "s3": (
        ("AWS_ACCESS_KEY_ID", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_DEFAULT_REGION", False),
        ("AWS_SESSION_TOKEN", False),
    ),
    "az": (("AZURE_STORAGE_KEY", True),),
}


@dataclass(frozen=True)
class StorageUri:
    """Where the cluster reads the repository: ``s3://``, ``gs://``, ``az://`` or ``pvc://``."""

    scheme: str
    authority: str  # bucket (or host:port for S3-compatible stores), account, or claim
    path: str  # without leading or trailing slash

    @classmethod
    def parse(cls, uri: str) -> StorageUri:
        scheme, sep, rest = uri.partition("://")
        scheme = {"as": "az"}.get(scheme, scheme)  # Triton spells Azure as://
        if not sep or scheme not in SCHEMES:
            raise PackagerError(
                f"--repository-uri {uri!r}: unknown scheme; use s3://BUCKET/PATH, gs://BUCKET/PATH, "
                "az://ACCOUNT/CONTAINER/PATH or pvc://CLAIM/PATH (copy a local repository to one "
                "of these first, see docs/deploy.md)"
            )
        authority, _, path = rest.partition("/")
        path = path.strip("/")
        problem = None
        if re.search(r"[\s?#\"'\\]", uri):
            problem = "contains spaces, quotes, '?' or '#'"
        elif scheme == "pvc" and not (DNS_SUBDOMAIN.match(authority) and len(authority) <= 253):
            problem = f"{authority!r} is not a PersistentVolumeClaim name (lowercase DNS name)"
        elif scheme == "az" and (not re.match(r"^[a-z0-9]{3,24}$", authority) or not path):
            problem = "expected az://ACCOUNT/CONTAINER[/PATH] (storage account: 3-24 a-z0-9)"
        elif scheme in ("s3", "gs") and not re.match(r"^[a-z0-9][a-z0-9._:-]*$", authority):
            problem = f"{authority!r} is not a bucket name"
        if problem:
            raise PackagerError(f"--repository-uri {uri!r}: {problem}")
        return cls(scheme, authority, path)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}" + (f"/{self.path}" if self.path else "")

    def for_triton(self) -> str:
        """The ``--model-repository`` value: Triton reads s3/gs/as URIs itself; a PVC's folder is
        mounted at /models (a subPath), so paths written at build time (vLLM's model.json) hold."""
        if self.scheme == "pvc":
            return MOUNT
        if self.scheme == "az":
            return f"as://{self.authority}/{self.path}"
        return str(self)

    def for_kserve(self) -> str:
        """KServe's ``storageUri``: Azure as an https blob URL, the others unchanged."""
        if self.scheme == "az":
            return f"https://{self.authority}.blob.core.windows.net/{self.path}"
        if self.scheme == "s3" and ":" in self.authority:
            raise PackagerError(
                f"--repository-uri {self}: KServe reads s3://BUCKET/PATH; set the endpoint of an "
                "S3-compatible store with the serving.kserve.io/s3-endpoint annotation on the Secret"
            )
        return str(self)


@dataclass(frozen=True)
class Plan:
    """Every resolved value the manifests are built from (checked and sized by packager.deploy.k8s)."""

    name: str
    namespace: str | None
    image: str
    uri: StorageUri
    replicas: int
    gpus_per_replica: int
    credentials_secret: str | None
    scale_metric: str  # cpu | queue
    target: int  # CPU utilization % or pending requests per replica
    min_replicas: int
    max_replicas: int
    resources: dict[str, Any]
    shm: str  # Kubernetes quantity
    startup_failures: int
    track: str | None = None  # stable | canary: one of two Deployments behind a mesh route
    server_args: tuple[str, ...] = ()  # what the models need: --cache-config, --rate-limit
    notes: tuple[str, ...] = ()  # what the user must check that the manifests cannot
    openai: tuple[int, str, str] | None = None  # sidecar (port, image, API key Secret)

    @property
    def resource_name(self) -> str:
        """``name``, or ``name-track`` for one track: the two tracks' resources never collide."""
        return f"{self.name}-{self.track}" if self.track else self.name

    def metadata(self, name: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name or self.resource_name}
        if self.namespace:
            meta["namespace"] = self.namespace
        meta["labels"] = self.labels()
        return meta

    def selector(self) -> dict[str, str]:
        selector = {
            "app.kubernetes.io/name": "triton-inference-server",
            "app.kubernetes.io/instance": self.name,
        }
        if self.track:
            selector[TRACK_LABEL] = self.track
        return selector

    def labels(self) -> dict[str, str]:
        return {
            **self.selector(),
            "app.kubernetes.io/version": rel.TRITON_VERSION,
            "app.kubernetes.io/managed-by": "triton-packager",
        }


def _pod_security() -> dict[str, Any]:
    uid = rel.NGC_USER_ID
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _gpu_tolerations(plan: Plan) -> list[dict[str, str]]:
    # GPU node pools are commonly tainted nvidia.com/gpu:NoSchedule to keep CPU pods away.
    if not plan.gpus_per_replica:
        return []
    return [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def credentials(
    plan: Plan,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, mounts) that give tritonserver the storage credentials, never inlined."""
    secret, uri = plan.credentials_secret, plan.uri
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if uri.scheme == "az":
        env.append(
            {"name": "AZURE_STORAGE_ACCOUNT", "value": uri.authority}
        )  # a name, not a secret
    if not secret:
        return env, volumes, mounts
    for key, required in _CREDENTIAL_ENV.get(uri.scheme, ()):
        ref: dict[str, Any] = {"name": secret, "key": key}
        if not required:
            ref["optional"] = True
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    if uri.scheme == "gs":
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_DIR}/{GCS_KEY}"})
        volumes.append({"name": "gcs-credentials", "secret": {"secretName": secret}})
        mounts.append({"name": "gcs-credentials", "mountPath": GCS_DIR, "readOnly": True})
    return env, volumes, mounts


def deployment(plan: Plan) -> dict[str, Any]:
    env, volumes, mounts = credentials(plan)
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": plan.shm}}, *volumes]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, *mounts]
    if plan.uri.scheme == "pvc":
        claim = {"claimName": plan.uri.authority, "readOnly": True}
        volumes.append({"name": "model-repository", "persistentVolumeClaim": claim})
        mount = {"name": "model-repository", "mountPath": MOUNT, "readOnly": True}
        if plan.uri.path:
            mount["subPath"] = plan.uri.path  # the repository itself at /models, as in docker
        mounts.append(mount)
    container: dict[str, Any] = {
        "name": "tritonserver",
        "image": plan.image,
        "args": [
            "tritonserver",
            f"--model-repository={plan.uri.for_triton()}",
            f"--http-port={TRITON_PORTS['http']}",
            f"--grpc-port={TRITON_PORTS['grpc']}",
            f"--metrics-port={TRITON_PORTS['metrics']}",
            "--exit-timeout-secs=30",
            *plan.server_args,
        ],
        "ports": [
            {"name": k, "containerPort": v, "protocol": "TCP"} for k, v in TRITON_PORTS.items()
        ],
    }
    if env:
        container["env"] = env
    container |= {
        "resources": plan.resources,
        "startupProbe": _probe("/v2/health/live", 10, plan.startup_failures),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    containers = [container]
    if plan.openai:
        port, image, secret = plan.openai
        # A PVC is mounted: the sidecar reads chat templates from it. Object storage is read by
        # Triton alone: the sidecar then serves completions and embeddings, not chat.
        local = MOUNT if plan.uri.scheme == "pvc" else None
        sidecar = openai_sidecar.k8s_container(image, port, secret, local)
        if local:
            sidecar["volumeMounts"] = [dict(m) for m in mounts if m["name"] == "model-repository"]
        containers.append(sidecar)
    pod: dict[str, Any] = {
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": 45,  # > --exit-timeout-secs: in-flight requests finish
        "containers": containers,
        "volumes": volumes,
    }
    if _gpu_tolerations(plan):
        pod["tolerations"] = _gpu_tolerations(plan)
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(TRITON_PORTS["metrics"]),
        "prometheus.io/path": "/metrics",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": plan.metadata(),
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": plan.selector()},
            "template": {
                "metadata": {"labels": plan.labels(), "annotations": annotations},
                "spec": pod,
            },
        },
    }


def service(plan: Plan) -> dict[str, Any]:
    ports = []
    for key, port in TRITON_PORTS.items():
        entry: dict[str, Any] = {"name": key, "port": port, "targetPort": key, "protocol": "TCP"}
        if key == "grpc":
            entry["appProtocol"] = "kubernetes.io/h2c"  # lets meshes/gateways balance per request
        ports.append(entry)
    if plan.openai:
        port = plan.openai[0]
        # appProtocol: meshes (Istio) treat the port as HTTP, so routes and mTLS apply to it.
        entry = {"name": "openai", "port": port, "targetPort": "openai", "protocol": "TCP"}
        ports.append({**entry, "appProtocol": "http"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": plan.metadata(),
        "spec": {"type": "ClusterIP", "selector": plan.selector(), "ports": ports},
    }


def hpa(plan: Plan) -> dict[str, Any]:
    if plan.scale_metric == "cpu":
        metric: dict[str, Any] = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": plan.target},
            },
        }
    else:  # served to the HPA by a Prometheus adapter (docs/deploy.md has the rule)
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": PENDING_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(plan.target)},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": plan.metadata(),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": plan.resource_name,
            },
            "minReplicas": plan.min_replicas,
            "maxReplicas": plan.max_replicas,
            "metrics": [metric],
            # A GPU replica takes minutes to schedule, pull and load: add one at a time, and
            # wait five minutes of low load before giving a GPU back.
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }


def service_monitor(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": plan.metadata(),
        "spec": {
            "selector": {"matchLabels": plan.selector()},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def service_account(plan: Plan) -> dict[str, Any]:
    # KServe's storage initializer finds credentials through the Secrets of the ServiceAccount.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": plan.metadata(f"{plan.name}-storage"),
        "secrets": [{"name": plan.credentials_secret}],
    }


def runtime_name(plan: Plan) -> str:
    return f"{plan.name}-triton"


def serving_runtime(plan: Plan) -> dict[str, Any]:
    """KServe's way to run a custom image: a ServingRuntime the InferenceService names.

    The container is KServe's own Triton runtime's, on ``plan.image`` (the image ``docker``
    builds when models need packages, else NVIDIA's); the InferenceService adds resources.
    """
    security = {**_container_security(), "runAsNonRoot": True, "runAsUser": rel.NGC_USER_ID}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": plan.metadata(runtime_name(plan)),
        "spec": {
            "annotations": {
                "prometheus.kserve.io/port": str(TRITON_PORTS["metrics"]),
                "prometheus.kserve.io/path": "/metrics",
            },
            # Only InferenceServices that name this runtime use it (autoSelect off).
            "supportedModelFormats": [{"name": "triton", "version": "2", "autoSelect": False}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": plan.image,
                    "args": [
                        "tritonserver",
                        f"--model-repository={KSERVE_MOUNT}",
                        f"--http-port={KSERVE_PORTS['http']}",
                        f"--grpc-port={KSERVE_PORTS['grpc']}",
                        f"--metrics-port={TRITON_PORTS['metrics']}",
                        "--allow-http=true",
                        "--allow-grpc=true",
                    ],
                    "securityContext": security,
                }
            ],
        },
    }


def inference_service(plan: Plan) -> dict[str, Any]:
    resources = {
        "requests": dict(plan.resources["requests"]),
        # KServe fills missing limits with its defaults (1 CPU): state the CPU limit explicitly.
        "limits": {"cpu": plan.resources["requests"]["cpu"], **plan.resources["limits"]},
    }
    if plan.gpus_per_replica:
        resources["requests"][GPU] = plan.gpus_per_replica
    model: dict[str, Any] = {
        "modelFormat": {"name": "triton", "version": "2"},
        "runtime": runtime_name(plan),
        "storageUri": plan.uri.for_kserve(),
        "resources": resources,
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if plan.server_args:  # KServe appends them to its Triton runtime's own arguments
        model["args"] = list(plan.server_args)
    predictor: dict[str, Any] = {
        "minReplicas": plan.min_replicas,
        "maxReplicas": plan.max_replicas,
        "scaleMetric": "cpu",
        "scaleTarget": plan.target,
    }
    if plan.credentials_secret:
        predictor["serviceAccountName"] = f"{plan.name}-storage"
    predictor["securityContext"] = _pod_security()
    if _gpu_tolerations(plan):
        predictor["tolerations"] = _gpu_tolerations(plan)
    predictor["volumes"] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": plan.shm}}
    ]
    predictor["model"] = model
    meta = plan.metadata()
    meta["annotations"] = {
        # Plain Deployment + HPA under KServe's control: no Knative needed, GPUs never scale to 0.
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "serving.kserve.io/autoscalerClass": "hpa",
        "serving.kserve.io/enable-prometheus-scraping": "true",
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }
