"""``triton-packager infer`` and ``triton-packager bench``: call a served model, or measure it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from packager.commands._options import (
    INPUT,
    INPUT_RENAMED,
    PROTOCOL,
    TIMEOUT,
    URL,
    VERSION,
    int_list,
    load_inputs,
    renamed,
)
from packager.commands._options import (
    shapes as parse_shapes,
)
from packager.errors import ClientError, InvalidInput


def _jsonable(array: Any) -> Any:
    if array.dtype == object:
        return [
            v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
            for v in array.reshape(-1).tolist()
        ]
    return array.reshape(-1).tolist()


@click.command("infer")
@click.argument("model")
@INPUT
@URL
@PROTOCOL
@VERSION
@click.option(
    "--select-output",
    "outputs",
    multiple=True,
    metavar="NAME",
    help="Only this output (repeatable).",
)
@click.option("--sample", is_flag=True, help="Inputs are one sample: add the batch dim.")
@click.option(
    "--split",
    is_flag=True,
    help="Inputs are many samples: split by the model's max_batch_size (infer_batch).",
)
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Print outputs (with data) as JSON.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each output to DIR/NAME.npy instead of printing it.",
)
@click.option(
    "--sequence-id",
    default=None,
    help="Stateful models: the sequence this request belongs to (an integer or a string).",
)
@click.option("--sequence-start", is_flag=True, help="This request starts the sequence.")
@click.option("--sequence-end", is_flag=True, help="This request ends the sequence.")
@INPUT_RENAMED
@renamed("--output", "--select-output", "outputs", multiple=True)
def infer(
    model: str,
    input_specs: tuple[str, ...],
    url: str | None,
    protocol: str | None,
    version: str,
    outputs: tuple[str, ...],
    sample: bool,
    split: bool,
    timeout_s: float,
    as_json: bool,
    output_dir: Path | None,
    sequence_id: str | None,
    sequence_start: bool,
    sequence_end: bool,
) -> None:
    """Send inputs from .npy files to MODEL on a running server and show its outputs.

    \b
    Example:
      triton-packager infer mlp --input-file input=x.npy --json
    """
    import numpy as np

    from packager.client import Client

    if not input_specs:
        raise click.UsageError("give at least one --input-file NAME=FILE.npy")
    if sample and split:
        raise click.UsageError("--sample and --split exclude each other")
    if as_json and output_dir is not None:
        raise click.UsageError("--json and --output-dir exclude each other")
    inputs = load_inputs(input_specs)
    kwargs: dict[str, Any] = {"version": version, "outputs": list(outputs) or None}
    if sequence_id is not None or sequence_start or sequence_end:
        if split:
            raise click.UsageError("--split sends several requests; a sequence takes one per call")
        # Triton's sequence ids are integers or strings: digits mean an integer.
        sid = sequence_id or ""
        kwargs.update(
            sequence_id=int(sid) if sid.isdigit() else sid,
            sequence_start=sequence_start,
            sequence_end=sequence_end,
        )
    with Client(url, protocol=protocol, timeout_s=timeout_s) as client:
        if sample:
            result = client.infer_sample(model, inputs, **kwargs)
        elif split:
            result = client.infer_batch(model, inputs, **kwargs)
        else:
            result = client.infer(model, inputs, **kwargs)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, array in result.items():
            path = output_dir / f"{name}.npy"
            np.save(path, array, allow_pickle=array.dtype == object)
            click.echo(f"{name}: {array.dtype} {list(array.shape)} -> {path}")
        return
    if as_json:
        doc = {
            name: {"dtype": str(a.dtype), "shape": list(a.shape), "data": _jsonable(a)}
            for name, a in result.items()
        }
        click.echo(json.dumps({"model": model, "outputs": doc}, indent=2))
        return
    for name, array in result.items():
        click.echo(f"{name}: {array.dtype} {list(array.shape)}")
        click.echo(np.array2string(array, threshold=50, edgeitems=3, precision=6))


@click.command("bench")
@click.argument("model")
@click.option(
    "--concurrency",
    default="1,8",
    show_default=True,
    callback=int_list(minimum=1),
    help="Requests in flight, one measurement per level (comma-separated).",
)
@click.option(
    "--duration-s",
    "duration",
    type=float,
    default=10.0,
    show_default=True,
    help="Measurement window per level (seconds).",
)
@click.option(
    "--warmup-s",
    "warmup",
    type=float,
    default=2.0,
    show_default=True,
    help="Warm-up before each window (seconds, not measured).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, None),
    default=1,
    show_default=True,
    help="Samples per request (random inputs of the model's shapes).",
)
@INPUT
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    callback=parse_shapes,
    metavar="NAME:DIMS",
    help="Random input NAME of these dims (batch dim excluded, e.g. input_ids:128): needed for "
    "every input with dynamic dims besides the batch (repeatable).",
)
@URL
@PROTOCOL
@VERSION
@TIMEOUT
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a PNG of throughput vs p99 over the levels (the plots extra).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@INPUT_RENAMED
@renamed("--duration", "--duration-s", "duration", type=float)
@renamed("--warmup", "--warmup-s", "warmup", type=float)
def bench(
    model: str,
    concurrency: tuple[int, ...],
    duration: float,
    warmup: float,
    batch_size: int,
    input_specs: tuple[str, ...],
    shapes: dict[str, tuple[int, ...]],
    url: str | None,
    protocol: str | None,
    version: str,
    timeout_s: float,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Measure MODEL's throughput and latency percentiles at each concurrency level.

    Ctrl-C stops the sweep: the levels already finished are printed (and plotted), exit 130.
    """
    from packager.client import iter_sweep
    from packager.client.bench import plot_levels, sweep_report
    from packager.client.core import parse_url

    if duration <= 0 or warmup < 0:
        raise click.BadParameter("--duration-s must be positive and --warmup-s 0 or more")
    if plot is not None:
        if not plot.parent.is_dir():
            raise click.BadParameter(f"folder {plot.parent} does not exist", param_hint="--plot")
        import matplotlib  # noqa: F401  (before measuring: a missing plots extra fails fast)
    endpoint = str(parse_url(url, protocol))
    inputs = load_inputs(input_specs) if input_specs else None
    if inputs is not None and not isinstance(inputs, dict):
        raise InvalidInput("bench needs named inputs: --input-file NAME=FILE.npy")
    tty = sys.stderr.isatty()
    shown: set[tuple[int, str]] = set()

    def progress(level: int, phase: str, done: float, total: float, count: int) -> None:
        # stderr, so that --json on stdout stays parseable; one line per phase when not a TTY.
        if tty:
            end = "\n" if phase == "done" else ""
            click.echo(
                f"\r  concurrency {level:>4}: {phase:<7} {done:5.1f}/{total:.1f} s  "
                f"{count:>9,} requests",
                err=True,
                nl=False,
            )
            click.echo(end, err=True, nl=False)
        elif (level, phase) not in shown and phase != "done":
            shown.add((level, phase))
            click.echo(f"concurrency {level}: {phase} {total:g} s", err=True)

    results: list[Any] = []
    interrupted = False
    try:
        for result in iter_sweep(
            url,
            model,
            concurrency,
            inputs,
            duration_s=duration,
            warmup_s=warmup,
            protocol=protocol,
            batch_size=batch_size,
            version=version,
            timeout_s=timeout_s,
            progress=progress,
            shapes=shapes,
        ):
            results.append(result)
    except KeyboardInterrupt:
        interrupted = True
        click.secho(
            f"\ninterrupted: {len(results)} of {len(concurrency)} concurrency level(s) finished",
            fg="yellow",
            err=True,
        )
    if results:
        click.echo(f"each request: {', '.join(results[0].sent)}", err=True)
    if as_json:
        doc = sweep_report(model, endpoint, results, concurrency, interrupted)
        click.echo(json.dumps(doc, indent=2))
    elif results:
        click.echo(table(model, endpoint, results))
    if plot is not None and results:
        plot_levels(results, plot, f"{model} at {endpoint}")
        click.echo(f"wrote {plot}", err=True)
    for r in results:
        if r.errors:
            click.echo(
                f"concurrency {r.concurrency}: {r.errors} errors; first: {r.first_error}", err=True
            )
    if interrupted:
        sys.exit(130)
    if any(r.requests == 0 for r in results):
        raise ClientError("no request succeeded at some level (see the errors above)")


def table(model: str, url: str, results: list[Any]) -> str:
    """The human-readable bench table."""
    first = results[0]
    lines = [
        f"{model} at {url}: batch size {first.batch_size}, {first.duration_s:g} s per level",
        f"{'concurrency':>11}  {'infer/s':>10}  {'p50 ms':>8}  {'p90 ms':>8}  {'p95 ms':>8}  "
        f"{'p99 ms':>8}  {'requests':>9}  {'errors':>6}",
    ]
    for r in results:
        lines.append(
            f"{r.concurrency:>11}  {r.throughput:>10,.1f}  {r.p50_ms:>8.2f}  {r.p90_ms:>8.2f}  "
            f"{r.p95_ms:>8.2f}  {r.p99_ms:>8.2f}  {r.requests:>9,}  {r.errors:>6}"
        )
    return "\n".join(lines)
