"""The Object Detection API's ``tf.Example`` layout, written and read back.

Keys follow the OD API's dataset tools, so records written by its own scripts and by
odlite are interchangeable, and Model Garden's ``TfExampleDecoder`` reads both.
Boxes are normalised to [0, 1]; ``image/source_id`` is a decimal string because
Model Garden parses it as an integer image id.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2

from pipelines.data.annotations import Box
from pipelines.data.images import PreparedImage


@dataclass(frozen=True)
class LabelledBox:
    box: Box
    class_id: int


def _bytes(values):
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=values))


def _floats(values):
    return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))


def _ints(values):
    return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))


def serialize_example(image: PreparedImage, filename: str, source_id: int, boxes: list[LabelledBox]) -> bytes:
    """One record, serialised deterministically (map keys sorted) for byte-identical output."""
    w, h = image.width, image.height
    b = [lb.box for lb in boxes]
    features = {
        "image/encoded": _bytes([image.jpeg]),
        "image/format": _bytes([b"jpeg"]),
        "image/height": _ints([h]),
        "image/width": _ints([w]),
        "image/filename": _bytes([filename.encode()]),
        "image/source_id": _bytes([str(source_id).encode()]),
        "image/key/sha256": _bytes([image.sha256.encode()]),
        "image/object/bbox/xmin": _floats([x.xmin / w for x in b]),
        "image/object/bbox/ymin": _floats([x.ymin / h for x in b]),
        "image/object/bbox/xmax": _floats([x.xmax / w for x in b]),
        "image/object/bbox/ymax": _floats([x.ymax / h for x in b]),
        "image/object/class/text": _bytes([x.label.encode() for x in b]),
        "image/object/class/label": _ints([lb.class_id for lb in boxes]),
        "image/object/difficult": _ints([int(x.difficult) for x in b]),
        "image/object/is_crowd": _ints([int(x.is_crowd) for x in b]),
        "image/object/area": _floats([(x.xmax - x.xmin) * (x.ymax - x.ymin) for x in b]),
    }
    example = example_pb2.Example(features=feature_pb2.Features(feature=features))
    return example.SerializeToString(deterministic=True)


def feature_spec():
    """What :func:`read_examples` parses: the keys every OD API record carries."""
    return {
        "image/encoded": tf.io.FixedLenFeature((), tf.string),
        "image/height": tf.io.FixedLenFeature((), tf.int64, -1),
        "image/width": tf.io.FixedLenFeature((), tf.int64, -1),
        "image/filename": tf.io.FixedLenFeature((), tf.string, ""),
        "image/source_id": tf.io.FixedLenFeature((), tf.string, ""),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
        "image/object/difficult": tf.io.VarLenFeature(tf.int64),
        "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    }


def read_examples(paths: list[str]):
    """Yield each record of ``paths`` as a dict of numpy values."""
    spec = feature_spec()
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            parsed = tf.io.parse_single_example(record, spec)
            yield {
                key: (tf.sparse.to_dense(value).numpy() if isinstance(value, tf.SparseTensor) else value.numpy())
                for key, value in parsed.items()
            }


JPEG_SCALES = (8, 4, 2, 1)  # libjpeg's DCT scaling: 1/8 to 1/1


def decode_for_input(encoded: tf.Tensor, needed: int | None):
    """(uint8 [h, w, 3], full height, full width) of a record's image, in a tf.data graph.

    With ``needed`` (the side of a square model input), a JPEG is decoded at the smallest
    libjpeg scale that leaves both sides at least that large, as ``images.load_picture``
    does outside TensorFlow; the full size comes from the JPEG header. Boxes are
    normalised, so they hold for the smaller image as they are. Other formats, and any
    image when ``needed`` is None, decode in full."""

    def full():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return image, tf.shape(image)[0], tf.shape(image)[1]

    if needed is None:
        return full()

    def reduced():
        shape = tf.image.extract_jpeg_shape(encoded)
        fits = [tf.logical_and(shape[0] // r >= needed, shape[1] // r >= needed) for r in JPEG_SCALES]
        choice = tf.argmax(tf.stack([*fits, tf.constant(True)]), output_type=tf.int32)  # the last: too small
        branches = [lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r) for r in (*JPEG_SCALES, 1)]
        return tf.switch_case(choice, branches), shape[0], shape[1]

    image, height, width = tf.cond(tf.io.is_jpeg(encoded), reduced, full)
    image.set_shape([None, None, 3])
    return image, height, width
