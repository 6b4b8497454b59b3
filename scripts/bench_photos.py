"""The real-photo benchmark (``bench.py --only photos``): phone-sized JPEGs through every path.

The photos are the sample's validation teeth scaled up to 1920x1080 and 4000x3000, with
sensor-like noise and a fine texture so that they compress, and cost to decode, as
photos do (flat colours would not). They carry the scaled ground truth, so the same set
also measures accuracy. Written once into ``bench/photos/``.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from load_test import load_test
from PIL import Image

from pipelines.data.convert import convert
from pipelines.data.sample_data import generate

PHOTO_SIZES = {"1080p": (1920, 1080), "12mp": (4000, 3000)}


def photo_set(root: Path, count: int, label_map: Path) -> dict[str, Path]:
    """{size name: a converted data folder} of ``count`` photos per size; the JPEGs in root/<name>/img_val."""
    src = root / "sample"
    if not src.exists():
        generate(src, seed=5, splits={"val": count})
    rng = np.random.default_rng(0)
    folders = {}
    for name, (width, height) in PHOTO_SIZES.items():
        folder, data = root / name, root / f"{name}-data"
        if not (folder / ".complete").exists():
            (folder / "img_val").mkdir(parents=True, exist_ok=True)
            (folder / "json_val").mkdir(parents=True, exist_ok=True)
            for path in sorted((src / "img_val").glob("*.jpg")):
                small = cv2.imread(str(path))
                sy, sx = height / small.shape[0], width / small.shape[1]
                big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
                grain = rng.normal(0, 1, (height // 6, width // 6)).astype(np.float32)
                big += 8 * cv2.resize(grain, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
                big += rng.normal(0, 3, big.shape).astype(np.float32)
                cv2.imwrite(str(folder / "img_val" / path.name), np.clip(big, 0, 255).astype(np.uint8))
                notes = json.loads((src / "json_val" / f"{path.stem}.json").read_text())
                for region in notes["annotation"]["regions"]:
                    box = region["shape_attributes"]
                    box.update(x=box["x"] * sx, y=box["y"] * sy, width=box["width"] * sx, height=box["height"] * sy)
                (folder / "json_val" / f"{path.stem}.json").write_text(json.dumps(notes))
            (folder / ".complete").touch()
        if not data.exists():
            convert(folder, data, label_map_path=label_map, progress=False)
        folders[name] = data
    return folders


def _ms(function, items, repeats: int = 2) -> float:
    function(items[0])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        for item in items:
            function(item)
    return round(1000 * (time.perf_counter() - start) / (repeats * len(items)), 2)


def bench_decode(root: Path, input_size: int) -> dict:
    """ms per photo: a full decode (PIL, as every path did; OpenCV beside it) against load_picture's reduced one."""
    from pipelines.data.images import load_picture

    results = {}
    for name in PHOTO_SIZES:
        photos = [p.read_bytes() for p in sorted((root / name / "img_val").glob("*.jpg"))][:10]
        results[name] = {
            "full_pil_ms": _ms(lambda d: load_picture(d).rgb, photos),
            "full_opencv_ms": _ms(lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR), photos),
            "reduced_ms": _ms(lambda d: load_picture(d, lambda w, h: (input_size, input_size)), photos),
            "reduced_shape": list(load_picture(photos[0], lambda w, h: (input_size, input_size)).rgb.shape[:2]),
            "photo_kb": round(statistics.mean(len(d) for d in photos) / 1024),
        }
    return results


def bench_detect(model: Path, root: Path, work: Path) -> dict:
    """``odlite detect`` images/s on the folder of 1080p photos (pictures and JSON included)."""
    from pipelines.detect import detect

    folder = root / "1080p" / "img_val"
    detect(model, [str(next(folder.glob("*.jpg")))], work / "detect-warm", progress=False)
    start = time.perf_counter()
    found = detect(model, [str(folder)], work / "detect", progress=False)
    seconds = time.perf_counter() - start
    return {"model": model.name, "images": len(found.images), "images_per_s": round(len(found.images) / seconds, 2)}


def bench_tag(model: Path, root: Path, clients: int, seconds: float, pools=(2,)) -> dict:
    """/tag requests/s on a 320x320 JPEG and on a 1080p photo, in the same run; the photo also at other pools."""
    photo = next((root / "1080p" / "img_val").glob("*.jpg")).read_bytes()
    small = Image.open(io.BytesIO(photo)).convert("RGB").resize((320, 320))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=92)
    results = {"jpeg_320": load_test(model, buffer.getvalue(), 2, clients, seconds)}
    for pool in pools:
        results[f"photo_1080p_pool_{pool}"] = load_test(model, photo, pool, clients, seconds)
    results["ratio_1080p_to_320"] = round(
        results["photo_1080p_pool_2"]["requests_per_s"] / results["jpeg_320"]["requests_per_s"], 2
    )
    return results


def bench_input(config: Path, data: Path, work: Path, batches: int = 15) -> dict:
    """The training input pipeline alone (decode, augment, resize, label) on the 1080p photos' records."""
    from pipelines.config.experiment import load_train_spec
    from pipelines.config.pipeline_config import patch_config
    from pipelines.data.train_input import train_dataset

    patched = work / "photos.config"
    patch_config(config, patched, [f"train_input_path={data}/val-*.tfrecord"], overwrite=True)
    batches_in = iter(train_dataset(load_train_spec(patched), 8, seed=0))
    for _ in range(5):
        next(batches_in)
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_in)
    return {"batch_size": 8, "batches": batches, "images_per_s": round(batches * 8 / (time.perf_counter() - start), 1)}
