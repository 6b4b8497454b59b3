"""Run an exported .tflite detector with LiteRT, the interpreter Android ships.

Every odlite .tflite has one image input (float32 0-255, or uint8 for the int8
variant) and the four outputs of ``TFLite_Detection_PostProcess`` in the contract's
order: boxes [1, N, 4] (normalised ymin, xmin, ymax, xmax), classes [1, N] (index
into labelmap.txt), scores [1, N], count [1]. The runner gives the same shape of
answer as a checkpoint (label-map ids), so evaluation and detection treat both alike.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from pipelines.data.resize import resize_to_input
from pipelines.errors import OdliteError


class TFLiteDetector:
    """One interpreter; not thread-safe (LiteRT interpreters are not), so give each thread its own."""

    def __init__(self, path: str | Path, threads: int = 2):
        self.path = Path(path)
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise OdliteError.at(self.path, f"not a loadable TFLite model: {error}") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 4 or len(inputs[0]["shape"]) != 4:
            raise OdliteError.at(self.path, "not an odlite detector: expected 1 image input and 4 outputs")
        self._input = inputs[0]
        self._outputs = [o["index"] for o in outputs]
        _, self.height, self.width, _ = (int(v) for v in self._input["shape"])
        self.input_type = np.dtype(self._input["dtype"])
        if self.input_type == np.uint8:
            scale, zero_point = self._input["quantization"]
            if (scale, zero_point) != (1.0, 0):
                raise OdliteError.at(
                    self.path, f"uint8 input must take raw pixels, got scale {scale} zero {zero_point}"
                )

    def detect_one(self, image: np.ndarray):
        """uint8 [H, W, 3] at the model's size -> boxes, class indices, scores, count."""
        self.interpreter.set_tensor(self._input["index"], image[None].astype(self.input_type, copy=False))
        self.interpreter.invoke()
        boxes, classes, scores, count = (self.interpreter.get_tensor(i) for i in self._outputs)
        return boxes[0], classes[0].astype(np.int64), scores[0], int(count[0])

    def __call__(self, images):
        """A batch of uint8 images -> (boxes, scores, label-map ids, counts), like a checkpoint's detector."""
        images = np.asarray(images)
        found = [self.detect_one(image) for image in images]
        n = max(len(f[1]) for f in found)
        boxes = np.zeros((len(found), n, 4), np.float32)
        scores = np.zeros((len(found), n), np.float32)
        classes = np.zeros((len(found), n), np.int64)
        for i, (b, c, s, _) in enumerate(found):
            boxes[i, : len(c)], scores[i, : len(c)], classes[i, : len(c)] = b, s, c + 1  # index 0 is label id 1
        return boxes, scores, classes, np.array([f[3] for f in found])


def median_latency_ms(
    path: str | Path, threads: int, runs: int = 50, warmup: int = 5, image: np.ndarray | None = None
) -> float:
    """Median wall time of ``invoke`` after warm-up, on ``image`` (any size) or a fixed random one.

    The post-processing's cost grows with the boxes over the score threshold, so a real
    photo gives the latency an app sees; random pixels make a trained model find little.
    """
    detector = TFLiteDetector(path, threads)
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (detector.height, detector.width, 3), dtype=np.uint8)
    image = resize_to_input(image, detector.width, detector.height, like="mediapipe")
    detector.interpreter.set_tensor(detector._input["index"], image[None].astype(detector.input_type))
    for _ in range(warmup):
        detector.interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
