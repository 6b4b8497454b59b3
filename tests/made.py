"""Inputs the tests make for themselves: a decompression bomb of a PNG and stub detectors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

STUB_INPUT = 64


def png16(width: int, height: int) -> bytes:
    """A black 16-bit greyscale PNG, written by hand: zlib shrinks its rows of zeros to almost nothing (8000 x
    8000, 64 megapixels and 128 MB decoded, is 125 KB), the shape of a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    squeeze, rows = zlib.compressobj(9), b"\0" * (2 * width + 1) * 256  # a filter byte and the row, 256 at a time
    data = b"".join(squeeze.compress(rows[: len(rows) * min(256, height - y) // 256]) for y in range(0, height, 256))
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16 bits, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data + squeeze.flush()) + chunk(b"IEND", b"")


def write_stub_tflite(folder: Path) -> None:
    """``folder/model.tflite``, with an odlite detector's input and four outputs, that finds one 'caries' box
    scored by the picture's brightness, and its labelmap.txt: for the tests of what happens around a model
    (serving, refusing input), built in a second instead of the minutes of training and exporting one."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, STUB_INPUT, STUB_INPUT, 3], tf.float32)])
    def detector(images):
        score = tf.reshape(tf.reduce_mean(images) / 255.0, [1, 1])
        box = tf.constant([[[0.25, 0.25, 0.75, 0.75]]])
        return box, tf.ones([1, 1]), score, tf.ones([1])  # class index 1: 'caries'

    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.get_concrete_function()], detector)
    folder.mkdir()
    (folder / "model.tflite").write_bytes(converter.convert())
    (folder / "labelmap.txt").write_text("normal\ncaries\n")


def write_stub_export(folder: Path) -> None:
    """``folder`` as an export folder holding only ``saved_model/``, whose serving signature answers as the
    stub .tflite does (one 'caries' box, label-map id 2, scored by brightness), and labelmap.txt."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images):
        n = tf.shape(images)[0]
        score = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3])[:, None] / 255.0
        return {
            "detection_boxes": tf.tile(tf.constant([[[0.25, 0.25, 0.75, 0.75]]]), [n, 1, 1]),
            "detection_classes": tf.fill([n, 1], 2),
            "detection_scores": score,
            "num_detections": tf.fill([n], 1),
        }

    module.serve = serve
    folder.mkdir()
    tf.saved_model.save(module, str(folder / "saved_model"), signatures={"serving_default": serve})
    (folder / "labelmap.txt").write_text("normal\ncaries\n")
    (folder / "export.json").write_text("{}\n")


class FindsNothing:
    """A detector (``detectors.Detector``) that finds nothing in any picture: for the tests of what detect does
    around a model."""

    kind, checkpoint, input_size, resize_like, batch_size, shareable, resized_size = (
        "tflite", None, None, "mediapipe", 1, False, None
    )  # fmt: skip

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, images):
        import numpy as np

        from pipelines.detectors import BatchDetections

        n = len(images)
        return BatchDetections(np.zeros((n, 0, 4)), np.zeros((n, 0)), np.zeros((n, 0), np.int64), np.zeros(n, np.int64))

    def labels(self) -> list[str]:
        return ["normal", "caries"]
