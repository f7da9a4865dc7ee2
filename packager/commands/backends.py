"""``triton-packager backends``: Triton's own ONNX Runtime / PyTorch backends for the embedded server."""

from __future__ import annotations

import json
import sys

import click


@click.command("backends")
@click.option("--build", is_flag=True, help="Compile the backends that are not built yet.")
@click.option("--force", is_flag=True, help="Compile again, even those already built or failed.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def backends(build: bool, force: bool, as_json: bool) -> None:
    """Show (and with --build, compile) the native backends of the embedded server.

    Triton's onnxruntime and pytorch backends of the server's release (r24.10) are compiled
    once from the sources shipped with triton-packager: the onnxruntime one against the 24.10
    container's ONNX Runtime (1.19.2, whose wheel --build installs into the cache; it also checks
    ONNX artifacts in build/validate), the pytorch one against this environment's torch (cmake, a
    C++ compiler and the RapidJSON headers are needed). `serve`
    builds them on first use; models whose backend is missing run through the Python runtime.
    Exit 1 when --build leaves one unbuilt.
    """
    from packager.serve.native import backends_status, enabled

    def progress(message: str) -> None:
        click.echo(message, err=True)

    rows = backends_status(build=build, force=force, progress=progress)
    if as_json:
        click.echo(
            json.dumps({"enabled": enabled(), "backends": [r.to_dict() for r in rows]}, indent=2)
        )
    else:
        for row in rows:
            b = row.backend
            runtime = f"{b.runtime} {row.runtime_version or '(not installed)'}"
            state = f"ready  {row.path}" if row.ready else f"not ready: {row.reason}"
            click.echo(f"{b.name:<12} {b.format:<12} {runtime:<22} {state}")
        if not enabled():
            click.echo(
                "TRITON_PACKAGER_NATIVE=0: serve runs every model through the Python runtime"
            )
    if (build or force) and not all(r.ready for r in rows):
        sys.exit(1)
