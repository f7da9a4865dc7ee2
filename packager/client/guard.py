"""The client's public boundary: whatever a caller passes, a failure is a ``ClientError``.

Arguments are checked where they are used (names, inputs, headers, sampling parameters); what
those checks do not foresee (a ``None`` where a mapping goes, a lone surrogate in a name, a
float where an int goes) surfaces as a ``TypeError``, ``ValueError`` or ``UnicodeError`` from
deep inside, before anything is sent. :func:`guard_public` turns exactly those, raised by a
public method, into :class:`InvalidInput` naming the method. Failures on the wire are already
translated by :func:`packager.client.errors.translating`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

from packager.errors import ClientError, InvalidInput

__all__ = ["check_seconds", "guard_public"]

# What a bad argument raises inside the client (AttributeError: None where an object goes).
CALLER_ERRORS = (TypeError, ValueError, OverflowError, LookupError, AttributeError)

C = TypeVar("C", bound=type)


def check_seconds(name: str, value: Any, *, zero: bool = False) -> float:
    """A positive (``zero``: or zero), finite number of seconds, or InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name} must be a number of seconds; got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "non-negative" if zero else "positive"
        raise InvalidInput(f"{name} must be a {kind}, finite number of seconds; got {value!r}")
    return float(value)


def _invalid(where: str, exc: BaseException) -> InvalidInput:
    if isinstance(exc, UnicodeError):
        why = "text arguments must be valid Unicode (no lone surrogates)"
    else:
        why = "check the argument types and values against the method's docstring"
    return InvalidInput(f"{where}: bad argument ({type(exc).__name__}: {exc}); {why}")


def _wrap(where: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except ClientError:
                raise
            except CALLER_ERRORS as exc:
                raise _invalid(where, exc) from exc

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClientError:
            raise
        except CALLER_ERRORS as exc:
            raise _invalid(where, exc) from exc

    return run


def guard_public(cls: C) -> C:
    """Wrap ``__init__`` and every public method of ``cls`` (and its bases) as described above."""
    for name in dir(cls):
        if name.startswith("_") and name != "__init__":
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (property, staticmethod, classmethod)) or not callable(attr):
            continue
        where = f"{cls.__name__}()" if name == "__init__" else f"{cls.__name__}.{name}()"
        setattr(cls, name, _wrap(where, attr))
    return cls
