"""The latency of an exported .tflite in LiteRT, the interpreter Android ships, as the export report states it."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from pipelines.data.resize import resize_to_input
from pipelines.detectors import TFLiteDetector


def median_latency_ms(
    path: str | Path, threads: int, runs: int = 50, warmup: int = 5, image: np.ndarray | None = None
) -> float:
    """Median wall time of ``invoke`` after warm-up, on ``image`` (any size) or a fixed random one.

    The post-processing's cost grows with the boxes over the score threshold, so a real
    photo gives the latency an app sees; random pixels make a trained model find little.
    """
    detector = TFLiteDetector(path, threads)
    width, height = detector.input_size
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    detector.feed(resize_to_input(image, width, height, like="mediapipe"))
    for _ in range(warmup):
        detector.interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
