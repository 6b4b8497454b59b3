"""The data stage: annotations -> sharded TFRecords, ``label_map.pbtxt`` and ``summary.json``.

Strict by default: every invalid file is reported with its reason and nothing is
written. With ``skip_invalid`` the rest is converted and each skipped file is listed
in the summary. Outputs are built in a temporary folder beside ``out`` and moved
into place at the end, so a failed run never leaves half a dataset behind.

Determinism: the split ranks images by a hash of (seed, path), so it does not depend
on the order files are listed in and changes little when files are added or removed;
records are serialised with sorted map keys. Same inputs and seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import tensorflow as tf
from natsort import natsort_keygen

from pipelines import defaults
from pipelines.data.annotations import Box, Dataset, Entry, read_dataset
from pipelines.atomic import atomic_folder, refuse_overlap
from pipelines.config.label_map import format_label_map, labels_by_name, read_label_map
from pipelines.console import progress_bar
from pipelines.errors import OdliteError, Problem
from pipelines.data.images import DEFAULT_MAX_PIXELS, ImageProblem, read_and_prepare
from pipelines.data.tfrecord import LabelledBox, serialize_example

IMAGES_PER_SHARD = 1000
SPLIT_ORDER = ("train", "val", "test")


# A box that keeps at least this share of its area inside the image is clipped to it, with a
# warning; one mostly outside is more likely a mistake (wrong image, swapped axes) and is refused.
MIN_AREA_INSIDE = 0.5


@dataclass
class SplitStats:
    images: int = 0
    images_without_boxes: int = 0
    boxes: Counter = field(default_factory=Counter)
    shards: list[str] = field(default_factory=list)

    def as_dict(self, labels: list[str]) -> dict:
        return {
            "images": self.images,
            "images_without_boxes": self.images_without_boxes,
            "boxes": {name: self.boxes.get(name, 0) for name in labels},
            "shards": self.shards,
        }


@dataclass
class ConvertResult:
    out: Path
    format: str
    label_map: dict[int, str]
    splits: dict[str, SplitStats]
    skipped: list[Problem]
    warnings: list[Problem]
    reencoded: int
    clipped_boxes: int = 0

    def summary(self) -> dict:
        labels = list(self.label_map.values())
        return {
            "format": self.format,
            "label_map": {str(k): v for k, v in self.label_map.items()},
            "splits": {name: stats.as_dict(labels) for name, stats in self.splits.items()},
            "reencoded_images": self.reencoded,
            "clipped_boxes": self.clipped_boxes,
            "skipped": [p.as_dict() for p in self.skipped],
            "warnings": [p.as_dict() for p in self.warnings],
        }


def check_box(box: Box, width: int, height: int, source: str) -> tuple[Box, Problem | None]:
    """The box clipped to the image, with a warning when clipped; raises when unusable."""
    size = f"{box.xmax - box.xmin:g}x{box.ymax - box.ymin:g}"
    if box.xmax <= box.xmin or box.ymax <= box.ymin:
        raise OdliteError.at(source, f"box '{box.label}' has zero or negative size ({size})", box.where)
    clipped = replace(
        box,
        xmin=min(max(box.xmin, 0.0), width),
        ymin=min(max(box.ymin, 0.0), height),
        xmax=min(max(box.xmax, 0.0), width),
        ymax=min(max(box.ymax, 0.0), height),
    )
    if clipped == box:
        return box, None
    inside = max(clipped.xmax - clipped.xmin, 0.0) * max(clipped.ymax - clipped.ymin, 0.0)
    share = inside / ((box.xmax - box.xmin) * (box.ymax - box.ymin))
    coords = f"({box.xmin:g}, {box.ymin:g})-({box.xmax:g}, {box.ymax:g})"
    if share < MIN_AREA_INSIDE:
        reason = f"box '{box.label}' {coords} lies {1 - share:.0%} outside the {width}x{height} image"
        raise OdliteError.at(source, f"{reason} (more than half: not clipped)", box.where)
    warning = f"box '{box.label}' {coords} overhangs the {width}x{height} image: clipped, keeping {share:.0%} of it"
    return clipped, Problem(source, warning, box.where)


def resolve_label_map(dataset: Dataset, label_map_path: Path | None) -> dict[int, str]:
    """The given map, COCO's own category ids, or the labels in sorted order from 1."""
    if label_map_path is not None:
        return read_label_map(label_map_path)
    if dataset.categories:
        return dict(sorted(dataset.categories.items()))
    names = sorted({b.label for e in dataset.entries if e.problem is None for b in e.boxes})
    if not names:
        raise OdliteError("no labelled boxes found; give --label-map to convert images without boxes")
    return {i: name for i, name in enumerate(names, start=1)}


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(entries: list[Entry], keys: dict[int, str], val_fraction: float, seed: int) -> dict[str, list]:
    """Keep the dataset's own split, else send the ``val_fraction`` lowest-ranked images to val."""
    if any(e.split for e in entries):
        splits: dict[str, list] = {}
        for e in entries:
            splits.setdefault(e.split or "train", []).append(e)
    else:
        ranked = sorted(entries, key=lambda e: _rank(seed, keys[id(e)]))
        n_val = round(len(ranked) * val_fraction)
        if val_fraction > 0 and len(ranked) > 1:
            n_val = min(max(n_val, 1), len(ranked) - 1)
        splits = {"train": ranked[n_val:], "val": ranked[:n_val]}
    ordered = {}
    for name in sorted(splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s)):
        # Records go out in a seeded shuffle, so a shard is a fair sample of its split.
        ordered[name] = sorted(splits[name], key=lambda e: _rank(seed + 1, keys[id(e)]))
    return ordered


def _relative_key(entry: Entry, src: Path) -> str:
    base = src if src.is_dir() else src.parent
    try:
        return Path(os.path.relpath(entry.image, base)).as_posix()
    except ValueError:
        return Path(entry.image).as_posix()


@dataclass
class _Converted:
    record: bytes | None = None
    boxes: list[LabelledBox] = field(default_factory=list)
    problem: Problem | None = None
    warnings: list[Problem] = field(default_factory=list)
    reencoded: bool = False
    clipped: int = 0


def _convert_one(entry: Entry, key: str, source_id: int, ids: dict[str, int], max_pixels: int) -> _Converted:
    try:
        image = read_and_prepare(entry.image, max_pixels)
    except ImageProblem as exc:
        return _Converted(problem=Problem(str(entry.image), str(exc)))
    result = _Converted(reencoded=bool(image.reencoded))
    for box in entry.boxes:
        try:
            clipped, warning = check_box(box, image.width, image.height, entry.source)
        except OdliteError as exc:
            return _Converted(problem=exc.problems[0])
        if warning:
            result.warnings.append(warning)
            result.clipped += 1
        result.boxes.append(LabelledBox(clipped, ids[clipped.label]))
    result.record = serialize_example(image, key, source_id, result.boxes)
    return result


def _check_labels(entries: list[Entry], ids: dict[str, int], label_map_path: Path | None) -> None:
    known = ", ".join(ids)
    origin = f" (from {label_map_path})" if label_map_path else ""
    for entry in entries:
        if entry.problem:
            continue
        for box in entry.boxes:
            if box.label not in ids:
                entry.fail(f"label '{box.label}' is not in the label map{origin}; known labels: {known}", box.where)
                break


def _shard_count(num_shards: int | None, images: int) -> int:
    if num_shards is not None:
        return max(1, min(num_shards, max(images, 1)))
    return max(1, math.ceil(images / IMAGES_PER_SHARD))


def convert(
    src: Path,
    out: Path,
    label_map_path: Path | None = None,
    images: Path | None = None,
    val_fraction: float = defaults.VAL_FRACTION,
    seed: int = defaults.SPLIT_SEED,
    num_shards: int | None = None,
    skip_invalid: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    label_attribute: str | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ConvertResult:
    """Convert ``src`` into ``out``; an image past ``max_pixels`` is invalid, as an unreadable one is."""
    src, out = Path(src), Path(out)
    if not 0.0 <= val_fraction < 1.0:
        raise OdliteError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if num_shards is not None and num_shards < 1:
        raise OdliteError(f"--num-shards must be at least 1, got {num_shards}")
    refuse_overlap(out, [("source data", src), ("images folder", images), ("label map", label_map_path)])
    if out.exists() and not overwrite:
        raise OdliteError.at(out, "already exists; pass --overwrite to replace it")
    dataset = read_dataset(src, images, label_attribute)
    folders = sorted({Path(e.image).parent for e in dataset.entries if e.image is not None})
    refuse_overlap(out, [("images folder", folder) for folder in folders])  # images found elsewhere
    try:
        label_map = resolve_label_map(dataset, label_map_path)
    except OdliteError as exc:  # often a symptom: show the broken files too
        raise OdliteError(exc.args[0], exc.problems or [e.problem for e in dataset.entries if e.problem]) from None
    ids = labels_by_name(label_map)
    entries = sorted(dataset.entries, key=lambda e: natsort_keygen()((e.source, e.where)))
    _check_labels(entries, ids, label_map_path)

    problems = [e.problem for e in entries if e.problem]
    valid = [e for e in entries if e.problem is None]
    keys = {id(e): _relative_key(e, src) for e in valid}
    duplicates = [k for k, n in Counter(keys.values()).items() if n > 1]
    if duplicates:
        raise OdliteError.at(src, f"image '{duplicates[0]}' is annotated more than once")
    if not valid:
        raise OdliteError("no usable images found", problems)
    splits = assign_splits(valid, keys, val_fraction, seed)
    source_ids = {id(e): e.image_id or n for n, e in enumerate(sorted(valid, key=lambda e: keys[id(e)]), start=1)}

    with atomic_folder(out, overwrite) as tmp:
        result = ConvertResult(out, dataset.format, label_map, {}, [], list(dataset.warnings), 0)
        total = len(valid)
        bar = progress_bar(total=total, unit="img", desc="convert", disable=not progress)
        with bar, ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for split, members in splits.items():
                stats = result.splits.setdefault(split, SplitStats())
                shards = _shard_count(num_shards, len(members))
                paths = [tmp / f"{split}-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
                stats.shards = [p.name for p in paths]
                results = pool.map(lambda e: _convert_one(e, keys[id(e)], source_ids[id(e)], ids, max_pixels), members)
                _write_shards(paths, results, stats, result, bar)
        skipped = problems + result.skipped
        if skipped and not skip_invalid:
            message = f"{len(skipped)} invalid input file(s); nothing written (--skip-invalid converts the rest)"
            raise OdliteError(message, skipped)
        result.skipped = skipped
        if not any(s.images for s in result.splits.values()):
            raise OdliteError("no usable images found", skipped)
        (tmp / "label_map.pbtxt").write_text(format_label_map(label_map))
        (tmp / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result


def _write_shards(paths, results, stats: SplitStats, result: ConvertResult, bar) -> None:
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    try:
        for converted in results:
            bar.update(1)
            if converted.problem:
                result.skipped.append(converted.problem)
                continue
            result.warnings += converted.warnings
            result.clipped_boxes += converted.clipped
            result.reencoded += converted.reencoded
            writers[stats.images % len(writers)].write(converted.record)
            stats.images += 1
            stats.images_without_boxes += not converted.boxes
            stats.boxes.update(b.box.label for b in converted.boxes)
    finally:
        for writer in writers:
            writer.close()
