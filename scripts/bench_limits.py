"""The tag service at its limits (make bench, ``--only limits``): the server's memory under 16 concurrent
uploads of the largest image the pixel budget allows, in the costliest format to decode, and how fast an
image past the budget is refused, idle and while those uploads are being decoded."""

from __future__ import annotations

import io
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from load_test import serving
from PIL import Image

from pipelines.data.images import DEFAULT_MAX_PIXELS

REFUSED_SAMPLES = 20


def worst_case_upload(max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str]:
    """The largest square the budget allows as a lossless RGBA WebP: measured the costliest read of the
    formats tried at 50 MP (803 MB, against 419 for an RGBA PNG, 272 for 16-bit grey, 181 for a progressive
    JPEG): libwebp's canvas, its bytes and Pillow's image are three full RGBA copies. Flat with a sparse
    noise, so that it is a few tens of kilobytes, far under the upload limit."""
    side = math.isqrt(max_pixels)
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 200, 128
    rng = np.random.default_rng(0)
    pixels[::97, ::89] = rng.integers(0, 256, pixels[::97, ::89].shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "WEBP", lossless=True)
    data = buffer.getvalue()
    return data, f"lossless RGBA WebP, {side}x{side} ({side * side / 1e6:.1f} MP), {len(data) // 1024} KB"


def over_budget_png(max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A black 16-bit greyscale PNG a little past the budget, a few hundred kilobytes."""
    import struct
    import zlib

    side = math.isqrt(max_pixels) + 1000

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    squeeze, row = zlib.compressobj(9), b"\0" * (2 * side + 1)
    data = b"".join(squeeze.compress(row * 256) for _ in range(side // 256)) + squeeze.compress(row * (side % 256))
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data + squeeze.flush()) + chunk(b"IEND", b"")


def stub_model(folder: Path, size: int = 320) -> Path:
    """A .tflite with an SSD export's input and outputs and no network, for runs without an export."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
    def detector(images):
        score = tf.reshape(tf.reduce_mean(images) / 255.0, [1, 1])
        return tf.constant([[[0.25, 0.25, 0.75, 0.75]]]), tf.ones([1, 1]), score, tf.ones([1])

    folder.mkdir(parents=True, exist_ok=True)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.get_concrete_function()], detector)
    (folder / "model.tflite").write_bytes(converter.convert())
    (folder / "labelmap.txt").write_text("normal\ncaries\n")
    return folder / "model.tflite"


def _memory_mb(pid: int) -> dict:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: round(int(fields[key].split()[0]) / 1024) for key in ("VmRSS", "VmHWM")}


def _post(url: str, data: bytes, name: str) -> tuple[int, float]:
    import httpx

    start = time.perf_counter()
    answer = httpx.post(f"{url}/tag", files={"file": (name, data, "application/octet-stream")}, timeout=600)
    return answer.status_code, (time.perf_counter() - start) * 1000


def bench_limits(model: Path | None, work: Path, clients: int = 16) -> dict:
    """Peak RSS of a server (default settings) under ``clients`` concurrent worst-case uploads, after one
    alone; the time to refuse an image past the budget, idle and under that load."""
    model = model or stub_model(work / "stub")
    upload, described = worst_case_upload()
    bomb = over_budget_png()
    small = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 60, 40)).save(small, "JPEG")
    with serving(model) as (url, server):
        _post(url, small.getvalue(), "warm-up.jpg")  # the first request's imports and allocations
        idle = _memory_mb(server.pid)["VmRSS"]
        refused_idle = [_post(url, bomb, "bomb.png") for _ in range(REFUSED_SAMPLES)]
        start = time.perf_counter()
        _post(url, upload, "one.webp")
        one = {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": _memory_mb(server.pid)["VmHWM"]}
        refused_busy: list[tuple[int, float]] = []
        done = threading.Event()

        def refuse_while_busy():
            while not done.is_set() and len(refused_busy) < REFUSED_SAMPLES:
                refused_busy.append(_post(url, bomb, "bomb.png"))

        start = time.perf_counter()
        with ThreadPoolExecutor(clients + 1) as pool:
            prober = pool.submit(refuse_while_busy)
            answers = list(pool.map(lambda i: _post(url, upload, f"{i}.webp"), range(clients)))
            done.set()
            prober.result()
        concurrent = {"seconds": round(time.perf_counter() - start, 2), **_memory_mb(server.pid)}
    statuses = sorted({status for status, _ in answers + refused_idle + refused_busy})
    return {
        "model": str(model) if "stub" not in str(model) else f"stub .tflite ({model.name}, 320x320 input, no network)",
        "upload": described,
        "settings": "odlite serve defaults: 2 interpreters, 2 decoders, 50 MP budget, 10 MB uploads",
        "idle_rss_mb": idle,
        "one_upload": one,
        f"{clients}_concurrent": {
            "peak_rss_mb": concurrent["VmHWM"],
            "over_idle_mb": concurrent["VmHWM"] - idle,
            "seconds": concurrent["seconds"],
            "slowest_ms": round(max(ms for _, ms in answers)),
            "statuses": [status for status, _ in answers],
        },
        "refused_413_ms": {
            "idle_median": round(statistics.median(ms for _, ms in refused_idle), 1),
            "under_load_median": round(statistics.median(ms for _, ms in refused_busy), 1) if refused_busy else None,
            "under_load_max": round(max(ms for _, ms in refused_busy), 1) if refused_busy else None,
            "samples_under_load": len(refused_busy),
        },
        "statuses_seen": statuses,
    }
