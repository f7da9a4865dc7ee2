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
