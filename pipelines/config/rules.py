"""The building blocks of ``support.SUPPORTED``: a rule per field and the checks a rule can make."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """How odlite takes one field: ``check`` returns a reason when a value can't be honoured.

    The check sees the value in effect, the .proto default included, unless ``set_only``.
    ``required``: the field must be present (odlite cannot build the model without it).
    """

    check: Callable[[object], str | None] | None = None
    required: bool = False
    set_only: bool = False


OK = Rule()
REQUIRED = Rule(required=True)


def only(*allowed, why: str = "") -> Callable[[object], str | None]:
    shown = ", ".join(show(a) for a in allowed)
    reason = f"not supported: only {shown}" + (f" ({why})" if why else "")
    return lambda value: None if value in allowed else reason


def between(low: float, high: float | None = None, what: str = "") -> Callable[[object], str | None]:
    def check(value) -> str | None:
        if value < low or (high is not None and value > high):
            span = f"at least {show(low)}" if high is None else f"between {show(low)} and {show(high)}"
            return f"must be {span}{what}, got {show(value)}"
        return None

    return check


def above(low: float, high: float | None = None) -> Callable[[object], str | None]:
    """``low`` < value <= ``high``: for ranges TensorFlow's ops refuse to start at (a crop of area 0)."""

    def check(value) -> str | None:
        if value <= low or (high is not None and value > high):
            span = f"more than {show(low)}" + (f" and at most {show(high)}" if high is not None else "")
            return f"must be {span}, got {show(value)}"
        return None

    return check


def show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)
