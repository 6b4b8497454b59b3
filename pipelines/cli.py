"""The ``odlite`` command: one verb per stage, each a thin call into its module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from pipelines import __version__
from pipelines.errors import OdliteError, Problem
from pipelines.pipeline_config import add_config_verb

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
    from pipelines.convert import convert

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
    )
    summary = args.out / "summary.json"
    _print_problems("warnings", result.warnings, str(summary))
    _print_problems("skipped", result.skipped, str(summary))
    print(f"\n{result.format} annotations -> {args.out}")
    print(_class_table(result.splits, list(result.label_map.values())))
    if result.reencoded:
        print(f"{result.reencoded} image(s) re-encoded as upright RGB JPEG")
    print(f"label map: {args.out / 'label_map.pbtxt'}  summary: {summary}")
    return 0


def cmd_inspect(args) -> int:
    from pipelines.inspect_data import inspect_records

    result = inspect_records(args.data_dir, samples=args.samples, out=args.out, label_map_path=args.label_map)
    print(_class_table(result.splits, list(result.label_map.values())))
    anomalies = [a for s in result.splits.values() for a in s.anomalies]
    for anomaly in anomalies[:MAX_LISTED]:
        print(f"  anomaly: {anomaly}", file=sys.stderr)
    if result.pictures:
        print(f"{len(result.pictures)} sample picture(s) in {result.pictures[0].parent}")
    return 1 if anomalies else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odlite", description="Train a mobile object detector and ship it to Android."
    )
    parser.add_argument("--version", action="version", version=f"odlite {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_convert)

    p = verbs.add_parser("inspect", help="counts per class and sample pictures from TFRecords")
    p.add_argument("data_dir", type=Path, help="folder with TFRecords (and label_map.pbtxt)")
    p.add_argument("--samples", type=int, default=4, help="pictures to draw per split")
    p.add_argument("--out", type=Path, help="where to write the pictures (default: DATA_DIR/inspect)")
    p.add_argument("--label-map", type=Path, help="label map (default: DATA_DIR/label_map.pbtxt)")
    p.set_defaults(run=cmd_inspect)

    add_config_verb(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
