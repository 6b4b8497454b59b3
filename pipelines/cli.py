"""The ``odlite`` command: one verb per stage, each a thin call into its module."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from tabulate import tabulate

from pipelines import __version__
from pipelines.config.pipeline_config import ALIASES
from pipelines.console import quiet_tensorflow
from pipelines.data.images import DEFAULT_MAX_PIXELS
from pipelines.errors import OdliteError, Problem

MAX_LISTED = 20


def _print_problems(title: str, problems: list[Problem], where: str) -> None:
    if not problems:
        return
    print(f"\n{title} ({len(problems)}):", file=sys.stderr)
    for problem in problems[:MAX_LISTED]:
        print(f"  {problem}", file=sys.stderr)
    if len(problems) > MAX_LISTED:
        print(f"  ... and {len(problems) - MAX_LISTED} more, all listed in {where}", file=sys.stderr)


def _class_table(splits: dict, labels: list[str]) -> str:
    rows = []
    for name, stats in splits.items():
        rows.append([name, stats.images, stats.images_without_boxes] + [stats.boxes.get(x, 0) for x in labels])
    extra = sorted({label for s in splits.values() for label in s.boxes} - set(labels))
    for label in extra:  # labels missing from the label map, found by inspect
        for row, stats in zip(rows, splits.values()):
            row.append(stats.boxes.get(label, 0))
    return tabulate(rows, headers=["split", "images", "no boxes", *labels, *extra], tablefmt="github")


def cmd_convert(args) -> int:
    from pipelines.data.convert import convert

    result = convert(
        args.src,
        args.out,
        label_map_path=args.label_map,
        images=args.images,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_shards=args.num_shards,
        skip_invalid=args.skip_invalid,
        overwrite=args.overwrite,
        workers=args.workers,
        label_attribute=args.label_attribute,
        progress=not args.quiet,
        max_pixels=args.max_pixels,
    )
    summary = args.out / "summary.json"
    _print_problems("warnings", result.warnings, str(summary))
    _print_problems("skipped", result.skipped, str(summary))
    print(f"\n{result.format} annotations -> {args.out}")
    print(_class_table(result.splits, list(result.label_map.values())))
    if result.reencoded:
        print(f"{result.reencoded} image(s) re-encoded as upright RGB JPEG")
    if result.clipped_boxes:
        print(f"{result.clipped_boxes} box(es) overhanging their image clipped to it (warnings above)")
    print(f"label map: {args.out / 'label_map.pbtxt'}  summary: {summary}")
    return 0


def cmd_config(args) -> int:
    from pipelines.config.checks import show
    from pipelines.config.pipeline_config import PLACEHOLDER, load_pipeline_config, patch_config

    changes = patch_config(args.base, args.out, args.assignments, overwrite=args.overwrite)
    for path, old, new in changes:
        print(f"{path}: {show(old)} -> {show(new)}")
    unresolved = load_pipeline_config(args.out).unresolved_paths()
    for path in unresolved:
        print(f"note: {path} still holds {PLACEHOLDER}; training needs it set", flush=True)
    print(f"wrote {args.out}")
    return 0


def cmd_inspect(args) -> int:
    from pipelines.data.inspect_data import inspect_records

    result = inspect_records(args.data_dir, args.samples, args.out, args.label_map, args.max_pixels)
    print(_class_table(result.splits, list(result.label_map.values())))
    anomalies = [a for s in result.splits.values() for a in s.anomalies]
    for anomaly in anomalies[:MAX_LISTED]:
        print(f"  anomaly: {anomaly}", file=sys.stderr)
    if result.pictures:
        print(f"{len(result.pictures)} sample picture(s) in {result.pictures[0].parent}")
    return 1 if anomalies else 0


def cmd_train(args) -> int:
    from pipelines.train import train

    result = train(
        args.config,
        args.model_dir,
        num_steps=args.num_steps,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        summary_every=args.summary_every,
        steps_per_loop=args.steps_per_loop,
        eval_every=args.eval_every,
        best_metric=args.best_metric,
        early_stop_patience=args.early_stop_patience,
        from_scratch=args.from_scratch,
        mixed_precision=args.mixed_precision,
        cpu_replicas=args.cpu_replicas,
        seed=args.seed,
        progress=not args.quiet,
    )
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    print(f"step {result.step}: {losses}")
    print(f"checkpoint: {result.checkpoint}")
    if result.best_step is not None:
        best = result.model_dir / "best"
        print(f"best: step {result.best_step}, {args.best_metric} {result.best_value:.3f} ({best}, with metrics.json)")
    if result.interrupted:
        print("interrupted: the checkpoint above holds the last step; run the same command to resume", file=sys.stderr)
        return 130
    return 0


def cmd_eval(args) -> int:
    from pipelines.evaluate import evaluate, evaluate_continuously, evaluate_export, summary_line

    options = dict(out=args.out, min_score=args.min_score, samples=args.samples, progress=not args.quiet)
    options.update(max_pixels=args.max_pixels)
    if args.tflite:
        metrics = evaluate_export(args.tflite, args.config, **options)
    elif args.model_dir is None:
        raise OdliteError("give --model-dir (a checkpoint) or --tflite (an exported model)")
    elif args.watch:
        options.pop("out")
        for metrics in evaluate_continuously(args.config, args.model_dir, timeout=args.timeout, **options):
            print(summary_line(metrics), flush=True)
        return 0
    else:
        metrics = evaluate(args.config, args.model_dir, checkpoint=args.checkpoint, **options)
    rows = [
        [name, f"{values['AP']:.3f}", f"{values['AP50']:.3f}", values["ground_truth"]]
        for name, values in metrics["per_class"].items()
    ]
    print(tabulate(rows, headers=["class", "AP", "AP50", "boxes"], tablefmt="github"))
    print(summary_line(metrics))
    for reason in metrics.get("not_drawn", []):
        print(f"  sample picture not drawn: {reason}", file=sys.stderr)
    print(f"report: {metrics['out']}/report.md")
    return 0


def cmd_export(args) -> int:
    from pipelines.export.exporter import export
    from pipelines.export.report import REPORT_HEADERS, report_table

    def progress(message):
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    result = export(
        args.config,
        args.model_dir,
        args.out,
        checkpoint=args.checkpoint,
        calibration_images=args.calibration_images,
        variants=tuple(args.variants.split(",")) if args.variants else None,
        tools_python=args.mediapipe_python,
        overwrite=args.overwrite,
        progress=progress,
        verbose=args.verbose,
    )
    print(tabulate(report_table(result.report), headers=REPORT_HEADERS, tablefmt="github"))
    print(f"exported step {result.step} -> {result.out}  (report: {result.out / 'report.md'})")
    failed = [v for v, e in result.report["variants"].items() if not e.get("mediapipe", {}).get("passed", True)]
    for variant in failed:
        for mismatch in result.report["variants"][variant]["mediapipe"]["mismatches"]:
            print(f"  MediaPipe check, {variant}: {mismatch}", file=sys.stderr)
    return 1 if failed else 0


def cmd_package(args) -> int:
    from pipelines.export.package import package

    print(f"package: {package(args.export_dir, args.out)}")
    return 0


def cmd_detect(args) -> int:
    from pipelines.detect import detect

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    result = detect(
        args.model, args.images, args.out, args.min_score, args.max_boxes, classes, not args.quiet, args.checkpoint,
        args.max_pixels,
    )  # fmt: skip
    rows = [
        [Path(entry["image"]).name, len(entry["detections"]),
         ", ".join(f"{d['label']} {d['score']:.2f}" for d in entry["detections"][:4])]
        for entry in result.images[:MAX_LISTED]
    ]  # fmt: skip
    print(tabulate(rows, headers=["image", "boxes", "strongest"], tablefmt="github"))
    if len(result.images) > MAX_LISTED:
        print(f"... and {len(result.images) - MAX_LISTED} more")
    _print_problems("skipped", result.skipped, str(result.out / "detections.json"))
    print(f"{len(result.images)} image(s) -> {result.out} (pictures and detections.json)")
    return 0 if result.images else 1


def cmd_serve(args) -> int:
    from pipelines.artifacts import latest_export
    from pipelines.origins import normalised_origin
    from pipelines.serve import serve

    model = args.model or latest_export()
    origins = [normalised_origin(o) for o in args.allow_origin]
    print(f"serving {model} on http://{args.host}:{args.port} (docs: /docs)", file=sys.stderr, flush=True)
    serve(model, args.host, args.port, args.workers, pool_size=args.interpreters, threads=args.threads,
          max_upload=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels, decoders=args.decoders,
          allow_origins=origins)  # fmt: skip
    return 0


def cmd_browse(args) -> int:
    from pipelines.browse import browse, prepare

    def say(message):
        print(message, file=sys.stderr, flush=True)

    if not 0.0 <= args.min_score <= 1.0:
        raise OdliteError(f"--min-score {args.min_score} is not a score: give one from 0 to 1")
    browser = prepare(args.models, args.config, args.checkpoint, say, progress=not args.quiet)
    images = len(browser.images.images)
    say(f"browse {images} validation images on http://{args.host}:{args.port} (Ctrl+C to stop)")
    browse(browser, args.host, args.port, args.min_score)
    return 0


def cmd_sweep(args) -> int:
    from pipelines.sweep import sweep

    result = sweep(
        args.config,
        args.grid,
        args.out,
        seed=args.seed,
        progress=not args.quiet,
        eval_every=args.eval_every,
        early_stop_patience=args.early_stop_patience,
    )
    if result.interrupted:
        print("interrupted: run the same command to resume", file=sys.stderr)
        return 130
    print((result.out / "results.md").read_text() if result.rows else "no results")
    print(f"results: {result.out / 'results.csv'}, {result.out / 'results.md'}, {result.out / 'results.png'}")
    return 0


def _max_pixels_option(parser: argparse.ArgumentParser, what: str) -> None:
    def megapixels(text: str) -> int:
        if not float(text) > 0:
            raise argparse.ArgumentTypeError(f"{text} is not a positive number of megapixels")
        return round(float(text) * 1e6)

    explained = f"refuse {what} larger than this, from its header (default {DEFAULT_MAX_PIXELS / 1e6:g})"
    parser.add_argument(
        "--max-megapixels", type=megapixels, default=DEFAULT_MAX_PIXELS, dest="max_pixels", metavar="MP", help=explained
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odlite", description="Train a mobile object detector and ship it to Android."
    )
    parser.add_argument("--version", action="version", version=f"odlite {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's own logs and warnings too")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser = functools.partial(verbs.add_parser, parents=[common])

    p = verbs.add_parser("convert", help="annotations -> sharded TFRecords + label_map.pbtxt + summary.json")
    p.add_argument("src", type=Path, help="dataset folder, or one COCO / VIA JSON or VOC XML file")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; see --overwrite)")
    p.add_argument("--label-map", type=Path, help="label_map.pbtxt to use (default: derived from the labels)")
    p.add_argument("--images", type=Path, help="folder to look for images in, when not beside the annotations")
    p.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of images for val when the dataset has no split"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split and record order")
    p.add_argument("--num-shards", type=int, help=f"shards per split (default: one per {1000} images)")
    p.add_argument("--skip-invalid", action="store_true", help="skip invalid files, convert the rest, list them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--label-attribute", help="VIA region attribute that holds the label (default: 'label')")
    p.add_argument("--workers", type=int, help="image decoding threads (default: one per core)")
    _max_pixels_option(p, "an image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_convert)

    p = verbs.add_parser("inspect", help="counts per class and sample pictures from TFRecords")
    p.add_argument("data_dir", type=Path, help="folder with TFRecords (and label_map.pbtxt)")
    p.add_argument("--samples", type=int, default=4, help="pictures to draw per split")
    p.add_argument("--out", type=Path, help="where to write the pictures (default: DATA_DIR/inspect)")
    p.add_argument("--label-map", type=Path, help="label map (default: DATA_DIR/label_map.pbtxt)")
    _max_pixels_option(p, "to draw an image")
    p.set_defaults(run=cmd_inspect)

    aliases = "\n".join(f"  {name:<22} {', '.join(paths)}" for name, paths in ALIASES.items())
    p = verbs.add_parser(
        "config",
        help="check a pipeline.config and write a copy with settings changed",
        description="Check BASE against what odlite honours and write it to --out with each --set applied.",
        epilog=f"NAME is a dotted path (train_config.batch_size) or one of these aliases:\n{aliases}\n"
        f"num_steps also moves the cosine schedule's total_steps when the config has one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base", type=Path, help="pipeline.config to start from")
    p.add_argument("--out", type=Path, required=True, help="where to write the result")
    p.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a setting (repeatable); lists as 1.0,2.0 or [1.0, 2.0]",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    p.set_defaults(run=cmd_config)

    p = verbs.add_parser("train", help="train from a pipeline.config; resumes from the latest checkpoint")
    p.add_argument("--config", type=Path, required=True, help="pipeline.config")
    p.add_argument("--model-dir", type=Path, required=True, help="checkpoints, TensorBoard logs, resolved config")
    p.add_argument("--num-steps", type=int, help="train to this step (default: train_config.num_steps)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--keep-checkpoints", type=int, default=5, help="checkpoints kept (besides best/)")
    p.add_argument("--steps-per-loop", type=int, help="steps per tf.function call (default: 50 on a GPU, 1 on the CPU)")
    p.add_argument("--summary-every", type=int, help="steps between loss readings (default: 10 or steps-per-loop)")
    p.add_argument(
        "--eval-every", type=int, default=0, help="evaluate every N-th step's checkpoint; keep the best in DIR/best"
    )
    p.add_argument("--best-metric", default="AP", help="what best means: AP (mAP@0.5:0.95), AP50, ... or AP50/<class>")
    p.add_argument("--early-stop-patience", type=int, default=0, help="stop after K evaluations without improvement")
    p.add_argument("--from-scratch", action="store_true", help="train from scratch if fine_tune_checkpoint is missing")
    p.add_argument("--mixed-precision", action="store_true", help="train in float16 on the GPU")
    p.add_argument("--cpu-replicas", type=int, default=0, help="mirror over N logical CPU devices (for testing)")
    p.add_argument("--seed", type=int, help="seed for initialisation and input order (repeatable runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("eval", help="COCO metrics of a checkpoint or a .tflite on the validation TFRecords")
    p.add_argument("--config", type=Path, help="pipeline.config (default: the one in MODEL_DIR or beside the .tflite)")
    p.add_argument("--model-dir", type=Path, help="checkpoint folder")
    p.add_argument("--tflite", type=Path, help="evaluate this exported .tflite instead of a checkpoint")
    p.add_argument("--checkpoint", help="checkpoint prefix (default: the latest in MODEL_DIR)")
    p.add_argument("--out", type=Path, help="report folder (default: MODEL_DIR/eval/step-N or EXPORT/eval/NAME)")
    p.add_argument("--min-score", type=float, default=0.5, help="score threshold for pictures and confusion matrix")
    p.add_argument("--samples", type=int, default=6, help="validation pictures to draw")
    p.add_argument("--watch", action="store_true", help="evaluate each new checkpoint while training runs")
    p.add_argument("--timeout", type=float, default=3600, help="with --watch: stop after this long without one")
    _max_pixels_option(p, "to draw a sample image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_eval)

    p = verbs.add_parser("export", help="checkpoint -> SavedModel + TFLite fp32/fp16/int8 with metadata + report")
    p.add_argument("--config", type=Path, help="pipeline.config (default: MODEL_DIR/pipeline.config)")
    p.add_argument("--model-dir", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--out", type=Path, required=True, help="export folder, e.g. exported/tooth")
    p.add_argument("--checkpoint", help="checkpoint prefix (default: MODEL_DIR/best, else the latest)")
    p.add_argument("--variants", help="comma-separated TFLite models: fp32, fp16, int8 (default: all three; SSD only)")
    p.add_argument("--calibration-images", type=int, default=300, help="training images to calibrate int8 on")
    p.add_argument(
        "--mediapipe-python", type=Path, help="python of the MediaPipe tools venv (make tools): check each model"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(run=cmd_export)

    p = verbs.add_parser("detect", help="run a model on images: pictures with boxes and detections.json")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--model", type=Path, required=True, help=".tflite, SavedModel/export folder or checkpoints")
    p.add_argument("--out", type=Path, required=True, help="folder for the pictures and detections.json")
    p.add_argument("--min-score", type=float, default=0.5, help="drop detections scoring less")
    p.add_argument("--max-boxes", type=int, default=100, help="keep at most this many per image")
    p.add_argument("--classes", help="comma-separated labels to keep, e.g. caries")
    p.add_argument("--checkpoint", help="with a checkpoint folder: this checkpoint (default: best/, else the latest)")
    _max_pixels_option(p, "an image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_detect)

    p = verbs.add_parser("serve", help="HTTP tag service: POST /tag an image, get labels, scores and boxes")
    p.add_argument(
        "--model",
        type=Path,
        help="a .tflite or a SavedModel / export folder (default: the newest exported/*/model_int8.tflite)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--interpreters", type=int, default=2, help="requests inferring at once (LiteRT interpreters for a .tflite)"
    )
    p.add_argument("--threads", type=int, default=1, help="threads of each LiteRT interpreter")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own interpreters")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted image (413 past it)")
    _max_pixels_option(p, "an image (413)")
    p.add_argument("--decoders", type=int, help="uploads read and decoded at once (default: --interpreters)")
    allowed = "a web page's origin (scheme://host[:port]) allowed to call it (repeatable; default none: 403)"
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL", help=allowed)
    p.set_defaults(run=cmd_serve)

    p = verbs.add_parser(
        "browse", help="look through the validation images in a browser: truth, detections, errors by class"
    )
    p.add_argument(
        "models",
        nargs="+",
        type=Path,
        metavar="MODEL",
        help="a checkpoint folder (or DIR/ckpt-N), .tflite or export folder; two side by side",
    )
    p.add_argument("--config", type=Path, help="pipeline.config (default: the one beside each model)")
    p.add_argument("--checkpoint", help="with checkpoint folders: this checkpoint (default: best/, else the latest)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--min-score", type=float, default=0.5, help="the score slider's starting point")
    p.add_argument("--quiet", action="store_true", help="no progress bar when a model is evaluated")
    p.set_defaults(run=cmd_browse)

    p = verbs.add_parser("sweep", help="train and evaluate each point of a hyperparameter grid; rank them")
    p.add_argument("--config", type=Path, required=True, help="base pipeline.config")
    p.add_argument("--grid", type=Path, required=True, help="grid YAML (see configs/sweeps/)")
    p.add_argument("--out", type=Path, required=True, help="sweep folder; rerun to resume")
    p.add_argument("--seed", type=int, default=1, help="the same seed for every point, so points differ by settings")
    p.add_argument(
        "--eval-every", type=int, default=0, help="evaluate while training; rank each point by its best checkpoint"
    )
    p.add_argument("--early-stop-patience", type=int, default=0, help="stop a point after K evaluations not better")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=cmd_sweep)

    p = verbs.add_parser("package", help="exported/NAME -> exported/NAME.tar.gz with models, labels, ANDROID.md")
    p.add_argument("export_dir", type=Path, help="an export folder (odlite export --out)")
    p.add_argument("--out", type=Path, help="archive path (default: EXPORT_DIR.tar.gz)")
    p.set_defaults(run=cmd_package)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        return args.run(args)
    except OdliteError as exc:
        print(f"odlite {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"odlite {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
