"""Look inside TFRecords: boxes per class per split, anomalies, and sample pictures.

Works on odlite's output and on records written by the OD API's own tools, so a user
can check a dataset before spending hours training on it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from natsort import natsorted
from PIL import Image

from pipelines import defaults
from pipelines.config.label_map import read_label_map
from pipelines.reports.draw import draw_boxes, draw_on
from pipelines.errors import OdliteError
from pipelines.data.images import DEFAULT_MAX_PIXELS, ImageProblem
from pipelines.data.tfrecord import read_examples

_RECORD_FILE = re.compile(r"\.(tfrecord|record)s?(-\d+-of-\d+)?$|-\d+-of-\d+\.(tfrecord|record)s?$")


@dataclass
class SplitCounts:
    images: int = 0
    images_without_boxes: int = 0
    boxes: Counter = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)


@dataclass
class InspectResult:
    label_map: dict[int, str]
    splits: dict[str, SplitCounts]
    pictures: list[Path]


def find_record_files(data_dir: Path) -> dict[str, list[Path]]:
    """``{split: shard paths}``: the split is the file name up to its first '-' or '.'."""
    files = natsorted(p for p in data_dir.iterdir() if p.is_file() and _RECORD_FILE.search(p.name))
    splits: dict[str, list[Path]] = {}
    for path in files:
        splits.setdefault(re.split(r"[-.]", path.name, maxsplit=1)[0], []).append(path)
    return splits


def inspect_records(
    data_dir: Path,
    samples: int = defaults.INSPECT_SAMPLES,
    out: Path | None = None,
    label_map_path: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> InspectResult:
    """Counts and anomalies per split, and the first ``samples`` images of each drawn; an image that
    cannot be drawn (past ``max_pixels``, unreadable) is an anomaly."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise OdliteError.at(data_dir, "not a folder")
    shards = find_record_files(data_dir)
    if not shards:
        raise OdliteError.at(data_dir, "no TFRecord files (*.tfrecord, *.record, NAME-00000-of-00001.tfrecord)")
    label_map_path = label_map_path or data_dir / "label_map.pbtxt"
    label_map = read_label_map(label_map_path) if label_map_path.exists() else {}
    out = Path(out) if out else data_dir / "inspect"
    result = InspectResult(label_map, {}, [])
    for split, paths in shards.items():
        counts = result.splits.setdefault(split, SplitCounts())
        try:
            for example in read_examples([str(p) for p in paths]):
                _count(example, counts, label_map)
                if counts.images <= samples:
                    try:
                        result.pictures.append(_save_picture(example, label_map, out, split, counts, max_pixels))
                    except ImageProblem as problem:
                        counts.anomalies.append(f"{_filename(example, counts)}: not drawn: {problem}")
        except Exception as exc:  # a corrupt shard: TensorFlow's message names the record
            if "DataLoss" not in type(exc).__name__ and "InvalidArgument" not in type(exc).__name__:
                raise
            raise OdliteError.at(paths[0].parent / f"{split}-*", f"unreadable record: {exc}") from None
    return result


def _names(example, label_map: dict[int, str]) -> list[str]:
    texts = [t.decode() for t in example["image/object/class/text"]]
    ids = example["image/object/class/label"]
    if len(texts) == len(ids):
        return texts
    return [label_map.get(int(i), str(int(i))) for i in ids]


def _count(example, counts: SplitCounts, label_map: dict[int, str]) -> None:
    counts.images += 1
    ids = example["image/object/class/label"]
    names = _names(example, label_map)
    counts.images_without_boxes += len(ids) == 0
    counts.boxes.update(names)
    filename = _filename(example, counts)
    coords = [example[f"image/object/bbox/{k}"] for k in ("ymin", "xmin", "ymax", "xmax")]
    for i, (ymin, xmin, ymax, xmax) in enumerate(zip(*coords)):
        if not (0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1):
            counts.anomalies.append(
                f"{filename}: box {i} ({xmin:.3f}, {ymin:.3f}, {xmax:.3f}, {ymax:.3f}) not in [0, 1]"
            )
    if label_map:
        for i, class_id in enumerate(ids):
            if int(class_id) not in label_map:
                counts.anomalies.append(f"{filename}: box {i} has class id {int(class_id)}, not in the label map")


def _filename(example, counts: SplitCounts) -> str:
    return example["image/filename"].decode() or f"record {counts.images}"


def _save_picture(example, label_map, out: Path, split: str, counts: SplitCounts, max_pixels: int) -> Path:
    boxes = list(zip(*[example[f"image/object/bbox/{k}"] for k in ("ymin", "xmin", "ymax", "xmax")]))
    names, ids = _names(example, label_map), example["image/object/class/label"]
    image = draw_boxes(example["image/encoded"], boxes, names, ids, max_pixels=max_pixels)
    n = counts.images
    stem = Path(example["image/filename"].decode() or "record").stem
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{split}_{n:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}.png"
    image.save(path)
    return path


def draw_augmented(
    config_path: Path, data_dir: Path, versions: int, samples: int, out: Path | None = None, seed: int = 0
) -> list[Path]:
    """``versions`` augmented versions of each of the first ``samples`` training records, drawn with their
    boxes: the config's data_augmentation_options exactly as training applies them (its decoder, its
    chain, a seed per example), before the resize to the network input. To see a recipe before training."""
    import numpy as np
    import tensorflow as tf

    from pipelines.config.experiment import load_train_spec
    from pipelines.data.augment import augmenter
    from pipelines.data.train_input import training_decoder

    spec = load_train_spec(config_path)
    if not spec.augmentations:
        raise OdliteError.at(config_path, "train_config has no data_augmentation_options to draw")
    shards = find_record_files(Path(data_dir)).get("train")
    if not shards:
        raise OdliteError.at(data_dir, "no train-*.tfrecord here to augment")
    label_map = read_label_map(spec.label_map_path) if Path(spec.label_map_path).is_file() else {}
    decoder, augment = training_decoder(spec), augmenter(spec.augmentations)
    out = Path(out) if out else Path(data_dir) / "inspect" / "augmented"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    records = tf.data.TFRecordDataset([str(p) for p in shards]).take(samples)
    for index, raw in enumerate(records):
        example = decoder.decode(raw)
        name = tf.io.parse_single_example(raw, {"image/filename": tf.io.FixedLenFeature((), tf.string, "")})
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name["image/filename"].numpy().decode() or "record").stem)
        for version in range(versions):
            seeded = augment(example, tf.constant([seed + version, index], tf.int64))
            image = np.clip(np.round(seeded["image"].numpy()), 0, 255).astype(np.uint8)  # float chains too
            ids = [int(i) for i in seeded["groundtruth_classes"].numpy()]
            names = [label_map.get(i, str(i)) for i in ids]
            picture = draw_on(Image.fromarray(image), seeded["groundtruth_boxes"].numpy(), names, ids)
            written.append(out / f"{index:02d}_{stem}_aug{version}.png")
            picture.save(written[-1])
    return written
