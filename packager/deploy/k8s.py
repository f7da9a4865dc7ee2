"""Kubernetes and KServe manifests for a model repository stored in object storage or a PVC.

Plain Kubernetes: a Deployment of tritonserver reading the repository URI, a Service for
HTTP/gRPC/metrics, a HorizontalPodAutoscaler and, on request, a Prometheus ServiceMonitor.
KServe: an InferenceService on a ServingRuntime of ours (KServe's way to run any image; plus a
ServiceAccount that carries the storage Secret). Models that need pip packages never go on
NVIDIA's stock image: they need the image ``docker`` writes, built and pushed
(:func:`packager.deploy.docker.check_cluster_image`). vLLM models are checked against where the
repository lands in the pod (:func:`packager.generate.vllm.check_model_paths`). Resources are derived from the local copy of the repository (instance counts,
model file sizes; see :mod:`packager.deploy.footprint`). Output is deterministic: the same inputs give
byte-identical files. Manifests are built as plain dicts and dumped with PyYAML, so quoting is
always right.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from packager import releases as rel
from packager.deploy import footprint
from packager.deploy import k8s_resources as res
from packager.deploy import openai_sidecar as oai
from packager.deploy.docker import (
    MARKER,
    check_cluster_image,
    check_image,
    image_tag,
    path_from,
    write_generated,
)
from packager.deploy.k8s_resources import GPU, Plan, StorageUri
from packager.errors import PackagerError
from packager.generate import vllm
from packager.repository import server_flags

DEPLOYMENT, SERVICE, HPA = "deployment.yaml", "service.yaml", "hpa.yaml"
SERVICE_MONITOR = "servicemonitor.yaml"
INFERENCE_SERVICE, SERVICE_ACCOUNT = "inferenceservice.yaml", "serviceaccount.yaml"
SERVING_RUNTIME = "servingruntime.yaml"
ALL_FILES = (
    DEPLOYMENT, SERVICE, HPA, SERVICE_MONITOR, INFERENCE_SERVICE, SERVICE_ACCOUNT, SERVING_RUNTIME,
)  # fmt: skip

_DNS_LABEL = res.DNS_LABEL
_CPU = re.compile(r"^(\d+(\.\d{1,3})?|\d+m)$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS |= {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


@dataclass(frozen=True)
class K8sOptions:
    """Everything ``triton-packager k8s`` takes besides the repository."""

    repository_uri: str
    replicas: int = 1
    gpus_per_replica: int = 1
    namespace: str | None = None
    name: str | None = None  # default: the repository folder's name as a DNS label
    image: str = rel.NGC_IMAGE
    kserve: bool = False
    min_replicas: int | None = None  # default: replicas
    max_replicas: int | None = None  # default: 2 x replicas
    credentials_secret: str | None = None
    scale_metric: str = "cpu"  # cpu (utilization %) | queue (pending requests per replica)
    scale_target: int | None = None  # default: 70 % CPU, or 8 pending requests
    service_monitor: bool = False
    shm_size: str | None = None
    cpu: str | None = None  # overrides the derived CPU request
    memory: str | None = None  # overrides the derived memory request
    openai_port: int | None = None  # the OpenAI-compatible API as a sidecar on this port
    openai_image: str | None = None  # the image built from docker's Dockerfile.openai
    api_key_secret: str | None = None  # Secret whose key "api-key" the sidecar accepts


@dataclass(frozen=True)
class K8sManifests:
    files: Mapping[str, str]  # file name -> YAML text
    resources: tuple[dict[str, Any], ...]  # the same documents, parsed
    notes: tuple[str, ...]


def render_k8s(
    repo: Path | str, options: K8sOptions, output_dir: Path | str = "deploy/k8s"
) -> K8sManifests:
    """Manifests for ``repo`` served from ``options.repository_uri``; reads the repo, writes nothing."""
    o = options
    plan = plan_for(repo, o)
    docs: dict[str, dict[str, Any]] = {}
    if o.kserve:
        if o.credentials_secret:
            docs[SERVICE_ACCOUNT] = res.service_account(plan)
        docs[SERVING_RUNTIME] = res.serving_runtime(plan)
        docs[INFERENCE_SERVICE] = res.inference_service(plan)
    else:
        docs[DEPLOYMENT] = res.deployment(plan)
        docs[SERVICE] = res.service(plan)
        docs[HPA] = res.hpa(plan)
        if o.service_monitor:
            docs[SERVICE_MONITOR] = res.service_monitor(plan)

    files = yaml_files(docs, _regenerate(path_from(output_dir, repo), o))
    return K8sManifests(
        files=files, resources=tuple(docs[f] for f in sorted(docs)), notes=plan_notes(plan)
    )


def plan_for(repo: Path | str, options: K8sOptions, *, image_option: str = "--image") -> Plan:
    """Check ``options`` and size the pods from the local copy ``repo``: the resolved :class:`Plan`.

    ``image_option`` names the option that sets ``options.image`` (mesh's canary has its own).
    """
    shown = repo
    repo = Path(repo)
    o = options
    uri = StorageUri.parse(o.repository_uri)
    problems = _option_problems(o, uri)
    if problems:
        raise PackagerError("; ".join(problems))
    check_image(o.image)
    if o.openai_image:
        check_image(o.openai_image)
    image = vllm.deploy_image(repo, o.image)  # vLLM models need NVIDIA's vLLM image
    vllm.check_gpus(repo, o.gpus_per_replica, "--gpus-per-replica")
    if o.kserve:
        vllm.check_model_paths(repo, res.KSERVE_MOUNT, "KServe (its storage initializer)")
    elif uri.scheme == "pvc":
        vllm.check_model_paths(repo, res.MOUNT, f"{uri} (mounted as a subPath)")
    else:  # Triton downloads s3/gs/az repositories itself, into a new temporary folder
        vllm.check_model_paths(repo, None, f"--repository-uri {uri}")
    models = footprint.scan(repo, o.gpus_per_replica)
    footprint.check_gpus(models, o.gpus_per_replica, "--gpus-per-replica")
    image_notes = check_cluster_image(shown, models, image, image_option)

    name = o.name or _default_name(repo)
    min_r = o.min_replicas if o.min_replicas is not None else o.replicas
    max_r = o.max_replicas if o.max_replicas is not None else 2 * o.replicas
    shm = footprint.parse_size(o.shm_size) if o.shm_size else footprint.shm_bytes(models)
    if not o.shm_size and vllm.vllm_models(repo):
        shm = max(shm, vllm.SHM_BYTES)
    memory = _memory_bytes(o.memory) if o.memory else footprint.memory_bytes(models)
    cpu = o.cpu or _cores(footprint.cpu_millicores(models))
    resources: dict[str, Any] = {
        "requests": {"cpu": cpu, "memory": o.memory or footprint.k8s_quantity(memory)},
        # A memory-backed emptyDir counts against the container's memory limit: add it on top.
        "limits": {"memory": footprint.k8s_quantity(memory + shm)},
    }
    if o.gpus_per_replica:
        resources["limits"][GPU] = o.gpus_per_replica
    total_gib = sum(m.file_bytes for m in models) / footprint.GiB
    return Plan(
        name=name,
        namespace=o.namespace,
        image=image,
        uri=uri,
        replicas=o.replicas,
        gpus_per_replica=o.gpus_per_replica,
        credentials_secret=o.credentials_secret,
        scale_metric=o.scale_metric,
        target=o.scale_target or (70 if o.scale_metric == "cpu" else 8),
        min_replicas=min_r,
        max_replicas=max_r,
        resources=resources,
        shm=footprint.k8s_quantity(shm),
        # Triton opens its ports only after loading every model: allow ~1 min per GiB to load.
        startup_failures=30 + 6 * math.ceil(total_gib),
        server_args=tuple(server_flags(repo)),
        notes=image_notes,
        openai=(o.openai_port, o.openai_image or "", o.api_key_secret or "")
        if o.openai_port
        else None,
    )


def yaml_files(docs: Mapping[str, dict[str, Any]], regenerate: str) -> dict[str, str]:
    """file name -> YAML text, in name order, each headed by our marker and ``regenerate``."""
    header = f"{MARKER}. Regenerate from this folder instead of editing:\n#   {regenerate}\n"
    return {
        fname: header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
        for fname, doc in sorted(docs.items())
    }


def plan_notes(plan: Plan) -> tuple[str, ...]:
    """What the user must provide for ``plan`` that the manifests cannot (credentials, image)."""
    notes = []
    if plan.uri.scheme != "pvc" and not plan.credentials_secret:
        notes.append(
            f"no --credentials-secret: pods must reach {plan.uri} through workload identity "
            "(IRSA, GKE Workload Identity, Azure Workload Identity) or a public bucket"
        )
    if image_tag(plan.image) not in (image_tag(rel.NGC_IMAGE), image_tag(rel.NGC_VLLM_IMAGE)):
        notes.append(f"image {plan.image} is not {rel.NGC_IMAGE}, the embedded server's release")
    return (*notes, *plan.notes)


def write_k8s(
    repo: Path | str,
    options: K8sOptions,
    output_dir: Path | str = "deploy/k8s",
    *,
    force: bool = False,
) -> K8sManifests:
    """Render (:func:`render_k8s`) and write; stale files from an earlier run are removed."""
    manifests = render_k8s(repo, options, output_dir)
    write_generated(output_dir, manifests.files, force=force, stale=ALL_FILES)
    return manifests


# --------------------------------------------------------------------------- checks


def _option_problems(o: K8sOptions, uri: StorageUri) -> list[str]:
    problems = []
    if o.replicas < 1:
        problems.append(f"--replicas must be at least 1 (got {o.replicas})")
    if o.gpus_per_replica < 0:
        problems.append(f"--gpus-per-replica must be 0 or more (got {o.gpus_per_replica})")
    min_r = o.min_replicas if o.min_replicas is not None else o.replicas
    max_r = o.max_replicas if o.max_replicas is not None else 2 * o.replicas
    if o.replicas >= 1 and not 1 <= min_r <= o.replicas <= max_r:
        problems.append(
            f"need 1 <= --min-replicas ({min_r}) <= --replicas ({o.replicas}) "
            f"<= --max-replicas ({max_r})"
        )
    if o.scale_metric not in ("cpu", "queue"):
        problems.append(f"--scale-metric must be cpu or queue (got {o.scale_metric!r})")
    elif o.kserve and o.scale_metric == "queue":
        problems.append("--scale-metric queue needs a metrics adapter; with --kserve use cpu")
    if o.scale_target is not None and o.scale_target < 1:
        problems.append(f"--scale-target must be positive (got {o.scale_target})")
    name = o.name
    if name is not None and not (_DNS_LABEL.match(name) and len(name) <= 63):
        problems.append(f"--name {name!r} is not a DNS label (a-z, 0-9, '-', at most 63)")
    if name is not None and o.kserve and not name[0].isalpha():
        problems.append(f"--name {name!r}: KServe names must start with a letter")
    if o.namespace is not None and not (_DNS_LABEL.match(o.namespace) and len(o.namespace) <= 63):
        problems.append(f"--namespace {o.namespace!r} is not a DNS label (a-z, 0-9, '-')")
    secret = o.credentials_secret
    if secret is not None:
        if not (res.DNS_SUBDOMAIN.match(secret) and len(secret) <= 253):
            problems.append(
                f"--credentials-secret {secret!r} is not a Secret name (lowercase DNS name)"
            )
        if uri.scheme == "pvc":
            problems.append(
                "--credentials-secret is for object storage; a pvc:// repository needs none"
            )
    if o.cpu is not None and not _CPU.match(o.cpu):
        problems.append(f"--cpu {o.cpu!r} is not a CPU quantity like 4, 2.5 or 500m")
    if o.memory is not None and not _MEMORY.match(o.memory):
        problems.append(f"--memory {o.memory!r} is not a memory quantity like 16Gi or 512Mi")
    return problems + _openai_problems(o)


def _openai_problems(o: K8sOptions) -> list[str]:
    if o.openai_port is None:
        given = [f for f, v in (("--openai-image", o.openai_image), ("--api-key-secret",
                 o.api_key_secret)) if v]  # fmt: skip
        return [f"{', '.join(given)} need --openai-port"] if given else []
    problems = []
    try:
        oai.check_port(o.openai_port)
    except PackagerError as exc:
        problems.append(str(exc))
    if o.kserve:
        problems.append("--openai-port runs a sidecar of a Deployment; with --kserve leave it out")
    if not o.openai_image:
        problems.append(
            f"--openai-port needs --openai-image: the image built from `triton-packager docker "
            f"--openai-port {o.openai_port}`'s {oai.DOCKERFILE}, pushed to your registry"
        )
    secret = o.api_key_secret
    if not secret:
        problems.append(
            f"--openai-port needs --api-key-secret: a Secret with key {oai.SECRET_KEY!r} (the "
            "service listens on the pod's address, so it refuses to start without a key)"
        )
    elif not (res.DNS_SUBDOMAIN.match(secret) and len(secret) <= 253):
        problems.append(f"--api-key-secret {secret!r} is not a Secret name (lowercase DNS name)")
    return problems


def _default_name(repo: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", repo.resolve().name.lower()).strip("-")[:63].strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"triton-{slug}".strip("-")[:63]
    return slug


def _memory_bytes(quantity: str) -> int:
    match = _MEMORY.match(quantity)
    assert match  # checked by _option_problems
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def _cores(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _regenerate(repo_rel: str, o: K8sOptions) -> str:
    args = ["triton-packager", "k8s", repo_rel, "--repository-uri", o.repository_uri]
    args += ["--replicas", str(o.replicas), "--gpus-per-replica", str(o.gpus_per_replica)]
    optional: list[tuple[str, object]] = [
        ("--name", o.name),
        ("--namespace", o.namespace),
        ("--image", o.image if o.image != rel.NGC_IMAGE else None),
        ("--min-replicas", o.min_replicas),
        ("--max-replicas", o.max_replicas),
        ("--credentials-secret", o.credentials_secret),
        ("--scale-metric", o.scale_metric if o.scale_metric != "cpu" else None),
        ("--scale-target", o.scale_target),
        ("--shm-size", o.shm_size),
        ("--cpu", o.cpu),
        ("--memory", o.memory),
        ("--openai-port", o.openai_port),
        ("--openai-image", o.openai_image),
        ("--api-key-secret", o.api_key_secret),
    ]
    for flag, value in optional:
        if value is not None:
            args += [flag, str(value)]
    if o.kserve:
        args.append("--kserve")
    if o.service_monitor:
        args.append("--service-monitor")
    return shlex.join([*args, "-o", "."])
