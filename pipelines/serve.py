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
body over the limit (413), an unknown class (400).
"""

from __future__ import annotations

import json
import os
import queue
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from pipelines.detect import Model, load_model, saved_model_folder
from pipelines.errors import OdliteError
from pipelines.images import ImageProblem

DEFAULT_MAX_UPLOAD = 10 * 2**20


class ModelPool:
    """``size`` copies of the model, each with its own interpreter; ``borrow`` blocks until one is free."""

    def __init__(self, path: Path, size: int, threads: int = 1):
        saved_model = saved_model_folder(path) is not None
        if path.suffix != ".tflite" and not saved_model:
            raise OdliteError.at(path, "serve takes an exported .tflite or SavedModel (a folder from odlite export)")
        self.models: queue.Queue[Model] = queue.Queue()
        shared = load_model(path, threads=threads) if saved_model else None
        if shared is not None:
            shared(np.zeros((64, 64, 3), np.uint8))  # the graph's first run optimises it: seconds, not per request
        for _ in range(max(1, size)):
            self.models.put(shared or load_model(path, threads=threads))
        self.size = max(1, size)
        first = self.models.queue[0]
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
    text = str(problem)
    if text.startswith("not an image"):
        return 415
    if text.startswith("image too large"):
        return 413
    return 400


def create_app(
    model_path: str | Path, pool_size: int = 2, max_upload: int = DEFAULT_MAX_UPLOAD, threads: int = 1
) -> FastAPI:
    pool = ModelPool(Path(model_path), pool_size, threads)
    app = FastAPI(
        title="odlite tag service",
        description=f"Object detection with `{pool.path.name}`; labels: {', '.join(pool.labels)}.",
        version="1",
    )

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload + 64 * 1024:  # multipart framing
            return JSONResponse({"detail": f"request body over the {max_upload} byte limit"}, status_code=413)
        return await call_next(request)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": pool.path.name, "interpreters": pool.size}

    @app.get("/labels")
    def labels() -> dict:
        return {"labels": pool.labels}

    @app.post("/tag")
    def tag(
        file: UploadFile = File(..., description="the image (JPEG, PNG, ...)"),  # noqa: B008
        min_score: float = Query(0.5, ge=0.0, le=1.0, description="drop tags scoring less"),
        max_boxes: int = Query(100, ge=1, le=1000, description="at most this many tags"),
        classes: str | None = Query(None, description="comma-separated labels to keep, e.g. caries"),
    ) -> dict:
        wanted = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
        unknown = sorted(set(wanted or []) - set(pool.labels))
        if unknown:
            raise HTTPException(400, f"unknown class(es) {', '.join(unknown)}; known: {', '.join(pool.labels)}")
        data = file.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, f"image over the {max_upload} byte limit")
        start = time.perf_counter()
        try:
            image = pool.read(data)
        except ImageProblem as problem:
            raise HTTPException(_why_image_fails(problem), f"{file.filename or 'upload'}: {problem}") from None
        with pool.borrow() as model:
            found = model(image)
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


def app_from_environment() -> FastAPI:
    """The app each uvicorn worker process builds, from the settings ``serve`` left in the environment."""
    return create_app(**json.loads(os.environ[SETTINGS_VARIABLE]))


def serve(
    model_path,
    host: str = "127.0.0.1",
    port: int = 8000,
    pool_size: int = 2,
    max_upload=DEFAULT_MAX_UPLOAD,
    threads: int = 1,
    workers: int = 1,
):
    """Serve until stopped. ``workers`` > 1 runs that many processes (uvicorn's), each with its own pool."""
    import uvicorn

    if workers > 1:
        settings = {"model_path": str(model_path), "pool_size": pool_size, "max_upload": max_upload, "threads": threads}
        os.environ[SETTINGS_VARIABLE] = json.dumps(settings)
        uvicorn.run("pipelines.serve:app_from_environment", factory=True, workers=workers, host=host, port=port)
        return
    app = create_app(model_path, pool_size, max_upload, threads)
    uvicorn.run(app, host=host, port=port, log_level="info")
