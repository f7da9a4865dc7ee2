"""``build``, ``inspect`` and ``validate``: parse options, call the library, print."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from packager import sources
from packager.errors import PackagerError
from packager.options import OPTIONS, BuildOptions, Option, cli_values
from packager.textable import format_table


def _declared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Apply a click option for every option of packager.options.declaration with a flag."""
    for o in reversed(OPTIONS):
        if o.flag is None:
            continue
        decls = [o.flag, o.name] if o.short is None else [o.flag, o.short, o.name]
        extra = o.value.click()
        if not extra.get("multiple") and not extra.get("is_flag"):
            extra["default"] = None if o.default in ((), {}) else o.default
        command = click.option(
            *decls, help=o.help, show_default=o.show_default, metavar=o.value.metavar, **extra
        )(command)
    return command


@click.command()
@click.argument("model", required=False)
@click.option(
    "--file",
    "-f",
    "manifest",
    type=click.Path(dir_okay=False),
    default=None,
    help="Build every model, Python step and ensemble of a deploy manifest (YAML) instead of MODEL.",
)
@_declared_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(model: str | None, manifest: str | None, as_json: bool, **params: Any) -> None:
    """Package MODEL (an .onnx / TorchScript / Keras .keras file, a TensorFlow SavedModel or
    Hugging Face folder, or a PyTorch module:factory) into a Triton repository, or with -f every
    model of a deploy manifest."""
    if manifest is not None or model is None:
        from packager.commands.manifest import build_manifest_cmd

        build_manifest_cmd(click.get_current_context(), model, manifest)
        return
    if not params["name"]:
        raise click.UsageError(
            "Missing option '--name' / '-n' (the model's name in the repository)."
        )
    from packager.builder import build as build_model

    def bad(o: Option, why: str) -> Exception:
        return PackagerError(f"{o.cli_name}: {why}")

    options = BuildOptions.from_kwargs(**cli_values(params, bad))
    result = build_model(model, options)
    if options.text and as_json:  # the shape of `build -f --json` (docs/cli.md)
        models = [
            {"name": m.name, "kind": m.kind, "version": m.version, "runtime": m.spec.runtime}
            for m in result.models
        ]
        doc = {"model": options.name, "dry_run": options.dry_run, "models": models}
        click.echo(json.dumps(doc, indent=2))
        return
    if options.text:
        for m in result.models:
            where = f"version {m.version}" if m.written is not None else "(dry run)"
            click.echo(f"built {m.name} {where} ({m.kind}, {m.spec.runtime})")
        click.echo(f"send text: Client(URL).infer({options.name!r}, ['a sentence', ...])")
        return
    if as_json:  # one object, dry run or not (docs/cli.md)
        written = result.written
        doc = {
            "model": result.spec.name,
            "dry_run": written is None,
            "version": None if written is None else written.version,
            "model_dir": None if written is None else str(written.model_dir),
            "files": [] if written is None else list(written.files),
            "config": result.config,
            "record": result.record,
        }
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if options.dry_run:
        click.echo(result.config, nl=False)
        return
    assert result.written is not None
    click.echo(
        f"built {result.spec.name} version {result.written.version} "
        f"({result.spec.runtime}, max_batch_size {result.spec.max_batch_size}) in {result.written.model_dir}"
    )
    for f in result.written.files:
        click.echo(f"  {f}")
    if "compression" in result.record:
        from packager.compress import CompressionReport

        click.echo(CompressionReport.from_dict(result.record["compression"]).table())
    for line in _axis_notes(result.record):
        click.echo(line)
    unused = (result.record.get("source") or {}).get("weights_unused")
    if unused:
        click.echo(
            f"weights: {len(unused)} checkpoint key(s) the model does not use, left out: "
            + ", ".join(unused[:5])
            + (" ..." if len(unused) > 5 else "")
        )
    for line in result.record.get("sequence", {}).get("notes", []):
        click.echo(f"stateful: {line}")


def _axis_notes(record: dict[str, Any]) -> list[str]:
    """What the export decided about non-batch axes nobody named (PyTorch modules), and why."""
    decisions = record.get("axis_decisions") or {}
    if decisions:
        lines = ["axes (--fixed-axis NAME:AXIS pins one, --dynamic-axis NAME:AXIS frees one):"]
        lines += [f"  {axis}: {why}" for axis, why in decisions.items()]
        return lines
    lines = []
    found = record.get("axes_found_dynamic") or {}
    if found:
        axes = ", ".join(f"{n}:{a}" for n, ax in found.items() for a in ax)
        lines.append(f"dynamic axes: {axes} (the module ran with other sizes there; verified)")
    fixed = record.get("axes_fixed") or {}
    if fixed:
        axes = ", ".join(f"{n}:{a}={size}" for n, ax in fixed.items() for a, size in ax.items())
        # Every ordinary model has some (a Linear layer's width): say what they are, not that
        # something failed.
        lines.append(
            f"fixed axes: {axes} (sizes the module requires there, like a layer's input width; "
            "--dynamic-axis NAME:AXIS frees one that should vary)"
        )
    return lines


@click.command("inspect")
@click.argument("model")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *sources.names()]),
    default="auto",
    show_default=True,
    help="Source format: auto (detect by content) or one of the registered sources.",
)
@click.option(
    "--input", "input_specs", multiple=True, help="Input NAME:DTYPE:DIMS (TorchScript/PyTorch)."
)
@click.option(
    "--example-input", type=click.Path(dir_okay=False), default=None, help=".npz of example inputs."
)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="PyTorch weights.")
@click.option(
    "--max-batch-size",
    type=click.IntRange(0, None),
    default=None,
    help="0: the model has no batch axis (--input dims are then the full shape), as in build.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def inspect_cmd(
    model: str,
    fmt: str,
    input_specs: tuple[str, ...],
    example_input: str | None,
    weights: str | None,
    max_batch_size: int | None,
    as_json: bool,
) -> None:
    """Show MODEL's inputs and outputs: names, dtypes, dims and whether it has a batch axis."""
    from packager.builder import inspect

    opts: dict[str, Any] = {"input_specs": list(input_specs)}
    if example_input:
        opts["example_inputs"] = example_input
    if weights:
        opts["weights"] = weights
    if max_batch_size is not None:
        opts["max_batch_size"] = max_batch_size
    result = inspect(model, format=fmt, **opts)
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{model}: {data['format']} ({data['platform']}), "
        f"batch axis: {'yes' if data['batch_axis'] else 'no'}"
    )
    rows = [
        (role, t["name"], t["dtype"], str(t["dims"]))
        for role in ("inputs", "outputs")
        for t in data[role]
    ]
    click.echo(
        format_table(
            ("tensor", "name", "dtype", "dims (-1 = dynamic)"), [(r[0][:-1], *r[1:]) for r in rows]
        )
    )


@click.command("validate")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option("--no-checksums", is_flag=True, help="Skip checking SHA256SUMS of each version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def validate_cmd(repository: str, no_checksums: bool, as_json: bool) -> None:
    """Check every model in REPOSITORY: schema, rules, files, checksums. Exit 1 on any problem."""
    from packager.validation import validate

    report = validate(Path(repository), checksums=not no_checksums)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        if not report.models:
            click.echo(f"{repository}: no models found (a model is a folder with config.pbtxt)")
        for m in report.models:
            mark = click.style("ok", fg="green") if m.ok else click.style("FAIL", fg="red")
            click.echo(
                f"{mark:>4} {m.name} ({m.runtime}, versions {', '.join(map(str, m.versions)) or '-'})"
            )
            for p in m.problems:
                click.echo(f"       - {p}")
            for n in m.notes:
                click.echo(f"       note: {n}")
    if not report.ok:
        raise SystemExit(1)
