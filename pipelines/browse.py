"""odlite browse: every validation image, its ground truth and detections, in the browser.

A table of mAP says how much a model fails, not why. This stage evaluates a model
(a checkpoint folder, an exported ``.tflite`` or export folder) once, as ``odlite
eval`` does, and reuses the ``detections.json`` that evaluation leaves in its report
folder, so the next start is instant. Two models can be put side by side on the same
images (a checkpoint and its int8 export, two sweep points).

The page is a small static app (``browse_page/``) over a JSON API served by FastAPI,
which odlite already ships for ``serve``: boxes are SVG drawn by the browser, so the
score slider and the filters redraw at once, and the errors at a threshold are
worked out here, in ``error_analysis``, which the tests check without a browser.

The page is the only web page meant to call this API, and its requests are same-origin:
a request from any other page is refused (``origins.OriginGate``), and so, when browse
listens on a loopback address, is a ``Host`` that is not a loopback name (another site's
name pointed at 127.0.0.1, which would otherwise read the validation images).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines import defaults
from pipelines.artifacts import (
    EXPORT_REPORT,
    METRICS_FILE,
    TFLITE_FILES,
    checkpoint_report_folder,
    checkpoint_step,
    export_report_folder,
    glob_inputs,
    resolve_config,
)
from pipelines.errors import OdliteError
from pipelines.reports.draw import PALETTE
from pipelines.reports.error_analysis import KINDS, analyse_image, count_errors
from pipelines.reports.report import DETECTIONS_FILE

PAGE = Path(__file__).with_name("browse_page")
REPORT_PICTURES = ("pr_curves.png", "confusion_matrix.png")
PREFERRED_VARIANTS = ("int8", "fp16", "fp32")  # the one the app ships first
THUMBNAIL_SIDES = (160, 320, 640)


@dataclass
class Source:
    """A model to browse and where its evaluation report lives."""

    name: str
    kind: str  # checkpoint, tflite or saved_model
    model: Path  # the checkpoint folder, the .tflite or the SavedModel folder
    config: Path
    report: Path
    checkpoint: str | None = None

    @property
    def model_file(self) -> Path:
        """The file whose age says whether a cached evaluation is of this model."""
        if self.kind == "checkpoint":
            return Path(f"{self.checkpoint}.index")
        return self.model / "saved_model.pb" if self.kind == "saved_model" else self.model


def find_source(path: Path, config: Path | None = None, checkpoint: str | None = None, say=print) -> Source:
    """A checkpoint folder (its ``checkpoint``, else best/, else the latest), a checkpoint prefix, a
    .tflite, or an export folder: its int8 model, else fp16, else fp32, else (Faster R-CNN) its SavedModel."""
    from pipelines.detectors import find_model
    from pipelines.training.best_checkpoint import chosen_checkpoint

    found = find_model(_shipped_first(Path(path)))
    if found.kind == "checkpoint":
        chosen = chosen_checkpoint(found.path, found.checkpoint or checkpoint, say)
        step = checkpoint_step(chosen)
        report = checkpoint_report_folder(found.path, step)
        config = resolve_config(config, found.path)
        return Source(f"{found.path.name} step {step}", found.kind, found.path, config, report, chosen)
    name = f"{found.path.parent.name}/{found.path.name}"
    config = resolve_config(config, found.path.parent)
    return Source(name, found.kind, found.path, config, export_report_folder(found.path))


def _shipped_first(path: Path) -> Path:
    """An export folder's model that the app ships first (``PREFERRED_VARIANTS``); any other path as it is."""

    if not path.is_dir() or (path / "checkpoint").exists() or not (path / EXPORT_REPORT).exists():
        return path
    models = [path / TFLITE_FILES[v] for v in PREFERRED_VARIANTS if (path / TFLITE_FILES[v]).exists()]
    if not models and not (path / "saved_model" / "saved_model.pb").exists():
        raise OdliteError.at(path, "this export holds neither a .tflite nor a saved_model/")
    return models[0] if models else path


@dataclass
class EvalImages:
    """The validation images, in the order the evaluation saw them."""

    config: Path
    images: list[dict]  # id, filename, width, height
    jpegs: list[bytes]

    def key(self) -> list[tuple]:
        return image_key(self.images)


def image_key(images: list[dict]) -> list[tuple]:
    """What says two evaluations saw the same images: each one's file name and size, in order."""
    return [(im["filename"], im["width"], im["height"]) for im in images]


def read_eval_images(config: Path) -> EvalImages:
    from pipelines.config.experiment import load_train_spec
    from pipelines.data.tfrecord import read_examples

    spec = load_train_spec(config)
    images, jpegs = [], []
    for example in read_examples(glob_inputs(spec.eval_paths, "eval_input_reader")):
        if spec.eval_examples and len(images) == spec.eval_examples:
            break
        image = {"id": len(images) + 1, "filename": example["image/filename"].decode()}
        image.update(width=int(example["image/width"]), height=int(example["image/height"]))
        images.append(image)
        jpegs.append(example["image/encoded"])
    return EvalImages(config, images, jpegs)


def _cached(source: Source, images: EvalImages) -> tuple[dict | None, str]:
    """The detections of an earlier evaluation, if they are of this model and these images; else why not."""
    path = source.report / DETECTIONS_FILE
    if not path.exists():
        return None, "no cached detections"
    if path.stat().st_mtime < source.model_file.stat().st_mtime:
        return None, "the cached detections are older than the model"
    try:
        cached = json.loads(path.read_text())
        key = image_key(cached["images"])
        missing = {"labels", "truth", "found"} - set(cached)
    except (ValueError, KeyError, TypeError) as error:
        return None, f"the cached detections are unreadable ({type(error).__name__}: {error})"
    if missing:
        return None, f"the cached detections lack {', '.join(sorted(missing))}"
    if key != images.key():
        return None, "the cached detections are of other validation images"
    return cached, ""


def evaluated(source: Source, images: EvalImages, say=print, progress=True) -> dict:
    """The source's detections on ``images``: from its report folder when current, else evaluated now."""
    from pipelines.evaluate import evaluate, evaluate_export, summary_line

    cached, why = _cached(source, images)
    if cached is not None:
        say(f"{source.name}: detections from {source.report / DETECTIONS_FILE}")
        return cached
    say(f"{source.name}: evaluating ({why}); the report goes to {source.report}")
    if source.kind == "checkpoint":
        metrics = evaluate(source.config, source.model, source.checkpoint, out=source.report, progress=progress)
    else:
        metrics = evaluate_export(source.model, source.config, out=source.report, progress=progress)
    say(summary_line(metrics))
    cached, why = _cached(source, images)
    if cached is None:
        raise OdliteError.at(source.report, f"the evaluation left no usable detections: {why}")
    return cached


@dataclass
class Browsed:
    """One model's part of the page: its name, report folder and detections by image id."""

    name: str
    report: Path
    metrics: dict
    found: dict[int, list[dict]]


class Browser:
    """What the page asks for: images, ground truth, each model's detections and their errors."""

    def __init__(self, images: EvalImages, labels: dict[int, str], truth: list[dict], models: list[Browsed]):
        self.images, self.labels, self.models = images, labels, models
        self.truth: dict[int, list[dict]] = {im["id"]: [] for im in images.images}
        for t in truth:
            self.truth[t["image_id"]].append(t)

    @classmethod
    def from_detections(cls, images: EvalImages, parts: list[tuple[str, Path, dict]]) -> Browser:
        """``parts``: (name, report folder, detections.json content) per model, on ``images``."""
        labels = {int(k): v for k, v in parts[0][2]["labels"].items()}
        models = []
        for name, report, content in parts:
            if {int(k): v for k, v in content["labels"].items()} != labels:
                raise OdliteError.at(report / DETECTIONS_FILE, f"{name} has other labels than {parts[0][0]}")
            found: dict[int, list[dict]] = {im["id"]: [] for im in images.images}
            for d in content["found"]:
                if d["label"] in labels:  # as in the COCO metrics: ids outside the label map are not scored
                    found[d["image_id"]].append(d)
            metrics_file = report / METRICS_FILE
            metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
            models.append(Browsed(name, report, metrics, found))
        return cls(images, labels, parts[0][2]["truth"], models)

    def summary(self, threshold: float) -> dict:
        return {
            "threshold": threshold,
            "kinds": list(KINDS),
            "labels": [
                {"id": k, "name": v, "colour": "#{:02x}{:02x}{:02x}".format(*PALETTE[k % len(PALETTE)])}
                for k, v in self.labels.items()
            ],
            "images": [
                {**im, "truth": [{"box": t["box"], "label": t["label"]} for t in self.truth[im["id"]]]}
                for im in self.images.images
            ],
            "models": [
                {
                    "name": m.name,
                    "report": str(m.report),
                    "metrics": {k: v for k, v in m.metrics.items() if isinstance(v, (int, float, str, dict))},
                    "pictures": [p for p in REPORT_PICTURES if (m.report / p).exists()],
                }
                for m in self.models
            ],
        }

    @functools.lru_cache(maxsize=24)  # noqa: B019 (one Browser per server; the slider has 20 stops)
    def analysis(self, threshold: float) -> dict:
        """Per model: each image's detections at ``threshold`` with their outcome, the outcome of
        each ground-truth box, the image's errors, and the errors per class."""
        return {"threshold": threshold, "models": [self._analyse(m, threshold) for m in self.models]}

    def _analyse(self, model: Browsed, threshold: float) -> dict:
        counts: dict[int, dict[str, int]] = {k: dict.fromkeys(KINDS, 0) for k in self.labels}
        images = []
        for image in self.images.images:
            truth, found = self.truth[image["id"]], model.found[image["id"]]
            result = analyse_image(truth, found, threshold)
            count_errors(truth, found, result, counts)
            shown = sorted(result.found, key=lambda j: -found[j]["score"])
            images.append(
                {
                    "found": [
                        {**found[j], "kind": result.found[j].kind, "iou": round(result.found[j].iou, 3)} for j in shown
                    ],
                    "truth": [{"kind": o.kind, "iou": round(o.iou, 3)} for o in result.truth],
                    "errors": [
                        [kind, (truth if side == "truth" else found)[i]["label"]] for kind, side, i in result.errors()
                    ],
                }
            )
        return {"counts": {self.labels[k]: v for k, v in counts.items()}, "images": images}

    @functools.lru_cache(maxsize=512)  # noqa: B019
    def picture(self, image_id: int, side: int | None) -> tuple[bytes, str]:
        """The image as stored (a JPEG) or, with ``side``, a JPEG no larger than ``side`` each way."""
        from PIL import Image

        data = self.images.jpegs[image_id - 1]
        if side is None:
            return data, "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (side, side))  # libjpeg decodes at 1/2 .. 1/8 scale: fast for big photos
        image = image.convert("RGB")
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue(), "image/jpeg"


def prepare(
    paths: list[Path], config: Path | None = None, checkpoint: str | None = None, say=print, progress=True
) -> Browser:
    """Resolve each model, read the validation images once, evaluate what has no current detections."""
    if not 1 <= len(paths) <= 2:
        raise OdliteError("browse takes one model, or two to compare side by side")
    if checkpoint and len(paths) == 2:
        raise OdliteError("--checkpoint names one model's checkpoint; to compare two, give each as DIR/ckpt-N")
    sources = [find_source(p, config, checkpoint, say) for p in paths]
    if len(sources) == 2 and sources[0].name == sources[1].name:
        sources[0].name, sources[1].name = f"{sources[0].name} (1)", f"{sources[1].name} (2)"
    images = read_eval_images(sources[0].config)
    for source in sources[1:]:
        if source.config != images.config and read_eval_images(source.config).key() != images.key():
            raise OdliteError.at(
                source.config, f"its validation images are not those of {sources[0].config}: nothing to compare"
            )
    parts = [(s.name, s.report, evaluated(s, images, say, progress)) for s in sources]
    return Browser.from_detections(images, parts)


def create_app(browser: Browser, threshold: float = defaults.MIN_SCORE, loopback_only: bool = True):
    """The page and its API; ``loopback_only``: answer only requests addressed to a loopback name."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles

    from pipelines.origins import OriginGate

    app = FastAPI(title="odlite browse", docs_url=None, redoc_url=None)
    app.add_middleware(OriginGate, same_origin=True, loopback_only=loopback_only, hint=" (only the page itself is)")
    app.mount("/page", StaticFiles(directory=PAGE), name="page")
    count = len(browser.images.images)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(PAGE / "index.html")

    @app.get("/api/summary")
    def summary() -> dict:
        return browser.summary(threshold)

    @app.get("/api/analysis")
    def analysis(threshold: float = Query(..., ge=0.0, le=1.0)) -> dict:  # noqa: B008
        return browser.analysis(round(threshold, 3))

    @app.get("/api/image/{image_id}")
    def image(image_id: int, side: int | None = None):
        if not 1 <= image_id <= count:
            raise HTTPException(404, f"no image {image_id}: there are {count}")
        if side is not None and side not in THUMBNAIL_SIDES:
            raise HTTPException(400, f"side is one of {', '.join(map(str, THUMBNAIL_SIDES))}")
        data, media_type = browser.picture(image_id, side)
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/report/{model}/{name}")
    def report_picture(model: int, name: str):
        if not 0 <= model < len(browser.models) or name not in REPORT_PICTURES:
            raise HTTPException(404, "no such report picture")
        path = browser.models[model].report / name
        if not path.exists():
            raise HTTPException(404, f"{path} is missing")
        return FileResponse(path)

    return app


def browse(
    browser: Browser, host: str = defaults.HOST, port: int = defaults.BROWSE_PORT, threshold: float = defaults.MIN_SCORE
) -> None:
    import uvicorn

    from pipelines.origins import is_loopback

    app = create_app(browser, threshold, loopback_only=is_loopback(host))
    uvicorn.run(app, host=host, port=port, log_level="warning")


@contextlib.contextmanager
def served_in_thread(browser: Browser, wait: float = 30):
    """The page on a free loopback port, served from a thread of this process; its URL. For the tests and
    the benchmark, which drive the page while they hold the analysed models."""
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(browser), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + wait
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OdliteError(f"the browse page did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
