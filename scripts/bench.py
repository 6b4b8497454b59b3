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

from load_test import load_test  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.data.convert import convert  # noqa: E402
from pipelines.data.sample_data import generate  # noqa: E402

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


def sample_config(work: Path, base: str, name: str, batch_size: int, splits: dict | None = None) -> tuple[Path, Path]:
    """A shipped config pointed at generated and converted sample data (made once per split sizes):
    (config, data folder)."""
    from pipelines.config.pipeline_config import patch_config

    sizes = "-".join(f"{k}{v}" for k, v in (splits or {}).items()) or "full"
    src, data = work / f"sample-{sizes}", work / f"data-{sizes}"
    if not data.exists():
        generate(src, seed=0, splits=splits)
        convert(src, data, label_map_path=LABEL_MAP, progress=False)
    config = work / f"{name}.config"
    paths = [f"train_input_path={data}/train-*.tfrecord", f"eval_input_path={data}/val-*.tfrecord"]
    patch_config(ROOT / "configs" / base, config, [*paths, f"batch_size={batch_size}"])
    return config, data


def timed_training(
    config: Path, model_dir: Path, steps: int, warmup: int, mixed_precision: bool = False, steps_per_loop=None
) -> float:
    """Seconds per step over ``steps`` training steps after ``warmup`` (tracing, pipeline fill); with
    several steps per call, timed from the first call that ends at or past ``warmup``."""
    from pipelines.train import train

    stamps = []
    train(config, model_dir, num_steps=warmup + steps, checkpoint_every=10**9, progress=False,
          mixed_precision=mixed_precision, steps_per_loop=steps_per_loop,
          on_step=lambda step, losses: stamps.append((step, time.perf_counter())))  # fmt: skip
    first = next((step, t) for step, t in stamps if step >= warmup)
    return (stamps[-1][1] - first[1]) / max(stamps[-1][0] - first[0], 1)


def bench_training(work: Path, steps: int, warmup: int) -> dict:
    """Training images/s at 320 x 320: on a GPU at batch 64 and 128, float32 and mixed precision, 50 steps
    per call; on the CPU at batch 8, one step per call and ten. Beside them, the input pipeline alone."""
    import tensorflow as tf

    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    batches = (64, 128) if device == "gpu" else (8,)
    results = {}
    for batch in batches:
        config, data = sample_config(work, "ssd_mobilenet_v2_fpnlite_320x320.config", f"bench{batch}", batch)
        runs = [("", False, None)]
        if device == "gpu":
            runs.append(("_mixed_precision", True, None))
        else:
            runs.append(("_10_steps_per_call", False, 10))
        for suffix, mixed, per_call in runs:
            model_dir = work / f"model{batch}{suffix}"
            seconds = timed_training(config, model_dir, steps, warmup, mixed, per_call)
            result = {"device": device, "input_size": 320, "batch_size": batch, "steps": steps}
            result.update(images_per_s=round(batch / seconds, 2), ms_per_step=round(1000 * seconds, 1))
            results[f"train_{device}_batch{batch}{suffix}"] = result
        results[f"input_pipeline_batch{batch}"] = bench_input_pipeline(config, batch, batches=max(20, steps // 2))
    # The plain run of the first batch size is the model the evaluation (and the later sections) use.
    shutil.copytree(work / f"model{batches[0]}", work / "model")
    config, data = sample_config(work, "ssd_mobilenet_v2_fpnlite_320x320.config", "bench-eval", 8)

    from pipelines.config.experiment import load_train_spec
    from pipelines.detectors import checkpoint_detector
    from pipelines.evaluate import run_detector

    spec = load_train_spec(config)
    detect = checkpoint_detector(spec, tf.train.latest_checkpoint(str(work / "model")))
    paths = [str(p) for p in sorted(data.glob("val-*.tfrecord"))]
    run_detector(detect, paths, 320, progress=False, limit=8)  # trace
    start = time.perf_counter()
    found = run_detector(detect, paths, 320, progress=False)
    evaluated = len(found.images) / (time.perf_counter() - start)
    return {**results, f"eval_{device}": {"images": len(found.images), "images_per_s": round(evaluated, 2)}}


def bench_input_pipeline(config: Path, batch_size: int, batches: int) -> dict:
    """The training input pipeline alone (decode, augment, resize, anchor labelling) on every core: the
    rate it could feed an accelerator at, to set beside the training rate."""
    from pipelines.config.experiment import load_train_spec
    from pipelines.data.train_input import train_dataset

    batches_in = iter(train_dataset(load_train_spec(config), batch_size))
    for _ in range(10):  # fill the shuffle buffer and let tf.data tune its parallelism
        next(batches_in)
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_in)
    seconds = time.perf_counter() - start
    rate = round(batches * batch_size / seconds, 1)
    return {"batch_size": batch_size, "batches": batches, "cores": os.cpu_count(), "images_per_s": rate}


# At the AVX2 peak of these cores, for the default 0.94 GMAC model at 320x320 (the figures);
# the floor of the model measured here is scaled by its own multiply-accumulates.
LATENCY_FLOOR_MS = {"fp32": 9.0, "fp16": 9.0, "int8": 5.0}
DEFAULT_GMAC = 0.94


def model_gmac(config: Path) -> float:
    """Multiply-accumulates of backbone, FPN and head at the config's input size (TF's profiler)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from pipelines.config.experiment import load_train_spec
    from pipelines.models.ssd import build_model

    spec = load_train_spec(config).model
    model = build_model(spec)

    @tf.function(input_signature=[tf.TensorSpec([1, spec.input_size, spec.input_size, 3], tf.float32)])
    def network(x):
        return model.head(model.decoder(model.backbone(x, training=False), training=False), training=False)[:2]

    frozen = convert_variables_to_constants_v2(network.get_concrete_function())
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(frozen.graph, options=options).total_float_ops / 2e9


def bench_tflite(model_dir: Path, work: Path, runs: int) -> dict:
    """Export ``model_dir`` and time each variant: median of ``runs`` invokes after warm-up, 1 and 2 threads."""
    from pipelines.config.experiment import load_train_spec
    from pipelines.export.exporter import VARIANTS, export, first_validation_image
    from pipelines.export.tflite_runner import median_latency_ms

    out = work / "export"
    export(None, model_dir, out, calibration_images=100, progress=None)
    gmac = model_gmac(out / "pipeline.config")
    photo = first_validation_image(load_train_spec(out / "pipeline.config"))
    results = {"model_dir": str(model_dir), "input_size": 320, "runs": runs, "gmac": round(gmac, 3)}
    for variant, name in VARIANTS.items():
        path = out / name
        latency = {
            f"{t}_threads_ms": round(median_latency_ms(path, t, runs=runs, warmup=10, image=photo), 2) for t in (1, 2)
        }
        floor = LATENCY_FLOOR_MS[variant] * gmac / DEFAULT_GMAC
        results[variant] = {"file": name, "mb": round(path.stat().st_size / 1e6, 2), **latency}
        results[variant]["floor_ms"] = round(floor, 2)
        results[variant]["share_of_floor_2_threads"] = round(floor / latency["2_threads_ms"], 2)
    return results


def bench_serve(export_dir: Path, work: Path, clients: int, seconds: float) -> dict:
    """Load test of the tag service: one interpreter (a lock, in effect) against a pool of two."""
    sample = work / "serve-sample"
    generate(sample, seed=3, splits={"val": 1})
    jpeg = next((sample / "img_val").glob("*.jpg")).read_bytes()
    model = export_dir / "model_int8.tflite"
    return {f"pool_{n}": load_test(model, jpeg, n, clients, seconds) for n in (1, 2)}


def bench_faster_rcnn(work: Path, steps: int, clients: int, seconds: float) -> dict:
    """Faster R-CNN ResNet-50 FPN at 640 (the shipped config, batch 2): training images/s after two warm-up
    steps, evaluation images/s, and a load test of /tag on its SavedModel (pool of 2)."""
    import tensorflow as tf

    from pipelines.config.experiment import load_train_spec
    from pipelines.detectors import checkpoint_detector
    from pipelines.evaluate import run_detector
    from pipelines.export.exporter import export

    config, data = sample_config(work, "faster_rcnn_resnet50_fpn_640.config", "frcnn", 2, {"train": 16, "val": 16})
    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    model_dir = work / "frcnn-model"
    train_seconds = timed_training(config, model_dir, steps, warmup=2) * steps
    spec = load_train_spec(config)
    detect = checkpoint_detector(spec, tf.train.latest_checkpoint(str(model_dir)))
    paths = [str(p) for p in sorted(data.glob("val-*.tfrecord"))]
    run_detector(detect, paths, None, progress=False, limit=2)  # trace
    start = time.perf_counter()
    found = run_detector(detect, paths, None, progress=False)
    evaluated = len(found.images) / (time.perf_counter() - start)
    export(config, model_dir, work / "frcnn-export", progress=None)
    sample = work / "serve-sample"
    if not sample.exists():
        generate(sample, seed=3, splits={"val": 1})
    jpeg = next((sample / "img_val").glob("*.jpg")).read_bytes()
    return {
        f"train_{device}": {
            "input_size": 640,
            "batch_size": 2,
            "steps": steps,
            "images_per_s": round(steps * 2 / train_seconds, 3),
            "s_per_step": round(train_seconds / steps, 2),
        },
        f"eval_{device}": {"images": len(found.images), "images_per_s": round(evaluated, 2)},
        "serve_saved_model": load_test(work / "frcnn-export" / "saved_model", jpeg, 2, clients, seconds),
    }


def _trained_model(work: Path) -> Path:
    """The demo's model when `make demo` has made it (trained to the end: a model as users export it),
    else the 105 steps of the training benchmark."""
    demo = ROOT / "models" / "tooth-demo"
    return demo if (demo / "checkpoint").exists() else work / "t" / "model"


def _has_model(args) -> bool:
    """Whether this run has a model to export: the training section's, --model-dir's or the demo's."""
    return args.only is None or args.model_dir is not None or (ROOT / "models" / "tooth-demo" / "checkpoint").exists()


def _int8_export(work: Path, model_dir: Path | None) -> Path:
    """The int8 export the serve and photo sections load (made once per run)."""
    export_dir = work / "export"
    if not export_dir.exists():
        from pipelines.export.exporter import export

        model_dir = model_dir or _trained_model(work)
        export(None, model_dir, export_dir, calibration_images=100, variants=("int8",), progress=None)
    return export_dir


def bench_real_photos(model: Path, work: Path, clients: int, seconds: float) -> dict:
    """Phone-sized photos (bench/photos, made once): decode, detect, /tag beside a 320x320 JPEG, and the
    training input pipeline on their records."""
    import bench_photos

    root = ROOT / "bench" / "photos"
    folders = bench_photos.photo_set(root, 20, LABEL_MAP)
    config, _ = sample_config(work, "ssd_mobilenet_v2_fpnlite_320x320.config", "photos", 8, {"train": 4, "val": 4})
    results = {"decode": bench_photos.bench_decode(root, 320)}
    results["detect_1080p"] = bench_photos.bench_detect(model, root, work)
    results["tag"] = bench_photos.bench_tag(model, root, clients, seconds, pools=(1, 2, 3))
    results["train_input_1080p"] = bench_photos.bench_input(config, folders["1080p"], work)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--images", type=int, default=2000, help="images in the conversion benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--train-steps", type=int, default=100, help="timed training steps")
    parser.add_argument(
        "--only",
        choices=["convert", "train", "tflite", "serve", "limits", "faster_rcnn", "photos", "browse"],
        help="run one section",
    )
    parser.add_argument("--frcnn-steps", type=int, default=5, help="timed Faster R-CNN training steps (640 px)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the serve load test")
    parser.add_argument("--seconds", type=float, default=30, help="length of the serve load test")
    parser.add_argument("--photo-seconds", type=float, default=20, help="length of each real-photo /tag load test")
    parser.add_argument("--model-dir", type=Path, help="checkpoint to export for --only tflite (default: train's)")
    parser.add_argument("--invokes", type=int, default=100, help="timed TFLite invokes per variant and thread count")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = _machine()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with tempfile.TemporaryDirectory() as work:
        if args.only in (None, "convert"):
            results["convert"] = {**bench_convert(Path(work) / "c", args.images, args.repeats), "measured_at": stamp}
        if args.only in (None, "train"):
            (Path(work) / "t").mkdir()
            for name, value in bench_training(Path(work) / "t", args.train_steps, warmup=5).items():
                results[name] = {**value, "measured_at": stamp}
        if args.only in (None, "tflite"):
            model_dir = args.model_dir or _trained_model(Path(work))
            results["tflite"] = {**bench_tflite(model_dir, Path(work), args.invokes), "measured_at": stamp}
        if args.only in (None, "serve"):
            export_dir = _int8_export(Path(work), args.model_dir)
            serve = bench_serve(export_dir, Path(work), args.clients, args.seconds)
            results["serve"] = {**serve, "measured_at": stamp}
        if args.only in (None, "limits"):
            from bench_limits import bench_limits

            export_dir = _int8_export(Path(work), args.model_dir) if _has_model(args) else None
            model = export_dir / "model_int8.tflite" if export_dir else None
            results["serve_limits"] = {**bench_limits(model, Path(work), args.clients), "measured_at": stamp}
        if args.only in (None, "photos"):
            export_dir = _int8_export(Path(work), args.model_dir)
            photos = bench_real_photos(export_dir / "model_int8.tflite", Path(work), args.clients, args.photo_seconds)
            results["photos"] = {**photos, "measured_at": stamp}
        if args.only in (None, "browse"):
            from bench_browse import bench_browse

            model_dir = args.model_dir or _trained_model(Path(work))
            results["browse"] = {**bench_browse(model_dir, Path(work)), "measured_at": stamp}
        if args.only in (None, "faster_rcnn"):
            two_stage = bench_faster_rcnn(Path(work), args.frcnn_steps, min(args.clients, 4), args.seconds)
            results["faster_rcnn"] = {**two_stage, "measured_at": stamp}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
