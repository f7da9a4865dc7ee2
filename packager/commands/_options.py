"""Option parsing shared by several commands."""

from __future__ import annotations

from collections.abc import Callable

import click

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
