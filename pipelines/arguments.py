"""The ``odlite`` command's arguments: one sub-parser per verb, with its options and their help.

``cli.py`` holds what each verb does with them (``cmd_<verb>``); this module only describes the
command line, so ``odlite --help`` and each verb's ``--help`` read from one place.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path

from pipelines import __version__, defaults
from pipelines.config.pipeline_config import ALIASES
from pipelines.data.images import DEFAULT_MAX_PIXELS


def _max_pixels_option(parser: argparse.ArgumentParser, what: str) -> None:
    def megapixels(text: str) -> int:
        if not float(text) > 0:
            raise argparse.ArgumentTypeError(f"{text} is not a positive number of megapixels")
        return round(float(text) * 1e6)

    explained = f"refuse {what} larger than this, from its header (default {DEFAULT_MAX_PIXELS / 1e6:g})"
    parser.add_argument(
        "--max-megapixels", type=megapixels, default=DEFAULT_MAX_PIXELS, dest="max_pixels", metavar="MP", help=explained
    )


def build_parser(commands: dict[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The parser of every verb; ``commands`` maps each verb to the function its ``args.run`` calls."""
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
        "--val-fraction",
        type=float,
        default=defaults.VAL_FRACTION,
        help="share of images for val when the dataset has no split",
    )
    p.add_argument("--seed", type=int, default=defaults.SPLIT_SEED, help="seed of the train/val split and record order")
    p.add_argument("--num-shards", type=int, help=f"shards per split (default: one per {1000} images)")
    p.add_argument("--skip-invalid", action="store_true", help="skip invalid files, convert the rest, list them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--label-attribute", help="VIA region attribute that holds the label (default: 'label')")
    p.add_argument("--workers", type=int, help="image decoding threads (default: one per core)")
    _max_pixels_option(p, "an image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=commands["convert"])

    p = verbs.add_parser("inspect", help="counts per class and sample pictures from TFRecords")
    p.add_argument("data_dir", type=Path, help="folder with TFRecords (and label_map.pbtxt)")
    p.add_argument("--samples", type=int, default=defaults.INSPECT_SAMPLES, help="pictures to draw per split")
    p.add_argument("--out", type=Path, help="where to write the pictures (default: DATA_DIR/inspect)")
    p.add_argument("--label-map", type=Path, help="label map (default: DATA_DIR/label_map.pbtxt)")
    _max_pixels_option(p, "to draw an image")
    p.add_argument(
        "--augment", type=int, metavar="N", help="draw N augmented versions of --samples training records instead"
    )
    p.add_argument("--config", type=Path, help="with --augment: the pipeline.config whose augmentations to apply")
    p.set_defaults(run=commands["inspect"])

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
    p.set_defaults(run=commands["config"])

    p = verbs.add_parser("train", help="train from a pipeline.config; resumes from the latest checkpoint")
    p.add_argument("--config", type=Path, required=True, help="pipeline.config")
    p.add_argument("--model-dir", type=Path, required=True, help="checkpoints, TensorBoard logs, resolved config")
    p.add_argument("--num-steps", type=int, help="train to this step (default: train_config.num_steps)")
    p.add_argument("--checkpoint-every", type=int, default=defaults.CHECKPOINT_EVERY, help="steps between checkpoints")
    p.add_argument(
        "--keep-checkpoints", type=int, default=defaults.KEEP_CHECKPOINTS, help="checkpoints kept (besides best/)"
    )
    p.add_argument("--steps-per-loop", type=int, help="steps per tf.function call (default: 50 on a GPU, 1 on the CPU)")
    p.add_argument("--summary-every", type=int, help="steps between loss readings (default: 10 or steps-per-loop)")
    p.add_argument(
        "--eval-every", type=int, default=0, help="evaluate every N-th step's checkpoint; keep the best in DIR/best"
    )
    p.add_argument(
        "--best-metric",
        default=defaults.BEST_METRIC,
        help="what best means: AP (mAP@0.5:0.95), AP50, ... or AP50/<class>",
    )
    p.add_argument("--early-stop-patience", type=int, default=0, help="stop after K evaluations without improvement")
    p.add_argument("--from-scratch", action="store_true", help="train from scratch if fine_tune_checkpoint is missing")
    p.add_argument("--mixed-precision", action="store_true", help="train in float16 on the GPU")
    p.add_argument("--cpu-replicas", type=int, default=0, help="mirror over N logical CPU devices (for testing)")
    p.add_argument("--seed", type=int, help="seed for initialisation and input order (repeatable runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=commands["train"])

    p = verbs.add_parser("eval", help="COCO metrics of a checkpoint or a .tflite on the validation TFRecords")
    p.add_argument("--config", type=Path, help="pipeline.config (default: the one in MODEL_DIR or beside the .tflite)")
    p.add_argument("--model-dir", type=Path, help="checkpoint folder")
    p.add_argument("--tflite", type=Path, help="evaluate this exported .tflite instead of a checkpoint")
    p.add_argument("--checkpoint", help="checkpoint prefix (default: the latest in MODEL_DIR)")
    p.add_argument("--out", type=Path, help="report folder (default: MODEL_DIR/eval/step-N or EXPORT/eval/NAME)")
    p.add_argument(
        "--min-score", type=float, default=defaults.MIN_SCORE, help="score threshold for pictures and confusion matrix"
    )
    p.add_argument("--samples", type=int, default=defaults.EVAL_SAMPLES, help="validation pictures to draw")
    p.add_argument("--watch", action="store_true", help="evaluate each new checkpoint while training runs")
    p.add_argument(
        "--timeout", type=float, default=defaults.WATCH_TIMEOUT_S, help="with --watch: stop after this long without one"
    )
    _max_pixels_option(p, "to draw a sample image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=commands["eval"])

    p = verbs.add_parser("export", help="checkpoint -> SavedModel + TFLite fp32/fp16/int8 with metadata + report")
    p.add_argument("--config", type=Path, help="pipeline.config (default: MODEL_DIR/pipeline.config)")
    p.add_argument("--model-dir", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--out", type=Path, required=True, help="export folder, e.g. exported/tooth")
    p.add_argument("--checkpoint", help="checkpoint prefix (default: MODEL_DIR/best, else the latest)")
    p.add_argument("--variants", help="comma-separated TFLite models: fp32, fp16, int8 (default: all three; SSD only)")
    p.add_argument(
        "--calibration-images",
        type=int,
        default=defaults.CALIBRATION_IMAGES,
        help="training images to calibrate int8 on",
    )
    p.add_argument(
        "--mediapipe-python", type=Path, help="python of the MediaPipe tools venv (make tools): check each model"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(run=commands["export"])

    p = verbs.add_parser("detect", help="run a model on images: pictures with boxes and detections.json")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--model", type=Path, required=True, help=".tflite, SavedModel/export folder or checkpoints")
    p.add_argument("--out", type=Path, required=True, help="folder for the pictures and detections.json")
    p.add_argument("--min-score", type=float, default=defaults.MIN_SCORE, help="drop detections scoring less")
    p.add_argument("--max-boxes", type=int, default=defaults.MAX_BOXES, help="keep at most this many per image")
    p.add_argument("--classes", help="comma-separated labels to keep, e.g. caries")
    p.add_argument("--checkpoint", help="with a checkpoint folder: this checkpoint (default: best/, else the latest)")
    _max_pixels_option(p, "an image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=commands["detect"])

    p = verbs.add_parser("serve", help="HTTP tag service: POST /tag an image, get labels, scores and boxes")
    p.add_argument(
        "--model",
        type=Path,
        help="a .tflite or a SavedModel / export folder (default: the newest exported/*/model_int8.tflite)",
    )
    p.add_argument("--host", default=defaults.HOST, help="address to listen on")
    p.add_argument("--port", type=int, default=defaults.SERVE_PORT)
    p.add_argument(
        "--interpreters",
        type=int,
        default=defaults.INTERPRETERS,
        help="requests inferring at once (LiteRT interpreters for a .tflite)",
    )
    p.add_argument(
        "--threads", type=int, default=defaults.INTERPRETER_THREADS, help="threads of each LiteRT interpreter"
    )
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own interpreters")
    p.add_argument(
        "--max-upload-mb", type=float, default=defaults.MAX_UPLOAD_MB, help="largest accepted image (413 past it)"
    )
    _max_pixels_option(p, "an image (413)")
    p.add_argument("--decoders", type=int, help="uploads read and decoded at once (default: --interpreters)")
    allowed = "a web page's origin (scheme://host[:port]) allowed to call it (repeatable; default none: 403)"
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL", help=allowed)
    p.set_defaults(run=commands["serve"])

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
    p.add_argument("--host", default=defaults.HOST, help="address to listen on")
    p.add_argument("--port", type=int, default=defaults.BROWSE_PORT)
    p.add_argument("--min-score", type=float, default=defaults.MIN_SCORE, help="the score slider's starting point")
    p.add_argument("--quiet", action="store_true", help="no progress bar when a model is evaluated")
    p.set_defaults(run=commands["browse"])

    p = verbs.add_parser("sweep", help="train and evaluate each point of a hyperparameter grid; rank them")
    p.add_argument("--config", type=Path, required=True, help="base pipeline.config")
    p.add_argument("--grid", type=Path, required=True, help="grid YAML (see configs/sweeps/)")
    p.add_argument("--out", type=Path, required=True, help="sweep folder; rerun to resume")
    p.add_argument(
        "--seed",
        type=int,
        default=defaults.SWEEP_SEED,
        help="the same seed for every point, so points differ by settings",
    )
    p.add_argument(
        "--eval-every", type=int, default=0, help="evaluate while training; rank each point by its best checkpoint"
    )
    p.add_argument("--early-stop-patience", type=int, default=0, help="stop a point after K evaluations not better")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=commands["sweep"])

    p = verbs.add_parser("package", help="exported/NAME -> exported/NAME.tar.gz with models, labels, ANDROID.md")
    p.add_argument("export_dir", type=Path, help="an export folder (odlite export --out)")
    p.add_argument("--out", type=Path, help="archive path (default: EXPORT_DIR.tar.gz)")
    p.set_defaults(run=commands["package"])
    return parser
