"""``docker``, ``k8s``, ``mesh``: write deployment assets for a repository; say how to use them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from packager import releases as rel

F = TypeVar("F", bound=Callable[..., Any])


def _notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        click.secho(f"note: {note}", fg="yellow", err=True)


# The pod, naming and autoscaling options of `k8s` and `mesh` (for mesh: the stable track's).
_WORKLOAD_OPTIONS = (
    click.option("--replicas", type=int, default=1, show_default=True, help="Initial replicas."),
    click.option(
        "--gpus-per-replica", type=int, default=1, show_default=True, help="0 = CPU only."
    ),
    click.option("--namespace", default=None, help="Namespace (default: kubectl's current one)."),
    click.option(
        "--name", default=None, help="Resource name (default: from the repository folder)."
    ),
    click.option(
        "--image",
        default=rel.NGC_IMAGE,
        show_default=True,
        help="Triton image. Models that need pip packages need the image `docker` builds, "
        "pushed to a registry the cluster pulls from (the error says how).",
    ),
    click.option(
        "--min-replicas", type=int, default=None, help="Autoscaler floor (default: --replicas)."
    ),
    click.option(
        "--max-replicas",
        type=int,
        default=None,
        help="Autoscaler ceiling (default: 2 x --replicas).",
    ),
    click.option(
        "--scale-metric",
        type=click.Choice(["cpu", "queue"]),
        default="cpu",
        show_default=True,
        help="cpu: CPU utilization; queue: Triton's pending requests per replica "
        "(needs a Prometheus adapter, see docs/deploy.md).",
    ),
    click.option(
        "--scale-target",
        type=int,
        default=None,
        help="Target per replica (default: 70 % / 8 requests).",
    ),
    click.option(
        "--credentials-secret",
        default=None,
        help="Secret with the object-storage credentials (keys in docs/deploy.md); never inlined.",
    ),
    click.option("--shm-size", default=None, help="Size of /dev/shm, e.g. 2g (default: derived)."),
    click.option("--cpu", default=None, help="CPU request, e.g. 4 (default: derived)."),
    click.option("--memory", default=None, help="Memory request, e.g. 16Gi (default: derived)."),
    click.option(
        "--openai-port",
        type=int,
        default=None,
        help="Also run the OpenAI-compatible API as a sidecar on this port (in the Service); "
        "needs --openai-image and --api-key-secret.",
    ),
    click.option(
        "--openai-image",
        default=None,
        help="Image of the sidecar: built from `docker --openai-port`'s Dockerfile.openai, pushed.",
    ),
    click.option(
        "--api-key-secret",
        default=None,
        help="Secret whose key api-key holds the sidecar's API key; never inlined.",
    ),
)


def _workload_options(command: F) -> F:
    for option in reversed(_WORKLOAD_OPTIONS):
        command = option(command)
    return command


def _print_resources(
    output: Path, files: Any, resources: Any, notes: tuple[str, ...], as_json: bool, **extra: Any
) -> None:
    paths = [str(output / f) for f in sorted(files)]
    listed = [
        {"file": p, "kind": doc["kind"], "name": doc["metadata"]["name"]}
        for p, doc in zip(paths, resources, strict=True)
    ]
    if as_json:
        info = {"files": paths, "resources": listed, **extra, "notes": list(notes)}
        click.echo(json.dumps(info, indent=2))
    else:
        for r in listed:
            click.echo(f"wrote {r['file']}  ({r['kind']} {r['name']})")
        click.echo(f"apply: kubectl apply -f {output}")
    _notes(notes)


@click.command()
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--gpus",
    default="all",
    show_default=True,
    help="GPUs for the container: all, none, or device ids like 0,1.",
)
@click.option(
    "--output",
    "-o",
    default="docker",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for Dockerfile and compose.yaml.",
)
@click.option(
    "--pip",
    multiple=True,
    metavar="REQUIREMENT",
    help="Extra package to install in the image, e.g. scipy==1.13.1 (repeatable). "
    "Packages that Python-backend models need are added automatically.",
)
@click.option(
    "--shm-size",
    default=None,
    help="Size of /dev/shm, e.g. 2g. Default: 1g or more with Python-backend models, else 256m.",
)
@click.option("--image", default=rel.NGC_IMAGE, show_default=True, help="Base image.")
@click.option(
    "--openai-port",
    type=int,
    default=None,
    help="Also run the OpenAI-compatible API on this port: Dockerfile.openai and an `openai` "
    "compose service (needs $TRITON_PACKAGER_API_KEY when compose starts).",
)
@click.option("--force", is_flag=True, help="Overwrite files that triton-packager did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def docker(
    repository: Path,
    gpus: str,
    output: Path,
    pip: tuple[str, ...],
    shm_size: str | None,
    image: str,
    openai_port: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write a Dockerfile and compose.yaml that serve REPOSITORY on NVIDIA's Triton image.

    The repository is mounted read-only at /models; the server runs as a non-root user.
    """
    from packager.deploy.docker import write_docker

    assets = write_docker(
        repository,
        output,
        gpus=gpus,
        pip=pip,
        shm_size=shm_size,
        image=image,
        openai_port=openai_port,
        force=force,
    )
    paths = [str(output / name) for name in sorted(assets.files)]
    if as_json:
        click.echo(json.dumps({**assets.to_dict(), "files": paths}, indent=2))
    else:
        click.echo(f"wrote {', '.join(paths)}")
        click.echo(f"build:   {shlex.join(assets.build_command)}")
        click.echo(f"run:     {shlex.join(assets.run_command)}")
        click.echo(f"compose: {shlex.join(assets.compose_command)}")
    _notes(assets.notes)


@click.command()
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--repository-uri",
    required=True,
    help="Where the cluster reads REPOSITORY: s3://BUCKET/PATH, gs://BUCKET/PATH, "
    "az://ACCOUNT/CONTAINER/PATH or pvc://CLAIM/PATH.",
)
@_workload_options
@click.option(
    "--kserve", is_flag=True, help="Write a KServe ServingRuntime and InferenceService instead."
)
@click.option("--service-monitor", is_flag=True, help="Also write a Prometheus ServiceMonitor.")
@click.option(
    "--output",
    "-o",
    default="deploy/k8s",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the manifests.",
)
@click.option("--force", is_flag=True, help="Overwrite files that triton-packager did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def k8s(
    repository: Path,
    repository_uri: str,
    kserve: bool,
    service_monitor: bool,
    output: Path,
    force: bool,
    as_json: bool,
    **workload: Any,
) -> None:
    """Write Kubernetes (or KServe) manifests that serve REPOSITORY from object storage or a PVC.

    REPOSITORY is the local copy: it sizes CPU, memory and /dev/shm. Copy it to
    --repository-uri yourself (aws s3 sync, gsutil rsync, az storage blob upload-batch).
    """
    from packager.deploy.k8s import K8sOptions, write_k8s

    options = K8sOptions(
        repository_uri=repository_uri, kserve=kserve, service_monitor=service_monitor, **workload
    )
    m = write_k8s(repository, options, output, force=force)
    _print_resources(output, m.files, m.resources, m.notes, as_json)


@click.command()
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--mesh",
    type=click.Choice(["istio", "linkerd", "gateway"]),
    default="istio",
    show_default=True,
    help="istio: VirtualService + DestinationRule + PeerAuthentication STRICT; linkerd: Gateway "
    "API routes + Linkerd injection with mTLS-only inbound; gateway: Gateway API routes (GAMMA) "
    "for any mesh that reads them.",
)
@click.option(
    "--repository-uri",
    required=True,
    help="Where the stable track reads its repository (s3://, gs://, az://, pvc://, as for k8s).",
)
@click.option(
    "--canary-uri",
    required=True,
    help="Where the canary track reads its repository, e.g. the new build's copy.",
)
@click.option(
    "--canary-weight",
    type=int,
    default=0,
    show_default=True,
    help="Percent of requests routed to canary (0..100); stable gets the rest. "
    "Rerun with another value to shift traffic.",
)
@click.option(
    "--canary-header",
    default=None,
    metavar="NAME=VALUE",
    help="Requests carrying this header (or gRPC metadata) go to canary whatever the weight, "
    "e.g. x-canary=always. Name in lowercase.",
)
@click.option(
    "--mirror",
    type=int,
    default=None,
    metavar="PERCENT",
    help="Copy this percent of requests to canary and drop its answers (needs --canary-weight 0; "
    "istio and gateway only: Linkerd cannot mirror).",
)
@click.option(
    "--canary-replicas",
    type=int,
    default=1,
    show_default=True,
    help="Initial and minimum canary replicas; its autoscaler may grow to stable's ceiling.",
)
@click.option("--canary-image", default=None, help="Triton image of canary (default: --image).")
@click.option(
    "--canary-repository",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Local copy of the canary repository, to size its pods (default: REPOSITORY).",
)
@_workload_options
@click.option(
    "--output",
    "-o",
    default="deploy/mesh",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the manifests.",
)
@click.option("--force", is_flag=True, help="Overwrite files that triton-packager did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def mesh(
    repository: Path,
    mesh: str,
    repository_uri: str,
    canary_uri: str,
    canary_weight: int,
    canary_header: str | None,
    mirror: int | None,
    canary_replicas: int,
    canary_image: str | None,
    canary_repository: Path | None,
    output: Path,
    force: bool,
    as_json: bool,
    **workload: Any,
) -> None:
    """Write a stable and a canary Deployment of Triton and the mesh routes that split traffic.

    REPOSITORY is the local copy of the stable repository (it sizes the pods); both tracks
    sit behind one Service. Shift traffic by rerunning with another --canary-weight and
    applying again: only the route resources change.
    """
    from packager.deploy.k8s import K8sOptions
    from packager.deploy.mesh import MeshOptions, write_mesh

    options = MeshOptions(
        k8s=K8sOptions(repository_uri=repository_uri, **workload),
        canary_uri=canary_uri,
        mesh=mesh,
        canary_weight=canary_weight,
        canary_header=canary_header,
        mirror=mirror,
        canary_replicas=canary_replicas,
        canary_image=canary_image,
        canary_repository=canary_repository,
    )
    m = write_mesh(repository, options, output, force=force)
    _print_resources(output, m.files, m.resources, m.notes, as_json, traffic=m.to_dict())
    if not as_json:
        weights = m.traffic.weights
        click.echo(f"traffic: stable {weights['stable']} %, canary {weights['canary']} %")
