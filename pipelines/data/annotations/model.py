"""The in-memory form every annotation format is read into, and the checks they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import Problem


@dataclass(frozen=True)
class Box:
    """A labelled box in pixels of the image as a viewer displays it."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    where: str = ""
    difficult: bool = False
    is_crowd: bool = False


@dataclass
class Entry:
    """One image and its boxes, as read from an annotation file.

    ``problem`` is set when the annotation itself is unusable; such an entry is
    reported (or skipped with ``--skip-invalid``), never converted.
    """

    image: Path | None
    source: str
    where: str = ""
    boxes: list[Box] = field(default_factory=list)
    split: str | None = None
    image_id: int | None = None
    problem: Problem | None = None

    def fail(self, reason: str, where: str | None = None) -> Entry:
        self.problem = Problem(self.source, reason, self.where if where is None else where)
        return self


class AnnotationError(ValueError):
    """Raised inside a parser; the caller turns it into a :class:`Problem` for the file."""

    def __init__(self, reason: str, where: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.where = where


def number(value, where: str, name: str) -> float:
    """A finite coordinate; strings holding numbers are accepted as annotation tools write them."""
    if isinstance(value, bool) or value is None:
        raise AnnotationError(f"'{name}' is {value!r}, not a number", where)
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"'{name}' is {value!r}, not a number", where) from None
    if not math.isfinite(result):
        raise AnnotationError(f"'{name}' is {value!r}, not a finite number", where)
    return result


def require(mapping, key: str, where: str):
    if not isinstance(mapping, dict):
        raise AnnotationError(f"expected an object, found {type(mapping).__name__}", where)
    if key not in mapping:
        raise AnnotationError(f"missing key '{key}'", where)
    return mapping[key]


def box_from_xywh(label: str, x, y, w, h, where: str, **flags) -> Box:
    x, y = number(x, where, "x"), number(y, where, "y")
    w, h = number(w, where, "width"), number(h, where, "height")
    return Box(label, x, y, x + w, y + h, where, **flags)
