"""Benchmarks of odlite's stages; results are merged into one JSON file (``make bench``).

Each section times the stage function itself on generated data, after imports and
data generation, so the numbers compare across runs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from pipelines.convert import convert  # noqa: E402
from pipelines.sample_data import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABEL_MAP = ROOT / "label_maps" / "tooth_label_map.pbtxt"


def _machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def _time_convert(src: Path, work: Path, repeats: int) -> dict:
    best = None
    for _ in range(repeats):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = convert(src, out, label_map_path=LABEL_MAP, progress=False)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    images = sum(s.images for s in result.splits.values())
    size = sum(p.stat().st_size for p in out.glob("*.tfrecord"))
    return {
        "images": images,
        "seconds": round(best, 3),
        "images_per_s": round(images / best, 1),
        "tfrecord_mb": round(size / 2**20, 1),
        "reencoded": result.reencoded,
    }


def bench_convert(work: Path, images: int, repeats: int) -> dict:
    """JPEG pass-through on ``images`` sample images, and the re-encode path on PNG copies of a share of them."""
    src = work / "jpeg"
    generate(src, seed=0, splits={"train": images - images // 5, "val": images // 5})
    results = {"passthrough_jpeg": _time_convert(src, work, repeats)}
    png = work / "png"
    count = max(1, images // 4)
    for folder in ("img_train", "json_train"):
        (png / folder).mkdir(parents=True)
    for path in sorted((src / "img_train").glob("*.jpg"))[:count]:
        Image.open(path).save(png / "img_train" / f"{path.stem}.png")
        shutil.copy(src / "json_train" / f"{path.stem}.json", png / "json_train")
    results["reencode_png"] = _time_convert(png, work, repeats)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--images", type=int, default=2000, help="images in the conversion benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = _machine()
    with tempfile.TemporaryDirectory() as work:
        results["convert"] = bench_convert(Path(work), args.images, args.repeats)
    results["convert"]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
