"""Canary traffic through a service mesh: two Deployments of Triton and the routes between them.

``stable`` serves ``--repository-uri``, ``canary`` serves ``--canary-uri`` (another repository,
another image, or both). Each is a Deployment + HorizontalPodAutoscaler from
:mod:`packager.deploy.k8s_resources` with a ``track`` pod label; one shared Service is what clients
call. The mesh splits requests to it by weight, sends requests with a chosen header to canary and
can mirror a share of the traffic to canary:

- ``istio``: VirtualService + DestinationRule subsets by track + PeerAuthentication STRICT.
- ``gateway``: Gateway API HTTPRoute + GRPCRoute attached to the Service (GAMMA), with per-track
  Services as weighted backends; for any GAMMA mesh.
- ``linkerd``: the same routes, plus pod annotations that inject Linkerd's proxy and admit only
  mTLS clients. Linkerd rejects the RequestMirror filter, so ``--mirror`` is refused.

Every render checks the whole set (:func:`packager.deploy.mesh_check.check_set`) and output is
deterministic, so shifting weight changes only the route resources.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager import releases as rel
from packager.deploy import k8s
from packager.deploy import k8s_resources as res
from packager.deploy import mesh_resources as mres
from packager.deploy.docker import path_from, write_generated
from packager.deploy.k8s import K8sOptions
from packager.deploy.k8s_resources import StorageUri
from packager.deploy.mesh_check import check_set
from packager.deploy.mesh_resources import TRACKS, Traffic
from packager.errors import PackagerError

MESHES = ("istio", "linkerd", "gateway")
SERVICE, VIRTUAL_SERVICE = "service.yaml", "virtualservice.yaml"
DESTINATION_RULE, PEER_AUTHENTICATION = "destinationrule.yaml", "peerauthentication.yaml"
HTTP_ROUTE, GRPC_ROUTE = "httproute.yaml", "grpcroute.yaml"
OPENAI_ROUTE = "httproute-openai.yaml"  # with --openai-port
ROUTE_FILES = (
    VIRTUAL_SERVICE, DESTINATION_RULE, PEER_AUTHENTICATION, HTTP_ROUTE, GRPC_ROUTE, OPENAI_ROUTE,
)  # fmt: skip
TRACK_FILES = tuple(f"{kind}-{t}.yaml" for kind in ("deployment", "hpa", "service") for t in TRACKS)
ALL_FILES = (SERVICE, *TRACK_FILES, *ROUTE_FILES)
# HTTP/2 and gRPC metadata keys are lowercase tokens (RFC 9113 8.2, the gRPC wire spec).
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")  # visible ASCII
# Connection-specific headers do not exist in HTTP/2 (RFC 9113 8.2.2); grpc-* is gRPC's own.
_RESERVED_HEADERS = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")
_MAX_NAME = 63 - len("-canary")  # the longest name whose per-track names stay DNS labels


@dataclass(frozen=True)
class MeshOptions:
    """Everything ``triton-packager mesh`` takes besides the repository.

    ``k8s`` holds the stable track's options (URI, replicas, GPUs, sizing, names, autoscaling);
    the canary track takes the same, except what the canary_* fields change.
    """

    k8s: K8sOptions
    canary_uri: str
    mesh: str = "istio"
    canary_weight: int = 0  # percent of requests to canary
    canary_header: str | None = None  # NAME=VALUE: such requests go to canary
    mirror: int | None = None  # percent of stable requests copied to canary
    canary_replicas: int = 1
    canary_image: str | None = None  # default: k8s.image
    canary_repository: Path | None = None  # local copy that sizes canary pods; default: REPO


@dataclass(frozen=True)
class MeshManifests:
    files: dict[str, str]  # file name -> YAML text
    resources: tuple[dict[str, Any], ...]  # the same documents, parsed, in file order
    notes: tuple[str, ...]
    traffic: Traffic

    def to_dict(self) -> dict[str, Any]:
        """The traffic split as scripts read it (``--json``)."""
        header = self.traffic.header
        return {
            "weights": self.traffic.weights,
            "canary_header": f"{header[0]}={header[1]}" if header else None,
            "mirror_percent": self.traffic.mirror,
        }


def render_mesh(
    repo: Path | str, options: MeshOptions, output_dir: Path | str = "deploy/mesh"
) -> MeshManifests:
    """The stable/canary set for ``options.mesh``; reads the local copies, writes nothing."""
    o = options
    problems = _option_problems(o)
    if problems:
        raise PackagerError("; ".join(problems))
    traffic = Traffic(o.canary_weight, _parse_header(o.canary_header), o.mirror)
    stable = k8s.plan_for(repo, o.k8s)
    canary_options = dataclasses.replace(
        o.k8s,
        repository_uri=o.canary_uri,
        image=o.canary_image or o.k8s.image,
        name=stable.name,  # one name, even when --canary-repository's folder is named otherwise
        replicas=o.canary_replicas,
        min_replicas=o.canary_replicas,
        # Promoting canary to 100 % must not hit a lower ceiling than stable had.
        max_replicas=max(stable.max_replicas, o.canary_replicas),
    )
    canary = k8s.plan_for(
        o.canary_repository or repo, canary_options, image_option="--canary-image"
    )
    if len(stable.name) > _MAX_NAME:
        raise PackagerError(
            f"name {stable.name!r} is longer than {_MAX_NAME} characters: {stable.name}-canary "
            "would not be a DNS label; pass a shorter --name"
        )
    plans = {"stable": dataclasses.replace(stable, track="stable")}
    plans["canary"] = dataclasses.replace(canary, track="canary")

    docs: dict[str, dict[str, Any]] = {SERVICE: res.service(stable)}  # selects both tracks
    for track, plan in plans.items():
        docs[f"deployment-{track}.yaml"] = _meshed(res.deployment(plan), o.mesh)
        docs[f"hpa-{track}.yaml"] = res.hpa(plan)
        if o.mesh != "istio":  # Gateway API backends are Services; Istio uses subsets instead
            docs[f"service-{track}.yaml"] = res.service(plan)
    if o.mesh == "istio":
        docs[VIRTUAL_SERVICE] = mres.virtual_service(stable, traffic)
        docs[DESTINATION_RULE] = mres.destination_rule(stable)
        docs[PEER_AUTHENTICATION] = mres.peer_authentication(stable)
    else:
        docs[HTTP_ROUTE] = mres.http_route(stable, traffic)
        docs[GRPC_ROUTE] = mres.grpc_route(stable, traffic)
        if stable.openai:
            docs[OPENAI_ROUTE] = mres.openai_route(stable, traffic)

    inconsistent = check_set(docs.values())
    if inconsistent:  # a bug here, not the user's input: say what, so it can be reported
        raise PackagerError("generated set is inconsistent: " + "; ".join(inconsistent))
    files = k8s.yaml_files(docs, _regenerate(path_from(output_dir, repo), output_dir, o))
    notes = list(dict.fromkeys(k8s.plan_notes(stable) + k8s.plan_notes(canary)))
    notes += _mesh_notes(o)
    if (canary.uri, canary.image) == (stable.uri, stable.image):
        # Right while promoting (stable catches up with canary); a slip otherwise.
        notes.append(
            f"canary serves exactly what stable serves ({canary.uri}, {canary.image}); "
            "unless this is a promotion, point --canary-uri at the new repository"
        )
    return MeshManifests(
        files=files,
        resources=tuple(docs[f] for f in sorted(docs)),
        notes=tuple(notes),
        traffic=traffic,
    )


def write_mesh(
    repo: Path | str,
    options: MeshOptions,
    output_dir: Path | str = "deploy/mesh",
    *,
    force: bool = False,
) -> MeshManifests:
    """Render (:func:`render_mesh`) and write; files of an earlier run's other mesh are removed."""
    manifests = render_mesh(repo, options, output_dir)
    write_generated(output_dir, manifests.files, force=force, stale=ALL_FILES)
    return manifests


# --------------------------------------------------------------------------- pieces


def _meshed(deployment: dict[str, Any], mesh: str) -> dict[str, Any]:
    """``deployment`` with the pod labels/annotations that put its pods into ``mesh``."""
    template = deployment["spec"]["template"]["metadata"]
    if mesh == "istio":
        template["labels"] = {**template["labels"], **mres.ISTIO_POD_LABELS}
    elif mesh == "linkerd":
        template["annotations"] = {**template["annotations"], **mres.LINKERD_POD_ANNOTATIONS}
    return deployment


def _mesh_notes(o: MeshOptions) -> list[str]:
    notes = [
        "routes act in the caller's proxy: clients (or the ingress gateway) must be in the "
        f"{o.mesh if o.mesh != 'gateway' else 'GAMMA'} mesh, others reach both tracks by "
        "replica count through the Service"
    ]
    if o.mesh == "gateway":
        notes.append(
            "--mesh gateway writes routes only: turn on your mesh's sidecar injection and mTLS "
            "for these pods yourself"
        )
    return notes


def _parse_header(spec: str | None) -> tuple[str, str] | None:
    if spec is None:
        return None
    name, _, value = spec.partition("=")
    return name, value


def _header_problems(spec: str) -> list[str]:
    name, sep, value = spec.partition("=")
    flag = f"--canary-header {spec!r}"
    if not sep or not name or not value:
        return [f"{flag}: expected NAME=VALUE, e.g. x-canary=always"]
    problems = []
    if name != name.lower() and _HEADER_NAME.match(name.lower()):
        problems.append(
            f"{flag}: write the name in lowercase ({name.lower()}); HTTP/2 and gRPC metadata "
            "names are lowercase and meshes match them as written"
        )
    elif not _HEADER_NAME.match(name) or len(name) > 256:
        problems.append(
            f"{flag}: {name!r} is not a header name (letters, digits and !#$%&'*+.^_`|~-, "
            "at most 256; no ':' pseudo-headers)"
        )
    elif name in _RESERVED_HEADERS or name.startswith("grpc-"):
        problems.append(f"{flag}: {name!r} is reserved by HTTP/2 or gRPC; use e.g. x-canary")
    if not _HEADER_VALUE.match(value) or len(value) > 4096:
        problems.append(
            f"{flag}: the value must be visible ASCII without leading or trailing spaces "
            "(at most 4096 characters)"
        )
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _option_problems(o: MeshOptions) -> list[str]:
    problems = []
    if o.mesh not in MESHES:
        problems.append(f"--mesh must be one of {', '.join(MESHES)} (got {o.mesh!r})")
    if not _is_int(o.canary_weight) or not 0 <= o.canary_weight <= 100:
        problems.append(
            f"--canary-weight must be an integer percentage 0..100 (got {o.canary_weight!r}); "
            "stable gets the rest, so the two always sum to 100"
        )
    if o.mirror is not None:
        if not _is_int(o.mirror) or not 1 <= o.mirror <= 100:
            problems.append(f"--mirror must be an integer percentage 1..100 (got {o.mirror!r})")
        elif o.mesh == "linkerd":
            problems.append(
                "--mirror: Linkerd cannot mirror traffic (its policy controller rejects the "
                "Gateway API RequestMirror filter); use --mesh istio or --mesh gateway with a "
                "mesh that mirrors, or shift a small --canary-weight instead"
            )
        elif _is_int(o.canary_weight) and o.canary_weight > 0:
            problems.append(
                f"--mirror with --canary-weight {o.canary_weight}: a mirror copies every request "
                "of the route, so canary would answer some requests live and see copies of "
                "them too; mirror first with --canary-weight 0, then shift weight without --mirror"
            )
    if o.canary_header is not None:
        problems += _header_problems(o.canary_header)
    if not _is_int(o.canary_replicas) or o.canary_replicas < 1:
        problems.append(f"--canary-replicas must be at least 1 (got {o.canary_replicas})")
    if o.k8s.kserve:
        problems.append(
            "--kserve: KServe splits traffic itself (canaryTrafficPercent on the "
            "InferenceService); mesh writes plain Deployments"
        )
    if o.k8s.service_monitor:
        problems.append(
            "service_monitor: a ServiceMonitor would select the shared and the per-track "
            "Services and scrape each pod twice; scrape pods by their prometheus.io annotations"
        )
    name = o.k8s.name
    if name is not None and not name[:1].isalpha():
        problems.append(f"--name {name!r}: Service names must start with a letter")
    try:
        StorageUri.parse(o.canary_uri)
    except PackagerError as exc:
        problems.append(str(exc).replace("--repository-uri", "--canary-uri", 1))
    if o.canary_repository is not None and not Path(o.canary_repository).is_dir():
        problems.append(f"--canary-repository {o.canary_repository} is not a folder")
    return problems


def _regenerate(repo_rel: str, output_dir: Path | str, o: MeshOptions) -> str:
    k = o.k8s
    args = ["triton-packager", "mesh", repo_rel, "--mesh", o.mesh]
    args += ["--repository-uri", k.repository_uri, "--canary-uri", o.canary_uri]
    args += ["--canary-weight", str(o.canary_weight)]
    args += ["--replicas", str(k.replicas), "--canary-replicas", str(o.canary_replicas)]
    args += ["--gpus-per-replica", str(k.gpus_per_replica)]
    optional: list[tuple[str, object]] = [
        ("--canary-header", o.canary_header),
        ("--mirror", o.mirror),
        ("--canary-image", o.canary_image),
        (
            "--canary-repository",
            path_from(output_dir, o.canary_repository) if o.canary_repository else None,
        ),
        ("--name", k.name),
        ("--namespace", k.namespace),
        ("--image", k.image if k.image != rel.NGC_IMAGE else None),
        ("--min-replicas", k.min_replicas),
        ("--max-replicas", k.max_replicas),
        ("--credentials-secret", k.credentials_secret),
        ("--scale-metric", k.scale_metric if k.scale_metric != "cpu" else None),
        ("--scale-target", k.scale_target),
        ("--shm-size", k.shm_size),
        ("--cpu", k.cpu),
        ("--memory", k.memory),
        ("--openai-port", k.openai_port),
        ("--openai-image", k.openai_image),
        ("--api-key-secret", k.api_key_secret),
    ]
    for flag, value in optional:
        if value is not None:
            args += [flag, str(value)]
    return shlex.join([*args, "-o", "."])
