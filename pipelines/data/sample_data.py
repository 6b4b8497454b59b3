"""Generate the embedded sample dataset: synthetic rows of teeth in the seed's tooth format.

The project ships no binary data; this module draws it instead, deterministically from a
seed, so that every machine (and CI) trains on the same pictures. Each image is a gum
background with one or two rows of teeth; a tooth carrying a dark lesion is labelled
``caries``, the others ``normal``. The lesion is large and dark enough that a small
detector trained from scratch learns it in a few hundred CPU steps, while stains,
shading and blur keep the task from being trivial. Some images show no teeth at all.

Output layout (the one the seed report used)::

    OUT/img_train/tooth_0001.jpg   OUT/json_train/tooth_0001.json
    OUT/img_val/...                OUT/json_val/...
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipelines.atomic import atomic_folder

LABELS = ("normal", "caries")
DEFAULT_SPLITS = {"train": 240, "val": 60}
_EMPTY_IMAGE_RATE = 0.07
_CARIES_RATE = 0.35


@dataclass(frozen=True)
class ToothBox:
    label: str
    x: int
    y: int
    width: int
    height: int


def _gum_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Pink gum with a vertical gradient, darker mouth corners and mottled texture."""
    base = np.array([120, 125, 200], np.float32) + rng.uniform(-20, 20, 3)  # BGR
    rows = np.linspace(0.75, 1.05, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(base, (h, w, 3)) * rows
    coarse = rng.normal(0, 14, (max(2, h // 24), max(2, w // 24), 1)).astype(np.float32)
    img = img + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (1.0 - 0.35 * np.clip(vignette - 0.6, 0, 1))[..., None]
    return img


def _draw_tooth(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]):
    """An ivory rounded crown with side shading, filled into ``img`` in place."""
    x, y, w, h = box
    mask = np.zeros(img.shape[:2], np.uint8)
    radius = max(2, int(min(w, h) * rng.uniform(0.35, 0.5)))
    cv2.rectangle(mask, (x + radius, y), (x + w - radius, y + h), 255, -1)
    cv2.rectangle(mask, (x, y + radius), (x + w, y + h - radius), 255, -1)
    for cx, cy in ((x + radius, y + radius), (x + w - radius, y + radius)):
        cv2.circle(mask, (cx, cy), radius, 255, -1)
    for cx, cy in ((x + radius, y + h - radius), (x + w - radius, y + h - radius)):
        cv2.circle(mask, (cx, cy), radius, 255, -1)
    ivory = np.array([200, 228, 240], np.float32) + rng.uniform(-18, 12, 3)
    xs = np.linspace(-1, 1, w, dtype=np.float32)
    shade = 1.0 - 0.22 * xs**2  # rounded crown: darker at the sides
    patch = ivory[None, None, :] * shade[None, :, None] * np.ones((h, 1, 1), np.float32)
    region = img[y : y + h, x : x + w]
    m = mask[y : y + h, x : x + w, None].astype(np.float32) / 255.0
    region[:] = region * (1 - m) + patch * m
    return mask


def _blob(img, rng: np.random.Generator, centre, size: float, colour, alpha: float, within: np.ndarray):
    """An irregular lesion or stain made of a few overlapping ellipses, kept inside ``within``."""
    layer = np.zeros(img.shape[:2], np.uint8)
    for _ in range(rng.integers(2, 5)):
        dx, dy = rng.normal(0, size * 0.3, 2)
        axes = (max(2, int(size * rng.uniform(0.4, 0.8))), max(2, int(size * rng.uniform(0.4, 0.8))))
        c = (int(centre[0] + dx), int(centre[1] + dy))
        cv2.ellipse(layer, c, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    soft = cv2.GaussianBlur(layer, (0, 0), max(1.0, size * 0.12)).astype(np.float32) / 255
    soft = (soft * (within > 0))[..., None]
    img[:] = img * (1 - alpha * soft) + np.array(colour, np.float32) * alpha * soft


def _teeth_row(rng, img, y_top: int, row_h: int) -> list[ToothBox]:
    h, w = img.shape[:2]
    count = int(rng.integers(3, 7))
    margin = int(w * rng.uniform(0.03, 0.12))
    slot = (w - 2 * margin) / count
    boxes = []
    for i in range(count):
        tw = int(slot * rng.uniform(0.72, 0.9))
        th = int(row_h * rng.uniform(0.8, 1.0))
        tx = int(margin + i * slot + (slot - tw) / 2 + rng.uniform(-0.04, 0.04) * slot)
        ty = int(y_top + (row_h - th) * rng.uniform(0, 1))
        tx, ty = max(0, min(tx, w - tw - 1)), max(0, min(ty, h - th - 1))
        mask = _draw_tooth(img, rng, (tx, ty, tw, th))
        caries = rng.random() < _CARIES_RATE
        if caries:
            size = min(tw, th) * rng.uniform(0.25, 0.4)
            centre = (tx + tw * rng.uniform(0.3, 0.7), ty + th * rng.uniform(0.25, 0.75))
            colour = (rng.uniform(5, 30), rng.uniform(15, 40), rng.uniform(30, 65))  # dark brown
            _blob(img, rng, centre, size, colour, 0.92, mask)
        elif rng.random() < 0.4:
            size = min(tw, th) * rng.uniform(0.08, 0.16)
            centre = (tx + tw * rng.uniform(0.3, 0.7), ty + th * rng.uniform(0.25, 0.75))
            _blob(img, rng, centre, size, (120, 190, 215), 0.5, mask)  # faint yellow stain
        boxes.append(ToothBox("caries" if caries else "normal", tx, ty, tw, th))
    return boxes


def render_image(seed: int, index: int) -> tuple[np.ndarray, list[ToothBox]]:
    """One BGR image and its boxes; a pure function of (seed, index)."""
    rng = np.random.default_rng([seed, index])
    w = int(rng.integers(300, 701))
    h = int(w * rng.uniform(0.55, 0.75))
    img = _gum_background(rng, h, w)
    boxes: list[ToothBox] = []
    if rng.random() >= _EMPTY_IMAGE_RATE:
        if rng.random() < 0.35:  # upper and lower jaw
            row_h = int(h * rng.uniform(0.36, 0.42))
            boxes += _teeth_row(rng, img, int(h * 0.06), row_h)
            boxes += _teeth_row(rng, img, int(h * 0.94) - row_h, row_h)
        else:
            row_h = int(h * rng.uniform(0.45, 0.7))
            boxes += _teeth_row(rng, img, int((h - row_h) * rng.uniform(0.2, 0.8)), row_h)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.4))
    img = img + rng.normal(0, rng.uniform(2, 6), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), boxes


def seed_annotation(boxes: list[ToothBox]) -> dict:
    """The per-image JSON of the seed report."""
    return {
        "annotation": {
            "regions": [
                {
                    "shape_attributes": {"name": "rect", "x": b.x, "y": b.y, "width": b.width, "height": b.height},
                    "region_attributes": {"label": b.label},
                }
                for b in boxes
            ]
        }
    }


def generate(out: Path, seed: int = 0, splits: dict[str, int] | None = None) -> dict[str, int]:
    """Write the dataset to ``out`` atomically; returns images per split."""
    splits = splits or DEFAULT_SPLITS
    with atomic_folder(Path(out)) as tmp:
        index = 0
        for split, count in splits.items():
            (tmp / f"img_{split}").mkdir()
            (tmp / f"json_{split}").mkdir()
            for n in range(1, count + 1):
                img, boxes = render_image(seed, index)
                index += 1
                stem = f"tooth_{n:04d}"
                ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                assert ok
                (tmp / f"img_{split}" / f"{stem}.jpg").write_bytes(jpeg.tobytes())
                (tmp / f"json_{split}" / f"{stem}.json").write_text(json.dumps(seed_annotation(boxes), indent=1))
    return dict(splits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (replaced if it exists)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=DEFAULT_SPLITS["train"], help="training images")
    parser.add_argument("--val", type=int, default=DEFAULT_SPLITS["val"], help="validation images")
    args = parser.parse_args(argv)
    counts = generate(args.out, args.seed, {"train": args.train, "val": args.val})
    print(f"sample dataset: {counts} images in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
