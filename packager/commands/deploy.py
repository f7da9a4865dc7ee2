"""``docker`` and ``k8s``: write deployment assets for a model repository, print how to use them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from packager import releases as rel


def _notes(notes: tuple[str, ...]) -> None:
    for note in notes:
        click.secho(f"note: {note}", fg="yellow", err=True)


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
@click.option("--force", is_flag=True, help="Overwrite files that triton-packager did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def docker(
    repository: Path,
    gpus: str,
    output: Path,
    pip: tuple[str, ...],
    shm_size: str | None,
    image: str,
    force: bool,
    as_json: bool,
) -> None:
    """Write a Dockerfile and compose.yaml that serve REPOSITORY on NVIDIA's Triton image.

    The repository is mounted read-only at /models; the server runs as a non-root user.
    """
    from packager.deploy.docker import write_docker

    assets = write_docker(
        repository, output, gpus=gpus, pip=pip, shm_size=shm_size, image=image, force=force
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
@click.option("--replicas", type=int, default=1, show_default=True, help="Initial replicas.")
@click.option("--gpus-per-replica", type=int, default=1, show_default=True, help="0 = CPU only.")
@click.option("--namespace", default=None, help="Namespace (default: kubectl's current one).")
@click.option("--name", default=None, help="Resource name (default: from the repository folder).")
@click.option("--image", default=rel.NGC_IMAGE, show_default=True, help="Triton image.")
@click.option("--kserve", is_flag=True, help="Write a KServe InferenceService instead.")
@click.option(
    "--min-replicas", type=int, default=None, help="Autoscaler floor (default: --replicas)."
)
@click.option(
    "--max-replicas", type=int, default=None, help="Autoscaler ceiling (default: 2 x --replicas)."
)
@click.option(
    "--scale-metric",
    type=click.Choice(["cpu", "queue"]),
    default="cpu",
    show_default=True,
    help="cpu: CPU utilization; queue: Triton's pending requests per replica "
    "(needs a Prometheus adapter, see docs/deploy.md).",
)
@click.option(
    "--scale-target",
    type=int,
    default=None,
    help="Target per replica (default: 70 % / 8 requests).",
)
@click.option(
    "--credentials-secret",
    default=None,
    help="Secret with the object-storage credentials (keys in docs/deploy.md); never inlined.",
)
@click.option("--service-monitor", is_flag=True, help="Also write a Prometheus ServiceMonitor.")
@click.option("--shm-size", default=None, help="Size of /dev/shm, e.g. 2g (default: derived).")
@click.option("--cpu", default=None, help="CPU request, e.g. 4 (default: derived).")
@click.option("--memory", default=None, help="Memory request, e.g. 16Gi (default: derived).")
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
    replicas: int,
    gpus_per_replica: int,
    namespace: str | None,
    name: str | None,
    image: str,
    kserve: bool,
    min_replicas: int | None,
    max_replicas: int | None,
    scale_metric: str,
    scale_target: int | None,
    credentials_secret: str | None,
    service_monitor: bool,
    shm_size: str | None,
    cpu: str | None,
    memory: str | None,
    output: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Write Kubernetes (or KServe) manifests that serve REPOSITORY from object storage or a PVC.

    REPOSITORY is the local copy: it sizes CPU, memory and /dev/shm. Copy it to
    --repository-uri yourself (aws s3 sync, gsutil rsync, az storage blob upload-batch).
    """
    from packager.deploy.k8s import K8sOptions, write_k8s

    options = K8sOptions(
        repository_uri=repository_uri,
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        namespace=namespace,
        name=name,
        image=image,
        kserve=kserve,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        credentials_secret=credentials_secret,
        scale_metric=scale_metric,
        scale_target=scale_target,
        service_monitor=service_monitor,
        shm_size=shm_size,
        cpu=cpu,
        memory=memory,
    )
    manifests = write_k8s(repository, options, output, force=force)
    paths = [str(output / f) for f in sorted(manifests.files)]
    resources = [
        {"file": p, "kind": doc["kind"], "name": doc["metadata"]["name"]}
        for p, doc in zip(paths, manifests.resources, strict=True)
    ]
    if as_json:
        click.echo(
            json.dumps(
                {"files": paths, "resources": resources, "notes": list(manifests.notes)}, indent=2
            )
        )
    else:
        for r in resources:
            click.echo(f"wrote {r['file']}  ({r['kind']} {r['name']})")
        click.echo(f"apply: kubectl apply -f {output}")
    _notes(manifests.notes)
