"""``build -f deploy.yaml`` (the manifest half of ``build``) and ``versions``."""

from __future__ import annotations

import json
from pathlib import Path

import click

# build options that make sense with -f; every other one belongs in the manifest.
_MANIFEST_BUILD_OPTIONS = {"manifest", "model", "output", "force", "dry_run", "as_json"}


def build_manifest_cmd(ctx: click.Context, model: str | None, manifest: str | None) -> None:
    """Run ``build -f MANIFEST``: called by ``packager.commands.build.build``."""
    from packager.manifest.builder import build_manifest

    if model is not None and manifest is not None:
        raise click.UsageError("give MODEL or -f MANIFEST, not both")
    if manifest is None:
        raise click.UsageError(
            "give MODEL to package one model, or -f deploy.yaml to build a deploy manifest"
        )
    stray = sorted(
        f"--{name.replace('_', '-')}"
        for name in ctx.params
        if name not in _MANIFEST_BUILD_OPTIONS
        and ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    )
    if stray:
        raise click.UsageError(
            f"{', '.join(stray)} appl{'ies' if len(stray) == 1 else 'y'} to MODEL; "
            "with -f, set model options in the manifest"
        )
    p = ctx.params
    result = build_manifest(manifest, p["output"], force=p["force"], dry_run=p["dry_run"])
    if p["as_json"]:
        click.echo(
            json.dumps(
                {
                    "manifest": str(result.manifest),
                    "output": str(result.output),
                    "dry_run": p["dry_run"],
                    "models": [
                        {
                            "name": m.name,
                            "kind": m.kind,
                            "version": m.version,
                            "runtime": m.spec.runtime,
                            "files": list(m.written.files) if m.written else [],
                        }
                        for m in result.models
                    ],
                },
                indent=2,
            )
        )
        return
    if p["dry_run"]:
        for m in result.models:
            click.echo(f"# {m.name}/config.pbtxt ({m.kind}, version {m.version})")
            click.echo(m.config, nl=False)
        return
    click.echo(f"built {len(result.models)} models from {manifest} into {result.output}:")
    width = max(len(m.name) for m in result.models)
    for m in result.models:
        click.echo(
            f"  {m.name:<{width}}  version {m.version}  {m.kind:<11}  {m.spec.runtime}, "
            f"max_batch_size {m.spec.max_batch_size}"
        )


@click.command()
@click.argument("repository", type=click.Path(file_okay=False))
@click.argument("model")
@click.option(
    "--policy", default=None, help="Set the version policy: latest[:N] | all | specific:V1,V2."
)
@click.option(
    "--remove", "remove", type=int, multiple=True, help="Delete this version (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def versions(
    repository: str, model: str, policy: str | None, remove: tuple[int, ...], as_json: bool
) -> None:
    """List MODEL's versions in REPOSITORY with the version policy and checksums; or change them.

    Adding a version is a build: `build ... --version N` or `version:` in a manifest.
    """
    from packager.manifest.versions import update_versions

    report = update_versions(Path(repository), model, policy=policy, remove=remove)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    if remove:
        click.echo(f"removed version(s) {', '.join(map(str, sorted(set(remove))))} of {model}")
    if policy:
        click.echo(f"version policy of {model} set to {report.policy}")
    default = (
        " (Triton's default: no version_policy in the config)" if report.policy_is_default else ""
    )
    click.echo(f"{report.model} ({report.runtime}): version policy {report.policy}{default}")
    model_sums = (
        click.style("checksums FAIL", fg="red")
        if report.model_problems
        else click.style("checksums ok", fg="green")
    )
    click.echo(f"  config.pbtxt and model files: {model_sums}")
    for problem in report.model_problems:
        click.echo(f"      - {problem}")
    for v in report.versions:
        served = click.style("served", fg="green") if v.served else "not served"
        if v.selected and v.load_problems:
            served = click.style("not served (would not load)", fg="red")
        sums = (
            click.style("checksums ok", fg="green")
            if v.checksums_ok
            else click.style("checksums FAIL", fg="red")
        )
        click.echo(f"  version {v.version}: {served}, {sums}")
        for name, digest in v.files:
            click.echo(f"      {digest[:16]}  {name}")
        for problem in (*v.load_problems, *v.problems):
            click.echo(f"      - {problem}")
    if report.model_problems or any(
        not v.checksums_ok or (v.selected and v.load_problems) for v in report.versions
    ):
        raise SystemExit(1)
