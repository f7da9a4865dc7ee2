"""Options and option parsing shared by several commands (one definition each)."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from packager.releases import DEFAULT_HOST, TRITON_PORTS

IntListCallback = Callable[[click.Context, click.Parameter, "str | None"], tuple[int, ...]]


def int_list(minimum: int | None = None) -> IntListCallback:
    """A click callback turning ``"1,8,32"`` into ``(1, 8, 32)``; empty/None gives ``()``."""

    def callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
        if not value:
            return ()
        try:
            values = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not a comma-separated list of integers; use integers like 1,8,32"
            ) from None
        if not values:
            raise click.BadParameter(f"{value!r} names no values; give e.g. 1,8,32")
        if minimum is not None and min(values) < minimum:
            raise click.BadParameter(f"{value!r}: every value must be {minimum} or more")
        return values

    return callback


def shapes(
    _ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, tuple[int, ...]]:
    """A click callback turning repeated ``NAME:DIMS`` (``input_ids:128``) into a dict."""
    out = {}
    for v in values:
        name, sep, dims = v.rpartition(":")
        try:
            parsed = tuple(int(d) for d in dims.split(","))
        except ValueError:
            parsed = ()
        if not sep or not name or not parsed or min(parsed) < 1:
            raise click.BadParameter(f"{v!r}: expected NAME:DIMS such as input_ids:128")
        out[name] = parsed
    return out


def renamed(old: str, new: str, dest: str, **option: Any) -> Callable[[Any], Any]:
    """A hidden ``old`` option that still works, says it is deprecated, and fills ``new``.

    Apply it below ``@click.command`` and the ``new`` option; ``option`` are click.option's
    keyword arguments for the old form (its type, ``is_flag`` or ``multiple``). Giving both
    forms is refused. One meaning per option name across commands: docs/cli.md lists the
    renames.
    """
    key = "renamed_" + old.lstrip("-").replace("-", "_")

    def decorate(f: Callable[..., Any]) -> Any:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(key)
            # Identity, not equality: 0 and 0.0 are values given (an unset flag is False).
            if not (value is None or value is False or value == ()):
                ctx = click.get_current_context()
                if ctx.get_parameter_source(dest) is click.core.ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"{old} is the old name of {new}: give only {new}")
                click.secho(
                    f"warning: {old} is deprecated here; use {new} (same meaning)",
                    fg="yellow",
                    err=True,
                )
                kwargs[dest] = value
            return f(*args, **kwargs)

        return click.option(old, key, hidden=True, default=None, **option)(wrapper)

    return decorate


# The options of every command that calls a served model (infer, bench, explain, evaluate).
URL = click.option(
    "--url",
    default=None,
    help="Server address: host:port, http(s)://..., or grpc(s)://host:port "
    f"[default: {DEFAULT_HOST}:{TRITON_PORTS['http']}, or {DEFAULT_HOST}:{TRITON_PORTS['grpc']} "
    "with --protocol grpc]. "
    "A scheme that disagrees with --protocol is refused.",
)
PROTOCOL = click.option(
    "--protocol",
    type=click.Choice(["http", "grpc"]),
    default=None,
    help="http or grpc [default: the URL's scheme, else http].",
)
VERSION = click.option("--version", "version", default="", help="Model version [default: latest].")
TIMEOUT = click.option(
    "--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per call."
)
INPUT = click.option(
    "--input-file",
    "input_specs",
    multiple=True,
    metavar="NAME=FILE.npy",
    help="An input from a .npy file (repeat per input; FILE.npy alone for one-input models).",
)
# ``--input`` is build's NAME:DTYPE:DIMS; these commands called their .npy option that before.
INPUT_RENAMED = renamed("--input", "--input-file", "input_specs", multiple=True)
# ``--output``/``-o`` is the folder build, docker, k8s and mesh write; an output tensor's name
# is ``--select-output`` (infer, evaluate, explain), once ``--output`` there.


def load_inputs(specs: tuple[str, ...]) -> Any:
    """{name: array} from NAME=FILE.npy options; one bare FILE.npy gives an unnamed array."""
    import numpy as np

    arrays: dict[str, Any] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(specs) > 1:
                raise click.BadParameter(
                    f"{spec!r}: with several inputs, name each one as NAME=FILE.npy",
                    param_hint="--input-file",
                )
            name, path = "", spec
        if not Path(path).is_file():
            raise click.BadParameter(f"{path}: no such file", param_hint="--input-file")
        try:
            loaded = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise click.BadParameter(
                f"{path}: {exc}. Save strings as a numpy str array (not dtype=object)",
                param_hint="--input-file",
            ) from None
        if not isinstance(loaded, np.ndarray):  # an .npz archive loads as a mapping of arrays
            keys = ", ".join(loaded.files)
            loaded.close()
            raise click.BadParameter(
                f"{path} is an .npz archive (arrays: {keys}); --input-file takes one .npy file per "
                f"input: save each array with np.save and pass NAME=FILE.npy",
                param_hint="--input-file",
            )
        arrays[name] = loaded
    if "" in arrays:
        return arrays[""]
    return arrays


@contextlib.contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback that draws a bar on stderr (stdout stays the result,
    so ``--json`` remains parseable); the bar appears on the first call and closes on exit."""
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if not enabled:
            return
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
