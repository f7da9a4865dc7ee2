"""How long a test may wait, beyond a configured timeout, before calling a call hung.

Tests run on small shared machines (two cores, other test runs and CPU burners beside them): a
call that ends "at its timeout" can come back seconds later, because its thread, the server's
threads and the gRPC/HTTP pollers wait for a core. A test asserts the behaviour (the typed error,
that the call ended rather than hung, that it ended before its timeout when it must fail fast),
and bounds wall-clock time only by the configured timeout plus :data:`LOAD_SLACK_S`.
"""

from __future__ import annotations

# Scheduling delay a loaded two-core machine adds to a call: generous, since it only tells "ended
# late" from "never ends" (a hang is unbounded; a few seconds of waiting for a core are not).
LOAD_SLACK_S = 5.0


def hung_after(timeout_s: float) -> float:
    """Seconds after which a call configured with ``timeout_s`` counts as hung."""
    return timeout_s + LOAD_SLACK_S
