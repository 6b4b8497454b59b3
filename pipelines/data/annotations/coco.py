"""COCO detection JSON (``images``, ``annotations``, ``categories``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.data.annotations.model import AnnotationError, Entry, box_from_xywh, require


def is_coco(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("images"), list) and "annotations" in data


def coco_categories(path: Path, data) -> dict[int, str]:
    """``{category id: name}``; COCO's own ids become the label map's ids, as in the OD API."""
    categories = {}
    for i, category in enumerate(data.get("categories") or []):
        where = f"categories[{i}]"
        cat_id, name = require(category, "id", where), require(category, "name", where)
        if not isinstance(cat_id, int) or cat_id < 1:
            raise AnnotationError(f"category id {cat_id!r} must be an integer >= 1", where)
        categories[cat_id] = str(name)
    if not categories:
        raise AnnotationError("no 'categories'")
    return categories


def read_coco(path: Path, data, find_image, split: str | None) -> list[Entry]:
    categories = coco_categories(path, data)
    entries: dict[int, Entry] = {}
    for i, image in enumerate(data["images"]):
        where = f"images[{i}]"
        entry = Entry(image=None, source=str(path), where=where, split=split)
        image_id, file_name = require(image, "id", where), require(image, "file_name", where)
        if not isinstance(image_id, int) or image_id in entries:
            raise AnnotationError(f"image id {image_id!r} is not a unique integer", where)
        entry.image_id = image_id
        entry.image = find_image(file_name)
        if entry.image is None:
            entry.fail(f"image '{file_name}' not found")
        entries[image_id] = entry
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise AnnotationError("'annotations' is not a list", "annotations")
    orphans = []
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        entry = entries.get(ann.get("image_id")) if isinstance(ann, dict) else None
        if entry is None:
            reason = f"image_id {ann.get('image_id') if isinstance(ann, dict) else None!r} is not among 'images'"
            orphans.append(Entry(image=None, source=str(path), where=where, split=split).fail(reason))
            continue
        try:
            category = require(ann, "category_id", where)
            if category not in categories:
                raise AnnotationError(f"category_id {category!r} is not among 'categories'", where)
            bbox = require(ann, "bbox", where)
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise AnnotationError(f"'bbox' must be [x, y, width, height], found {bbox!r}", where)
            crowd = bool(ann.get("iscrowd", 0))
            entry.boxes.append(box_from_xywh(categories[category], *bbox, where, is_crowd=crowd))
        except AnnotationError as exc:
            if entry.problem is None:
                entry.fail(exc.reason, exc.where)
    return list(entries.values()) + orphans
