"""The tag service: an exported .tflite or SavedModel behind ``POST /tag`` (FastAPI, served by uvicorn).

LiteRT interpreters are not thread-safe, so the app keeps a pool of them, each with its
own interpreter (one thread each by default: two single-threaded interpreters on two
cores answered as many requests as any other layout measured, processes included), and
a request borrows one for the length of its inference; FastAPI runs
the (synchronous) handler in its thread pool, so up to ``pool`` requests infer at once and
the rest wait for a free interpreter. A SavedModel (the SSD's, or Faster R-CNN's: the
server-side detector) is loaded once and shared: TensorFlow runs one graph from many
threads, and the pool then only caps how many requests infer at once. A bad request gets a 4xx with the reason: no file
(422, from FastAPI's validation), not an image (415), a corrupt or empty one (400), a
body over the limit (413), an image past the pixel budget (413), an unknown class (400),
a request from a web page whose origin is not allowed (403, see ``origins``).

Nothing a client sends makes the server hold more than it allows. A body is counted as it
streams (Starlette's ``RequestBodyLimitMiddleware``: a chunked upload declares no length)
and reading stops at the limit, so the multipart parser's spool file never grows past it.
An image's size is read from its header and checked against the pixel budget before it is
decoded. And at most ``decoders`` requests at once read their upload and decode it (a
picture still large after decoding keeps its slot through its inference), so N concurrent
uploads cost ``decoders`` decodes of memory, not N.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from pipelines import defaults
from pipelines.data.images import DEFAULT_MAX_PIXELS, ImageProblem, ImageTooLarge, Picture, open_image
from pipelines.detect import Model, load_model
from pipelines.detectors import find_model
from pipelines.errors import OdliteError
from pipelines.origins import OriginGate

DEFAULT_MAX_UPLOAD = round(defaults.MAX_UPLOAD_MB * 2**20)
MULTIPART_FRAMING = 64 * 1024  # a body may exceed its image by the multipart headers and boundaries
STARLETTE_TOO_LARGE = "Content Too Large"  # the detail of RequestBodyLimitMiddleware's 413
# A picture no larger than this waits for an interpreter without holding a decode slot: what a photo is
# brought down to for a 320 or 640 px model (a 4000x3000 one to 500x375 or 1000x750, 0.6 or 2.3 MB).
# Larger ones (a panorama, a model of unknown input size) keep their slot until their inference ends.
SMALL_PICTURE = 16 * 2**20


class ModelPool:
    """``size`` copies of the model, each with its own interpreter; ``borrow`` blocks until one is free."""

    def __init__(self, path: Path, size: int, threads: int = defaults.INTERPRETER_THREADS):
        found = find_model(path)
        if found.kind == "checkpoint":
            raise OdliteError.at(path, "serve takes an exported .tflite or SavedModel (a folder from odlite export)")
        first = load_model(found.path, threads=threads)
        if first.detector.shareable:
            first(np.zeros((64, 64, 3), np.uint8))  # the graph's first run optimises it: seconds, not per request
        self.size = max(1, size)
        self.models: queue.Queue[Model] = queue.Queue()
        self.models.put(first)
        for _ in range(self.size - 1):
            self.models.put(first if first.detector.shareable else load_model(found.path, threads=threads))
        self.path, self.labels = first.path, first.labels
        self.read = first.read  # decoding needs no model of the pool: it runs before borrowing one

    @contextmanager
    def borrow(self):
        model = self.models.get()
        try:
            yield model
        finally:
            self.models.put(model)


def _why_image_fails(problem: ImageProblem) -> int:
    if isinstance(problem, ImageTooLarge):
        return 413
    return 415 if str(problem).startswith("not an image") else 400


def create_app(
    model_path: str | Path,
    pool_size: int = 2,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    threads: int = defaults.INTERPRETER_THREADS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decoders: int | None = None,
    allow_origins: list[str] | tuple[str, ...] = (),
) -> FastAPI:
    """The app. ``decoders``: requests reading and decoding an image at once (default: ``pool_size``);
    ``allow_origins``: the web pages (``scheme://host[:port]``) allowed to call it, none by default."""
    pool = ModelPool(Path(model_path), pool_size, threads)
    body_limit = max_upload + MULTIPART_FRAMING
    too_large = f"request body over the {max_upload} byte limit (--max-upload-mb)"
    image_too_large = f"image over the {max_upload} byte limit (--max-upload-mb)"

    async def explain_413(request: Request, error: HTTPException) -> JSONResponse:
        detail = too_large if error.detail == STARLETTE_TOO_LARGE else error.detail
        return JSONResponse({"detail": detail}, status_code=413)

    app = FastAPI(
        title="odlite tag service",
        description=f"Object detection with `{pool.path.name}`; labels: {', '.join(pool.labels)}.",
        version="1",
        exception_handlers={413: explain_413},
    )
    # Each middleware added wraps the ones before it: the origin is checked first, then (for the pages
    # allowed) CORS answers, then a declared length is checked, then the body is counted as it streams.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=body_limit)

    @app.middleware("http")
    async def refuse_declared_large_bodies(request: Request, call_next):
        """Refused before a byte is read, in the same JSON (Starlette's would answer in plain text)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > body_limit:
            return JSONResponse({"detail": too_large}, status_code=413)
        return await call_next(request)

    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins), allow_methods=["GET", "POST"])
    app.add_middleware(OriginGate, allowed=allow_origins, hint=" (odlite serve --allow-origin)")
    slots = threading.BoundedSemaphore(max(1, decoders or pool_size))

    def refuse(file: UploadFile, problem: ImageProblem) -> HTTPException:
        return HTTPException(_why_image_fails(problem), f"{file.filename or 'upload'}: {problem}")

    def check_header(file: UploadFile) -> None:
        """Not an image, or past the pixel budget: answered from the first bytes, without waiting for a slot."""
        if file.size:  # an empty upload is read() as one, to say so
            try:
                open_image(file.file, max_pixels)
            except ImageProblem as problem:
                raise refuse(file, problem) from None
            file.file.seek(0)

    def read(file: UploadFile) -> Picture:
        data = file.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, image_too_large)
        try:
            return pool.read(data, max_pixels)
        except ImageProblem as problem:
            raise refuse(file, problem) from None

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": pool.path.name, "interpreters": pool.size}

    @app.get("/labels")
    def labels() -> dict:
        return {"labels": pool.labels}

    @app.post("/tag")
    def tag(
        file: UploadFile = File(..., description="the image (JPEG, PNG, ...)"),  # noqa: B008
        min_score: float = Query(defaults.MIN_SCORE, ge=0.0, le=1.0, description="drop tags scoring less"),
        max_boxes: int = Query(defaults.MAX_BOXES, ge=1, le=1000, description="at most this many tags"),
        classes: str | None = Query(None, description="comma-separated labels to keep, e.g. caries"),
    ) -> dict:
        wanted = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
        unknown = sorted(set(wanted or []) - set(pool.labels))
        if unknown:
            raise HTTPException(400, f"unknown class(es) {', '.join(unknown)}; known: {', '.join(pool.labels)}")
        if file.size is not None and file.size > max_upload:  # known once parsed: refused without a slot
            raise HTTPException(413, image_too_large)
        check_header(file)
        start = time.perf_counter()
        slots.acquire()  # the upload's bytes and its decode are in memory only while its request holds a slot
        held = True
        try:
            image = read(file)
            if image.rgb.nbytes <= SMALL_PICTURE:  # brought to the model's scale: it waits without a slot
                slots.release()
                held = False
            with pool.borrow() as model:
                found = model(image)
        finally:
            if held:
                slots.release()
        found = [f for f in found if f.score >= min_score and (not wanted or f.label in wanted)][:max_boxes]
        tags = [
            {"label": f.label, "score": round(f.score, 4),
             "box": {"xmin": f.xmin, "ymin": f.ymin, "xmax": f.xmax, "ymax": f.ymax}}
            for f in found
        ]  # fmt: skip
        latency = round((time.perf_counter() - start) * 1000, 2)
        return {"tags": tags, "model": pool.path.name, "latency_ms": latency}

    return app


SETTINGS_VARIABLE = "ODLITE_SERVE"
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_buffers_to_the_system() -> None:
    """Have glibc map every allocation of 1 MB or more on its own, and unmap it once freed.

    Otherwise, once a decode's buffers (Pillow's 16 MB blocks) are freed, glibc raises its mmap threshold
    to their size and serves the next ones from per-thread arenas, which keep their memory: each of the
    server's threads came to hold a decode's worth, and 16 concurrent 50 MP uploads, decoded two at a
    time, peaked at 4.1 GB instead of 2.3 (make bench, --only limits). Elsewhere (macOS, musl) a no-op."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 2**20)


def app_from_environment() -> FastAPI:
    """The app each uvicorn worker process builds, from the settings ``serve`` left in the environment."""
    return_large_buffers_to_the_system()
    return create_app(**json.loads(os.environ[SETTINGS_VARIABLE]))


def serve(model_path, host: str = defaults.HOST, port: int = defaults.SERVE_PORT, workers: int = 1, **settings):
    """Serve until stopped; ``settings`` are ``create_app``'s. ``workers`` > 1 runs that many processes
    (uvicorn's), each with its own pool and its own ``decoders`` slots."""
    import uvicorn

    if workers > 1:
        os.environ[SETTINGS_VARIABLE] = json.dumps({"model_path": str(model_path), **settings})
        uvicorn.run("pipelines.serve:app_from_environment", factory=True, workers=workers, host=host, port=port)
        return
    return_large_buffers_to_the_system()
    uvicorn.run(create_app(model_path, **settings), host=host, port=port, log_level="info")
