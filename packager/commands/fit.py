"""``fit``: will a repository fit on the GPUs (and host) it is meant for? Exit 2 when not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from packager.commands._options import renamed
from packager.commands._options import shapes as parse_shapes


@click.command()
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--gpu-count",
    "gpus",
    type=click.IntRange(0, None),
    default=None,
    help="How many GPUs the server sees (0 = CPU only). Default: as many as the instance groups name, "
    "at least 1.",
)
@click.option(
    "--gpu-memory",
    "gpu_memory",
    multiple=True,
    metavar="SIZE",
    help="Memory of one GPU, e.g. 16GiB, 24g or 81920m (repeatable: one verdict per size).",
)
@click.option("--host-memory", default=None, metavar="SIZE", help="Host memory to judge, e.g. 64g.")
@click.option(
    "--max-batch-size",
    type=int,
    default=None,
    help="Size activations for this batch instead of each model's max_batch_size.",
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="[MODEL.]INPUT:DIMS",
    callback=parse_shapes,
    help="Dims of an input without the batch dim, all of them (e.g. input_ids:128, or "
    "detector.image:3,480,640 for one model only): sizes the activations of inputs with "
    "dynamic dims (repeatable).",
)
@click.option(
    "--margin",
    type=float,
    default=0.1,
    show_default=True,
    help="Fraction of each device kept free; an estimate within it is 'tight'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
@renamed("--gpus", "--gpu-count", "gpus", type=click.IntRange(0, None))
def fit(
    repository: Path,
    gpus: int | None,
    gpu_memory: tuple[str, ...],
    host_memory: str | None,
    max_batch_size: int | None,
    shapes: dict[str, tuple[int, ...]],
    margin: float,
    as_json: bool,
) -> None:
    """Estimate the memory REPOSITORY needs per GPU and on the host, and whether it fits.

    Per model: weights x instances, activations at the max batch size (ONNX shape inference,
    peak liveness), runtime overhead per instance; instances placed by the instance groups.
    Exit status: 0 fits (or no size given), 2 does not fit at some size, 1 error.
    """
    from packager.deploy.fit import estimate, format_report
    from packager.deploy.footprint import parse_size

    report = estimate(
        repository,
        gpus=gpus,
        gpu_memory=[parse_size(s, "--gpu-memory") for s in gpu_memory],
        host_memory=parse_size(host_memory, "--host-memory") if host_memory else None,
        max_batch_size=max_batch_size,
        shapes=shapes,
        margin=margin,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(format_report(report))
        for note in report.notes:
            click.secho(f"note: {note}", fg="yellow", err=True)
    if not report.fits:
        sys.exit(2)
