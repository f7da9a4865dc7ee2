"""``explain``: which features of an input drive one output of a served model."""

from __future__ import annotations

import json
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
    load_inputs,
    progress_bar,
    renamed,
)


@click.command("explain")
@click.argument("model")
@INPUT
@click.option(
    "--input-text",
    "text",
    default=None,
    metavar="TEXT",
    help="A string to explain, for a text model (one BYTES input).",
)
@click.option(
    "--explain-input",
    default=None,
    metavar="NAME",
    help="The input whose features are attributed, when the model has several (the others "
    "stay as given).",
)
@click.option(
    "--select-output",
    "output",
    default=None,
    metavar="NAME",
    help="Output to explain. Default: the first numeric one.",
)
@click.option(
    "--target",
    default="auto",
    show_default=True,
    metavar="auto|INDEX",
    help="Which value of the output (flat index within one sample); auto: the largest.",
)
@click.option(
    "--method",
    type=click.Choice(["kernelshap", "occlusion"]),
    default="kernelshap",
    show_default=True,
    help="kernelshap: Shapley values (exact up to 12 features, sampled beyond); occlusion: "
    "one feature off at a time (features + 2 evaluations).",
)
@click.option(
    "--samples",
    type=click.IntRange(1, None),
    default=1024,
    show_default=True,
    help="KernelSHAP: coalitions evaluated when there are too many to enumerate.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="KernelSHAP sampling seed.")
@click.option(
    "--baseline",
    default=None,
    help="What an absent feature becomes: zeros (default), mean, blur (images), a number or "
    "FILE.npy of the input's shape; text: drop (default) or a word to put instead, e.g. [MASK].",
)
@click.option(
    "--feature-kind",
    "kind",
    type=click.Choice(["auto", "tabular", "image", "text"]),
    default="auto",
    show_default=True,
    help="How the input splits into features; auto: strings are text, 1-D tabular, 2-D/3-D image.",
)
@click.option(
    "--patch",
    type=click.IntRange(1, None),
    default=None,
    help="Image: patch side in pixels. Default: the longer side / 8.",
)
@click.option(
    "--channels",
    type=click.Choice(["first", "last"]),
    default=None,
    help="Image: the channel axis of a 3-D input, when its shape does not tell.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, None),
    default=64,
    show_default=True,
    help="Perturbed inputs per request (at most the model's max_batch_size).",
)
@click.option("--top", type=click.IntRange(0, None), default=10, show_default=True,
              help="Features listed in the table (0: all).")  # fmt: skip
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG: bars (tabular), a heatmap over the image, or highlighted words.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Text: write the highlighted words as an HTML page.",
)
@URL
@PROTOCOL
@VERSION
@TIMEOUT
@click.option("--json", "as_json", is_flag=True, help="Print the attributions as JSON.")
@INPUT_RENAMED
@renamed("--output", "--select-output", "output")
@renamed("--text", "--input-text", "text")
@renamed(
    "--kind", "--feature-kind", "kind", type=click.Choice(["auto", "tabular", "image", "text"])
)
def explain(
    model: str,
    input_specs: tuple[str, ...],
    text: str | None,
    explain_input: str | None,
    output: str | None,
    target: str,
    method: str,
    samples: int,
    seed: int,
    baseline: str | None,
    kind: str,
    patch: int | None,
    channels: str | None,
    batch_size: int,
    top: int,
    plot: Path | None,
    html: Path | None,
    url: str | None,
    protocol: str | None,
    version: str,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Attribute one output value of the served MODEL to the features of one input.

    Forward passes only, sent in batches through the client: tabular inputs (each element),
    images (square patches) and text (words). Example:

        triton-packager explain clf --input-file x=row.npy --plot why.png
    """
    from packager.client import Client
    from packager.explain import explain as run_explain
    from packager.explain.plot import save_plot

    if text is not None and input_specs and not explain_input:
        raise click.UsageError(
            "with --input-file and --input-text, say which input the text is (--explain-input)"
        )
    if text is None and not input_specs:
        raise click.UsageError(
            "give the sample to explain: --input-file NAME=FILE.npy or --input-text '...'"
        )
    inputs: Any = load_inputs(input_specs) if input_specs else {}
    if not isinstance(inputs, dict):
        inputs = {explain_input: inputs} if explain_input else inputs
    if text is not None:
        inputs = {**inputs, explain_input: text} if explain_input else text
    is_text = text is not None or kind == "text"
    if html is not None and not is_text:
        raise click.UsageError(
            "--html renders text explanations (--input-text); use --plot for others"
        )
    for path in (plot, html):
        if path is not None and not path.parent.is_dir():
            raise click.BadParameter(f"folder {path.parent} does not exist", param_hint=str(path))
    if plot is not None:
        import matplotlib  # noqa: F401  (before the work: a missing plots extra fails fast)

    with (
        progress_bar(f"explaining {model}", enabled=not as_json) as progress,
        Client(url, protocol=protocol, timeout_s=timeout_s) as client,
    ):
        result = run_explain(
            client,
            model,
            inputs,
            output=output,
            target=target,
            method=method,
            samples=samples,
            seed=seed,
            baseline=baseline,
            kind=kind,
            patch=patch,
            channels=channels,
            explain_input=explain_input,
            batch_size=batch_size,
            version=version,
            progress=progress,
        )
    written = []
    if plot is not None:
        written.append(save_plot(result, plot))
    if html is not None:
        html.write_text(result.html())
        written.append(html)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(result.table(top or None))
    if result.kind == "text":
        click.echo("\n" + result.ansi())
    for path in written:
        click.echo(f"wrote {path}")
