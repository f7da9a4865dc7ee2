"""``triton-packager tune``: measure serving configurations of one model and keep the best."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from packager.commands._options import int_list


@click.command("tune")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--concurrency",
    default="1,8,32",
    show_default=True,
    callback=int_list(),
    help="Concurrent requests to measure each candidate at (comma-separated).",
)
@click.option(
    "--max-latency-ms",
    type=float,
    default=None,
    help="Latency budget: the best candidate has the highest throughput whose p99 is within it.",
)
@click.option(
    "--min-throughput",
    type=float,
    default=None,
    help="Throughput floor (infer/s): alone, the best candidate has the lowest p99 reaching it.",
)
@click.option(
    "--budget-s",
    type=float,
    default=300.0,
    show_default=True,
    help="Wall-clock budget; no candidate starts that would overrun it.",
)
@click.option(
    "--instances",
    callback=int_list(),
    help="Instance counts to try, e.g. 1,2,4 [default: 1,2,4 and the current count].",
)
@click.option(
    "--max-batch-size",
    "max_batch_sizes",
    callback=int_list(),
    help="Max batch sizes to try, e.g. 8,32,128 [default: those and the current one].",
)
@click.option(
    "--queue-delay-us",
    "queue_delays_us",
    callback=int_list(),
    help="Dynamic batching queue delays to try in microseconds [default: 0,200,1000 and the "
    "current one]. Dynamic batching off is always a candidate too.",
)
@click.option(
    "--search",
    type=click.Choice(["quick", "full"]),
    default="quick",
    show_default=True,
    help="quick: hill climbing from the model's current config; full: every combination.",
)
@click.option(
    "--url",
    default=None,
    help="HTTP endpoint (host:port) of a running Triton in explicit model-control mode serving "
    "this repository. Default: start the embedded server on the model's repository.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where tune.csv, tune.json and tune.png go [default: ./tune-<model>].",
)
@click.option(
    "--apply",
    is_flag=True,
    help="Write the winner into the model's config.pbtxt (validated, atomic) and record the "
    "measurement in <model>/tuning.json.",
)
@click.option(
    "--apply-cpu-figures",
    is_flag=True,
    help="With --apply: write settings measured on the CPU into a GPU (KIND_GPU) config anyway "
    "(refused by default: CPU figures do not say what the GPUs will do).",
)
@click.option(
    "--duration-s",
    type=float,
    default=3.0,
    show_default=True,
    help="Measurement window per concurrency.",
)
@click.option(
    "--warmup-s",
    type=float,
    default=1.0,
    show_default=True,
    help="Warm-up before each window (not measured).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
def tune(
    model_dir: Path,
    concurrency: tuple[int, ...],
    max_latency_ms: float | None,
    min_throughput: float | None,
    budget_s: float,
    instances: tuple[int, ...],
    max_batch_sizes: tuple[int, ...],
    queue_delays_us: tuple[int, ...],
    search: str,
    url: str | None,
    output_dir: Path | None,
    apply: bool,
    apply_cpu_figures: bool,
    duration_s: float,
    warmup_s: float,
    as_json: bool,
) -> None:
    """Tune instance counts and dynamic batching of the model in MODEL_DIR on a real server.

    Each candidate is loaded with a config override (the repository is not written while
    searching), warmed up, measured at every --concurrency, and unloaded. Ctrl-C stops cleanly
    and leaves the repository unchanged.

    \b
    Example:
      triton-packager tune model_repository/mlp --concurrency 1,8,32 \\
          --max-latency-ms 20 --budget-s 300 --apply
    """
    from packager.tune.report import table
    from packager.tune.run import tune as run_tune

    def progress(message: str) -> None:
        click.echo(message, err=True)

    try:
        result = run_tune(
            model_dir,
            concurrency=concurrency,
            max_latency_ms=max_latency_ms,
            min_throughput=min_throughput,
            budget_s=budget_s,
            instances=instances,
            max_batch_sizes=max_batch_sizes,
            queue_delays_us=queue_delays_us,
            search=search,
            url=url,
            output_dir=output_dir,
            apply=apply,
            apply_cpu_figures=apply_cpu_figures,
            duration_s=duration_s,
            warmup_s=warmup_s,
            progress=progress,
        )
    except KeyboardInterrupt:
        click.secho(
            "interrupted: tuning stopped, the repository was not changed", fg="yellow", err=True
        )
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(table(result))
    click.echo(result.summary())
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    for kind, path in result.reports.items():
        click.echo(f"{kind}: {path}")
    if result.applied_config is not None:
        click.echo(f"applied to {model_dir / 'config.pbtxt'} (measurement in tuning.json)")
    elif result.winner is not None:
        click.echo("not applied (pass --apply to write the winner into config.pbtxt)")
