"""The OD API's multiscale grid anchors, in the layout Model Garden's labeler and decoder read.

Two things differ from Model Garden's ``Anchor`` and both matter for a zoo checkpoint's head:

- order: a location's anchors run aspect ratio first, then octave scale (OD API
  ``GridAnchorGenerator``); Model Garden runs scale first;
- centres: a level's first centre sits at half a stride only when the image size is a
  multiple of the stride, else at 0 (at 320 that moves level 7, 320 / 128 = 2.5).

Boxes are [ymin, xmin, ymax, xmax] in input pixels, one [H, W, A * 4] array per level,
H and W being ceil(size / stride) as the feature maps' SAME-padded convolutions give.
"""

from __future__ import annotations

import math

import numpy as np


def multilevel_anchors(
    min_level: int,
    max_level: int,
    anchor_scale: float,
    aspect_ratios,
    scales_per_octave: int,
    image_size: int,
) -> dict[str, np.ndarray]:
    """{level: float32 [H, W, A * 4]} for a square ``image_size`` input."""
    octave_scales = [2.0 ** (s / scales_per_octave) for s in range(scales_per_octave)]
    # Aspect ratio is the outer loop, octave scale the inner one.
    shapes = [(scale, ratio) for ratio in aspect_ratios for scale in octave_scales]
    out = {}
    for level in range(min_level, max_level + 1):
        stride = 2.0**level
        base = anchor_scale * stride
        cells = math.ceil(image_size / stride)
        offset = stride / 2.0 if image_size % stride == 0 else 0.0
        centres = np.arange(cells, dtype=np.float64) * stride + offset
        heights = np.array([scale / math.sqrt(ratio) * base for scale, ratio in shapes])
        widths = np.array([scale * math.sqrt(ratio) * base for scale, ratio in shapes])
        cy = centres[:, None, None]
        cx = centres[None, :, None]
        boxes = np.stack(
            np.broadcast_arrays(cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2), axis=-1
        )  # [H, W, A, 4]
        out[str(level)] = boxes.reshape(cells, cells, -1).astype(np.float32)
    return out
