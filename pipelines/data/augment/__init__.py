"""The OD API's ``data_augmentation_options``, applied to decoded images before resizing.

Each operation keeps the OD API's meaning and parameters, so a tuned config behaves the
same. They work on a uint8 image and normalised [ymin, xmin, ymax, xmax] boxes, and run
inside the tf.data pipeline, each example with a seed of its own. ``geometric`` holds the
operations that move boxes, ``photometric`` those that change pixel values only, ``crops``
those that change the image's frame (square crops, crops padded out, downscaling).
"""

from __future__ import annotations

import tensorflow as tf

from pipelines.data.augment import crops, geometric, photometric

AUGMENTATIONS = {**geometric.OPERATIONS, **photometric.OPERATIONS, **crops.OPERATIONS}


def augmenter(options: list[tuple[str, dict]]):
    """A function (example, seed) -> example applying the configured options in order, as the OD API does.

    Stateless random ops drawn from each example's own seed: in a parallel tf.data map a shared
    random state hands out its numbers in whatever order the threads run, so a seeded run
    would not repeat.
    """
    steps = []
    for name, params in options:
        if name not in AUGMENTATIONS:
            raise ValueError(f"augmentation {name!r} is not implemented")
        steps.append((AUGMENTATIONS[name], params))

    def apply(data: dict, seed: tf.Tensor) -> dict:
        seeds = tf.unstack(tf.random.split(seed, max(len(steps), 1)))
        for (fn, params), step_seed in zip(steps, seeds):
            data = fn(data, step_seed, **params)
        return data

    return apply
