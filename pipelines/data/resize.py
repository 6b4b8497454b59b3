"""fixed_shape_resizer: the one way odlite stretches a picture to the model's square input.

Two ways of computing it, one for each place a model runs:

- ``"tensorflow"``: bilinear with half-pixel centres (``tf.image.resize``), rounded back to
  uint8 as a phone's camera frame is. Training, evaluation, the SavedModel's serving
  function and detect with a checkpoint or SavedModel all use it, so a checkpoint scores
  the same everywhere.
- ``"mediapipe"``: MediaPipe's CPU preprocessing, an affine map with bilinear sampling
  (``cv2.warpAffine``). A .tflite on Android sees its input this way; the TFLite runner
  uses it so that detect, eval and serve with a .tflite give the app's answers. Measured
  against MediaPipe's ObjectDetector on the sample: scores within 0.001, where the
  half-pixel-centred resize differed by up to 0.02.
"""

from __future__ import annotations

import cv2
import numpy as np

WAYS = ("tensorflow", "mediapipe")


def resize_to_input(image, width: int, height: int | None = None, like: str = "tensorflow"):
    """``image`` ([H, W, 3] or [N, H, W, 3] for TensorFlow, [H, W, 3] numpy for MediaPipe) stretched to
    ``width`` x ``height`` (square when ``height`` is None), as uint8."""
    height = height or width
    if like == "tensorflow":
        import tensorflow as tf  # here, so that the .tflite paths (serve) start without TensorFlow

        resized = tf.image.resize(image, [height, width], method="bilinear")  # a weighted mean: stays in 0-255
        return tf.cast(tf.round(resized), tf.uint8)
    if like == "mediapipe":
        h, w = image.shape[:2]
        scale = np.array([[width / w, 0, 0], [0, height / h, 0]], np.float32)
        return cv2.warpAffine(np.asarray(image), scale, (width, height), flags=cv2.INTER_LINEAR)
    raise ValueError(f"resize like one of {WAYS}, not {like!r}")
