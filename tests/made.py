"""Inputs the tests make for themselves: a decompression bomb of a PNG and a stub detector."""

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
