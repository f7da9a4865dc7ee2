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
    "docker": "packager.commands.deploy:docker",
    "k8s": "packager.commands.deploy:k8s",
    "infer": "packager.commands.client:infer",
    "bench": "packager.commands.client:bench",
    "evaluate": "packager.commands.evaluate:evaluate",
    "versions": "packager.commands.manifest:versions",
    "tune": "packager.commands.tune:tune",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._try(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._try(cmd_name)

    @staticmethod
    def _try(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A command whose module is not written yet is simply absent.
            if exc.name == module_name:
                return None
            raise
        cmd = getattr(module, attr, None)
        return cmd if isinstance(cmd, click.Command) else None

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
