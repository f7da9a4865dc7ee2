"""The ``triton-packager`` command line: parse, call one library function, print.

Commands live in ``packager/commands/`` and are imported only when invoked, so that ``--help``
and light commands never pay for torch or onnx imports.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from packager.errors import PackagerError
from packager.extras import missing_extra

# command name -> "module:attribute"; one line per command.
COMMANDS: dict[str, str] = {
    "build": "packager.commands.build:build",
    "inspect": "packager.commands.build:inspect_cmd",
    "validate": "packager.commands.build:validate_cmd",
    "serve": "packager.commands.serve:serve",
    "openai": "packager.commands.openai_service:openai_service",
    "backends": "packager.commands.backends:backends",
    "docker": "packager.commands.deploy:docker",
    "k8s": "packager.commands.deploy:k8s",
    "mesh": "packager.commands.deploy:mesh",
    "fit": "packager.commands.fit:fit",
    "infer": "packager.commands.client:infer",
    "generate": "packager.commands.generate:generate",
    "bench": "packager.commands.client:bench",
    "bench-generate": "packager.commands.bench_generate:bench_generate",
    "evaluate": "packager.commands.evaluate:evaluate",
    "explain": "packager.commands.explain:explain",
    "versions": "packager.commands.manifest:versions",
    "tune": "packager.commands.tune:tune",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        # No ImportError is swallowed here: a command that cannot import is a bug to see.
        module_name, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module_name), attr)
        assert isinstance(cmd, click.Command), target
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            error = missing_extra(exc)
            if error is None:
                raise
            click.secho(f"error: {error}", fg="red", err=True)
            sys.exit(1)
        except PackagerError as exc:
            # One clear message, no traceback: the message already says what to do.
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="triton-packager")
def main() -> None:
    """Package trained models for NVIDIA Triton Inference Server, serve them, and call them."""


if __name__ == "__main__":  # pragma: no cover
    main()
