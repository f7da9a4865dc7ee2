"""``evaluate``: score a served model on labeled data, optionally against a local reference."""

from __future__ import annotations

import json

import click

from packager.commands._options import PROTOCOL, TIMEOUT, URL, VERSION, progress_bar, renamed


@click.command()
@click.argument("model")
@click.option(
    "--data",
    required=True,
    type=click.Path(dir_okay=False),
    help=".npz with one array per model input (samples first) and the labels.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="accuracy, topK (e.g. top5), mse or mae (repeatable). Default: accuracy.",
)
@click.option(
    "--labels", "labels_key", default="labels", show_default=True, help="Name of the labels array."
)
@click.option(
    "--select-output",
    "output",
    default=None,
    metavar="NAME",
    help="Output to score. Default: the model's first.",
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local ONNX model run on the same data by ONNX Runtime, for comparison.",
)
@URL
@PROTOCOL
@VERSION
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Samples per request. Default: 64, at most the model's max_batch_size.",
)
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@renamed("--output", "--select-output", "output")
def evaluate(
    model: str,
    data: str,
    metrics: tuple[str, ...],
    labels_key: str,
    output: str | None,
    reference: str | None,
    url: str | None,
    protocol: str | None,
    version: str,
    batch_size: int | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Send labeled DATA through the served MODEL in batches and report its metrics."""
    from packager.compress.evaluate import evaluate as run_evaluation

    # The bar shows even with --json: it goes to stderr.
    with progress_bar(f"evaluating {model}") as progress:
        result = run_evaluation(
            model,
            data,
            url=url,
            protocol=protocol,
            metrics=list(metrics) or ["accuracy"],
            labels_key=labels_key,
            output=output,
            batch_size=batch_size,
            version=version,
            reference=reference,
            timeout_s=timeout_s,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.table())
