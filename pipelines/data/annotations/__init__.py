"""Find and read annotations in any supported format, detected by content.

Formats: the seed report's per-image JSON (``img_<split>/`` + ``json_<split>/``, paired
by file stem), VGG Image Annotator 1.x/2.x exports, COCO JSON and Pascal VOC XML. A
dataset's own split is honoured when it has one: ``img_<split>``/``json_<split>``
folders, ``train/``/``val/`` sub-folders, split words in COCO/VIA file names, or
VOC's ``ImageSets/Main/<split>.txt``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from natsort import natsorted

from pipelines.data.annotations.coco import coco_categories, is_coco, read_coco
from pipelines.data.annotations.model import AnnotationError, Box, Entry
from pipelines.data.annotations.regions import (
    is_seed_annotation,
    is_via3,
    load_json,
    read_seed_annotation,
    read_via,
    via_images,
)
from pipelines.data.annotations.voc import is_voc, read_voc
from pipelines.errors import OdliteError, Problem

__all__ = ["Box", "Dataset", "Entry", "IMAGE_SUFFIXES", "read_dataset"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
SPLIT_NAMES["test"] = "test"


@dataclass
class Dataset:
    format: str
    entries: list[Entry]
    categories: dict[int, str] | None = None  # ids a COCO file assigned to its labels
    warnings: list[Problem] = field(default_factory=list)

    @property
    def has_splits(self) -> bool:
        return any(e.split for e in self.entries)


class ImageIndex:
    """Resolves the image file names that annotation files mention."""

    def __init__(self, roots: list[Path]):
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for root in roots:
            for path in natsorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
                self.by_name.setdefault(path.name, []).append(path)
                self.by_stem.setdefault(path.stem, []).append(path)

    def finder(self, base: Path):
        """A lookup relative to ``base`` (the annotation file's folder) first, then by name anywhere."""

        def find(filename: str, stem: str | None = None) -> Path | None:
            candidate = base / filename
            if candidate.is_file():
                return candidate
            for key, table in ((Path(filename).name, self.by_name), (stem, self.by_stem)):
                found = table.get(key) if key else None
                if found:
                    return found[0]
            return None

        return find


def _split_word(name: str) -> str | None:
    for token in re.split(r"[^a-z]+", name.lower()):
        if token in SPLIT_NAMES:
            return SPLIT_NAMES[token]
    return None


def _load_all_json(paths: list[Path]) -> dict[Path, object]:
    loaded = {}
    for path in paths:
        try:
            loaded[path] = load_json(path)
        except AnnotationError as exc:
            loaded[path] = exc
    return loaded


def _json_kind(data) -> str | None:
    if isinstance(data, AnnotationError):
        return None
    if is_coco(data):
        return "coco"
    if via_images(data) is not None:
        return "via"
    if is_seed_annotation(data):
        return "seed-json"
    if is_via3(data):
        return "via3"
    return "unknown"


def _read_json_folder(folder: Path, files: list[Path], index: ImageIndex, split, attribute) -> Dataset:
    loaded = _load_all_json(files)
    kinds = {path: _json_kind(data) for path, data in loaded.items()}
    known = {k for k in kinds.values() if k is not None}
    if "via3" in known:
        path = next(p for p, k in kinds.items() if k == "via3")
        raise OdliteError.at(path, "VIA 3 projects are not supported: export the annotations as VIA 2 JSON")
    if len(known - {"unknown"}) > 1:
        found = ", ".join(sorted(known - {"unknown"}))
        raise OdliteError.at(folder, f"mixes annotation formats ({found}); convert one format at a time")
    kind = next(iter(known - {"unknown"}), None)
    if kind is None:
        first = files[0]
        data = loaded[first]
        reason = data.reason if isinstance(data, AnnotationError) else "not a COCO, VIA or seed annotation file"
        raise OdliteError.at(first, reason)
    entries: list[Entry] = []
    categories: dict[int, str] | None = None
    for path, data in loaded.items():
        if kinds[path] not in (kind, None):
            entries.append(Entry(None, str(path)).fail(f"not a {kind} annotation file like the others here"))
            continue
        if kind == "seed-json":
            image = index.by_stem.get(path.stem) or index.by_stem.get(Path(path.stem).stem)
            entries.append(read_seed_annotation(path, data, image[0] if image else None, split, attribute))
            continue
        if isinstance(data, AnnotationError):
            entries.append(Entry(None, str(path), data.where).fail(data.reason))
            continue
        file_split = split or (_split_word(path.stem) if len(files) > 1 else None)
        try:
            if kind == "coco":
                file_categories = coco_categories(path, data)
                if categories is not None and file_categories != categories:
                    raise AnnotationError("its categories differ from those of the other COCO files")
                categories = file_categories
                entries += read_coco(path, data, index.finder(path.parent), file_split)
            else:
                entries += read_via(path, data, index.finder(path.parent), file_split, attribute)
        except AnnotationError as exc:
            raise OdliteError.at(path, exc.reason, exc.where) from None
    return Dataset(kind, entries, categories)


def _voc_splits(root: Path) -> dict[str, str]:
    """``{image stem: split}`` from VOC's ImageSets/Main/<split>.txt, when present."""
    splits = {}
    for path in natsorted((root / "ImageSets" / "Main").glob("*.txt")):
        split = SPLIT_NAMES.get(path.stem)
        if split:
            for line in path.read_text().split("\n"):
                if line.strip():
                    splits.setdefault(line.split()[0], split)
    return splits


def _read_folder(folder: Path, index: ImageIndex, split: str | None, attribute: str | None) -> Dataset:
    jsons = natsorted(p for p in folder.rglob("*.json") if p.is_file())
    xmls = natsorted(p for p in folder.rglob("*.xml") if p.is_file())
    if jsons and xmls:
        raise OdliteError.at(folder, "holds both JSON and XML annotations; convert one format at a time")
    if jsons:
        return _read_json_folder(folder, jsons, index, split, attribute)
    if xmls:
        voc_split = {} if split else _voc_splits(folder)
        entries = []
        for path in xmls:
            if not is_voc(path) and path.stat().st_size > 0:
                entries.append(Entry(None, str(path)).fail("not a Pascal VOC <annotation> file"))
                continue
            entry = read_voc(path, index.finder(path.parent), split or voc_split.get(path.stem))
            entries.append(entry)
        return Dataset("voc", entries)
    raise OdliteError.at(folder, "no annotation files found (*.json or *.xml)")


def _seed_split_folders(src: Path) -> dict[str, tuple[Path, Path]]:
    pairs = {}
    for img_dir in natsorted(p for p in src.glob("img*") if p.is_dir()):
        suffix = img_dir.name[3:]
        json_dir = src / f"json{suffix}"
        if json_dir.is_dir():
            name = suffix.lstrip("_-")
            pairs[SPLIT_NAMES.get(name, name) if name else ""] = (img_dir, json_dir)
    return pairs


def read_dataset(src: Path, images: Path | None = None, label_attribute: str | None = None) -> Dataset:
    """Every annotated image under ``src`` (a folder or one COCO/VIA/VOC file)."""
    src = Path(src)
    if not src.exists():
        raise OdliteError.at(src, "no such file or folder")
    roots = [images] if images else []
    if images and not images.is_dir():
        raise OdliteError.at(images, "--images must be a folder")
    if src.is_file():
        index = ImageIndex(roots + [src.parent])
        if src.suffix.lower() == ".xml":
            return Dataset("voc", [read_voc(src, index.finder(src.parent), None)])
        return _read_json_folder(src.parent, [src], index, None, label_attribute)

    seed = _seed_split_folders(src)
    if seed:
        entries, warnings = [], []
        for split, (img_dir, json_dir) in seed.items():
            index = ImageIndex(roots + [img_dir])
            files = natsorted(p for p in json_dir.iterdir() if p.suffix.lower() == ".json")
            images_here = natsorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if files and len(files) == len(images_here) and not any(f.stem in index.by_stem for f in files):
                index.by_stem = {f.stem: [image] for f, image in zip(files, images_here)}
                reason = "no JSON file name matches an image name: paired in natural sort order"
                warnings.append(Problem(str(json_dir), reason))
            found = _read_json_folder(json_dir, files, index, split or None, label_attribute) if files else None
            entries += found.entries if found else []
        return Dataset("seed-json", entries, warnings=warnings + _unannotated(seed, entries))

    split_dirs = {SPLIT_NAMES[p.name.lower()]: p for p in src.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES}
    if split_dirs:
        parts = [_read_folder(d, ImageIndex(roots + [d]), split, label_attribute) for split, d in split_dirs.items()]
        formats = {p.format for p in parts}
        if len(formats) > 1:
            raise OdliteError.at(src, f"split folders use different formats ({', '.join(sorted(formats))})")
        categories = next((p.categories for p in parts if p.categories), None)
        return Dataset(parts[0].format, [e for p in parts for e in p.entries], categories)
    return _read_folder(src, ImageIndex(roots + [src]), None, label_attribute)


def _unannotated(seed: dict[str, tuple[Path, Path]], entries: list[Entry]) -> list[Problem]:
    """Images in a seed image folder that no JSON file names: reported, not converted."""
    used = {e.image for e in entries if e.image}
    warnings = []
    for img_dir, _ in seed.values():
        for path in natsorted(img_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path not in used:
                warnings.append(Problem(str(path), "image without an annotation file: not converted"))
    return warnings
