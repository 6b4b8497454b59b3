"""VGG Image Annotator regions: the seed's per-image JSON and VIA 1.x/2.x project exports.

The seed format is VIA's region list wrapped in ``{"annotation": {"regions": [...]}}``,
so both readers share the region parser.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.data.annotations.model import AnnotationError, Box, Entry, box_from_xywh, number, require


def region_label(attributes, where: str, attribute: str | None) -> str:
    """The label of a region: the named attribute, else 'label', else the only attribute."""
    if not isinstance(attributes, dict):
        raise AnnotationError("'region_attributes' is not an object", where)
    if attribute is None:
        if "label" in attributes:
            attribute = "label"
        elif len(attributes) == 1:
            attribute = next(iter(attributes))
        else:
            names = ", ".join(sorted(attributes)) or "none"
            raise AnnotationError(f"cannot tell which region attribute is the label (attributes: {names})", where)
    value = require(attributes, attribute, where)
    if isinstance(value, dict):  # VIA checkbox: {"caries": true}
        chosen = [k for k, v in value.items() if v]
        if len(chosen) != 1:
            raise AnnotationError(f"label attribute '{attribute}' has {len(chosen)} options ticked, need one", where)
        value = chosen[0]
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(f"label {value!r} is not a non-empty string", where)
    return value.strip()


def parse_region(region, where: str, attribute: str | None = None) -> Box:
    shape = require(region, "shape_attributes", where)
    label = region_label(region.get("region_attributes", {}), where, attribute)
    kind = shape.get("name", "rect") if isinstance(shape, dict) else None
    if kind == "rect":
        return box_from_xywh(
            label,
            require(shape, "x", where),
            require(shape, "y", where),
            require(shape, "width", where),
            require(shape, "height", where),
            where,
        )
    if kind in ("polygon", "polyline"):
        xs = [number(v, where, "all_points_x") for v in require(shape, "all_points_x", where)]
        ys = [number(v, where, "all_points_y") for v in require(shape, "all_points_y", where)]
        if not xs or len(xs) != len(ys):
            raise AnnotationError(f"{kind} needs as many x as y points, and at least one", where)
        return Box(label, min(xs), min(ys), max(xs), max(ys), where)
    if kind in ("circle", "ellipse"):
        cx, cy = number(require(shape, "cx", where), where, "cx"), number(require(shape, "cy", where), where, "cy")
        keys = ("r", "r") if kind == "circle" else ("rx", "ry")
        rx, ry = (number(require(shape, k, where), where, k) for k in keys)
        return Box(label, cx - rx, cy - ry, cx + rx, cy + ry, where)
    raise AnnotationError(f"region shape {kind!r} is not supported (rect, polygon, polyline, circle, ellipse)", where)


def parse_regions(regions, where: str, attribute: str | None = None) -> list[Box]:
    if isinstance(regions, dict):  # VIA 1.x keeps regions in an object keyed by index
        regions = [regions[k] for k in sorted(regions, key=lambda k: (len(k), k))]
    if not isinstance(regions, list):
        raise AnnotationError("'regions' is not a list", where)
    return [parse_region(r, f"{where}[{i}]", attribute) for i, r in enumerate(regions)]


def is_seed_annotation(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("annotation"), dict)


def read_seed_annotation(path: Path, data, image: Path | None, split: str | None, attribute: str | None) -> Entry:
    """One per-image JSON file of the seed report; ``data`` is its parsed content or the parse error."""
    entry = Entry(image=image, source=str(path), split=split)
    try:
        if isinstance(data, AnnotationError):
            raise data
        if not is_seed_annotation(data):
            raise AnnotationError('expected {"annotation": {"regions": [...]}}')
        entry.boxes = parse_regions(
            require(data["annotation"], "regions", "annotation"), "annotation.regions", attribute
        )
    except AnnotationError as exc:
        return entry.fail(exc.reason, exc.where)
    if image is None:
        return entry.fail("annotation without its image (no image file with the same name)")
    return entry


def via_images(data) -> dict | None:
    """The per-image records of a VIA 1.x/2.x project or annotation export, or None."""
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        return data["_via_img_metadata"]
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "filename" in v for v in data.values()):
        return data
    return None


def is_via3(data) -> bool:
    return isinstance(data, dict) and {"project", "file", "metadata"} <= set(data)


def read_via(path: Path, data, find_image, split: str | None, attribute: str | None) -> list[Entry]:
    entries = []
    for key, record in via_images(data).items():
        where = f"{key}"
        entry = Entry(image=None, source=str(path), where=where, split=split)
        try:
            filename = require(record, "filename", where)
            entry.image = find_image(filename)
            entry.boxes = parse_regions(record.get("regions", []), f"{where}.regions", attribute)
        except AnnotationError as exc:
            entries.append(entry.fail(exc.reason, exc.where))
            continue
        if entry.image is None:
            entry.fail(f"image '{filename}' not found")
        entries.append(entry)
    return entries


def load_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise AnnotationError("empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"malformed JSON: {exc.msg}", f"{exc.lineno}:{exc.colno}") from None
