"""Pascal VOC XML, one file per image (LabelImg and CVAT write the same)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pipelines.data.annotations.model import AnnotationError, Box, Entry, number


def _text(element, tag: str, where: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"missing <{tag}>", where)
    return child.text.strip()


def parse_voc(path: Path) -> ET.Element:
    try:
        if path.stat().st_size == 0:
            raise AnnotationError("empty file")
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise AnnotationError(f"malformed XML: {exc.msg if hasattr(exc, 'msg') else exc}", f"{line}:{column}") from None
    if root.tag != "annotation":
        raise AnnotationError(f"root element is <{root.tag}>, expected <annotation>")
    return root


def is_voc(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(2048)
    except OSError:
        return False
    return b"<annotation" in head


def read_voc(path: Path, find_image, split: str | None) -> Entry:
    entry = Entry(image=None, source=str(path), split=split)
    try:
        root = parse_voc(path)
        filename = _text(root, "filename", "annotation")
        for i, obj in enumerate(root.findall("object")):
            where = f"object[{i}]"
            label = _text(obj, "name", where)
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise AnnotationError("missing <bndbox>", where)
            coords = {k: number(_text(bndbox, k, where), where, k) for k in ("xmin", "ymin", "xmax", "ymax")}
            difficult = obj.findtext("difficult", "0").strip() == "1"
            entry.boxes.append(Box(label, where=where, difficult=difficult, **coords))
    except AnnotationError as exc:
        return entry.fail(exc.reason, exc.where)
    entry.image = find_image(filename, path.stem)
    if entry.image is None:
        entry.fail(f"image '{filename}' not found")
    return entry
