"""``build`` options of the sequence batcher (stateful models), the response cache, the rate
limiter and per-priority queue policies: one decorator, and the options object they make."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from packager.scheduling import CONTROL_KINDS, DEFAULT_IDLE_US, SchedulingOptions
from packager.spec import QueuePolicy

_OPTIONS: tuple[Callable[[Any], Any], ...] = (
    click.option(
        "--stateful",
        is_flag=True,
        help="A stateful model: Triton's sequence batcher keeps its state between the requests "
        "of a sequence (implicit state: an input and an output of equal dtype and shape whose "
        "names say state, or those named by --state); clients send only the data "
        "(docs/stateful.md).",
    ),
    click.option(
        "--state",
        "states",
        multiple=True,
        metavar="INPUT:OUTPUT",
        help="A state pair: the server feeds OUTPUT of one request back as INPUT of the next "
        "(repeatable; implies --stateful).",
    ),
    click.option(
        "--sequence-batching",
        is_flag=True,
        help="The sequence batcher without implicit state (the model keeps its own state).",
    ),
    click.option(
        "--sequence-strategy",
        type=click.Choice(["oldest", "direct"]),
        default="oldest",
        show_default=True,
        help="oldest: batch requests of up to --max-candidate-sequences sequences; direct: one "
        "batch slot per sequence (max batch size x instances slots).",
    ),
    click.option(
        "--max-candidate-sequences",
        type=click.IntRange(0, None),
        default=0,
        help="oldest strategy: sequences the batcher batches from [default: 16].",
    ),
    click.option(
        "--sequence-idle-us",
        type=click.IntRange(1, None),
        default=DEFAULT_IDLE_US,
        show_default=True,
        help="A sequence with no request for this long is ended and its state freed.",
    ),
    click.option(
        "--sequence-control",
        "sequence_controls",
        multiple=True,
        metavar="KIND=INPUT[:DTYPE]",
        help=f"A control input the batcher fills ({', '.join(CONTROL_KINDS)}), e.g. "
        "start=START, corrid=CORRID:UINT64 (repeatable).",
    ),
    click.option(
        "--response-cache",
        is_flag=True,
        help="Answer repeated identical requests from the server's response cache "
        "(serve passes --cache-config local,size=...).",
    ),
    click.option(
        "--rate-limit-resource",
        "rate_limit_resources",
        multiple=True,
        metavar="NAME[:COUNT[:global]]",
        help="A resource each instance holds while it executes (repeatable); models sharing a "
        "resource name never exceed its count together (serve passes --rate-limit "
        "execution_count).",
    ),
    click.option(
        "--rate-limit-priority",
        type=click.IntRange(0, None),
        default=0,
        help="Rate limiter weight of the instances (lower runs more often; 0 = Triton's 1).",
    ),
    click.option(
        "--priority-queue-policy",
        "priority_queue_policies",
        multiple=True,
        metavar="LEVEL:TIMEOUT_US[:REJECT|DELAY[:MAX_QUEUE]]",
        help="Queue policy of one priority level of the dynamic batcher (repeatable).",
    ),
)

_KEYS = (
    "stateful",
    "states",
    "sequence_batching",
    "sequence_strategy",
    "max_candidate_sequences",
    "sequence_idle_us",
    "sequence_controls",
    "response_cache",
    "rate_limit_resources",
    "rate_limit_priority",
)


def scheduling_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add every option of this module to a click command."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def pop_scheduling(options: dict[str, Any]) -> SchedulingOptions:
    """Take this module's values out of a command's keyword options."""
    return SchedulingOptions(**{k: options.pop(k) for k in _KEYS})


def priority_policies(texts: tuple[str, ...]) -> tuple[tuple[int, QueuePolicy], ...]:
    """``LEVEL:TIMEOUT_US[:ACTION[:MAX_QUEUE]]`` -> (level, QueuePolicy) pairs."""
    out = []
    for text in texts:
        parts = text.split(":")
        try:
            level, timeout = int(parts[0]), int(parts[1])
            action = parts[2].upper() if len(parts) > 2 else "REJECT"
            size = int(parts[3]) if len(parts) > 3 else 0
        except (ValueError, IndexError):
            raise click.BadParameter(
                f"{text!r} is not LEVEL:TIMEOUT_US[:REJECT|DELAY[:MAX_QUEUE]], e.g. 2:5000:REJECT",
                param_hint="--priority-queue-policy",
            ) from None
        if len(parts) > 4 or action not in ("REJECT", "DELAY"):
            raise click.BadParameter(
                f"{text!r}: the action is REJECT or DELAY", param_hint="--priority-queue-policy"
            )
        out.append((level, QueuePolicy(action, timeout, max_queue_size=size)))
    return tuple(out)
