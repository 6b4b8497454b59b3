"""The ``odlite`` command: one verb per stage, each a thin call into its module (arguments in arguments.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from pipelines import arguments
from pipelines.artifacts import BEST_DIR
from pipelines.console import quiet_tensorflow
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
    from pipelines.data.inspect_data import draw_augmented, inspect_records

    if args.augment:
        if not args.config:
            raise OdliteError("--augment needs --config: the pipeline.config whose data_augmentation_options to draw")
        pictures = draw_augmented(args.config, args.data_dir, args.augment, args.samples, args.out)
        print(f"{len(pictures)} augmented picture(s) in {pictures[0].parent}")
        return 0

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
        best = result.model_dir / BEST_DIR
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
    print(tabulate(report_table(result.record), headers=REPORT_HEADERS, tablefmt="github"))
    print(f"exported step {result.step} -> {result.out}  (report: {result.out / 'report.md'})")
    failed = [v for v, e in result.record.variants.items() if not e.get("mediapipe", {}).get("passed", True)]
    for variant in failed:
        for mismatch in result.record.variants[variant]["mediapipe"]["mismatches"]:
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


COMMANDS = {
    "convert": cmd_convert,
    "inspect": cmd_inspect,
    "config": cmd_config,
    "train": cmd_train,
    "eval": cmd_eval,
    "export": cmd_export,
    "detect": cmd_detect,
    "serve": cmd_serve,
    "browse": cmd_browse,
    "sweep": cmd_sweep,
    "package": cmd_package,
}


def build_parser() -> argparse.ArgumentParser:
    return arguments.build_parser(COMMANDS)


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
