"""The training input: TFRecords -> augmented, labelled batches of uint8 images, in tf.data.

Decoded with Model Garden's TfExampleDecoder, augmented as the config's
data_augmentation_options say (augment/), then labelled as the meta-architecture says
(models/meta_architecture.py): the SSD's anchors, Faster R-CNN's RPN anchors. Images stay uint8
to the device; the training step normalises. A config with normalize_image or subtract_channel_mean
sends float32 images (augment.FLOAT_RANGE).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from official.vision.dataloaders import tf_example_decoder

from pipelines.artifacts import glob_inputs
from pipelines.data.augment import augmenter, needs_full_size
from pipelines.config.experiment import TrainSpec
from pipelines.data.tfrecord import decode_for_input
from pipelines.models.meta_architecture import meta_architecture


class ReducedDecoder(tf_example_decoder.TfExampleDecoder):
    """Model Garden's decoder, with the image decoded no larger than a ``needed`` square input
    (tfrecord.decode_for_input): a phone photo costs a fraction of a full decode. Boxes are
    normalised, so augmentation's crops and flips work on the smaller image unchanged."""

    def __init__(self, needed: int | None):
        super().__init__(regenerate_source_id=True)
        self._needed = needed

    def _decode_image(self, parsed_tensors):
        image, _, _ = decode_for_input(parsed_tensors["image/encoded"], self._needed)
        return image


def training_decoder(spec: TrainSpec) -> ReducedDecoder:
    """The decoder training reads records with: reduced to the network input's scale, unless the
    meta-architecture (Faster R-CNN keeps the aspect ratio) or an augmentation measured in pixels needs
    the full picture."""
    needed = meta_architecture(spec.model.kind).pipeline_input_size(spec.model)
    return ReducedDecoder(None if needs_full_size(spec.augmentations) else needed)


def train_dataset(spec: TrainSpec, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Augmented, anchor-labelled batches of uint8 images: shuffled unless the train_input_reader says
    ``shuffle: false``, endless unless it sets ``num_epochs``."""
    files = glob_inputs(spec.train_paths, "train_input_reader")
    decoder = training_decoder(spec)
    label = meta_architecture(spec.model.kind).labeller(spec)
    augment = augmenter(spec.augmentations)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if spec.shuffle:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.repeat(spec.num_epochs or None)
    # num_readers files are read at once; unshuffled, one after another, so that the order is the files'.
    cycle = min(len(files), spec.num_readers) if spec.shuffle else 1
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=cycle, num_parallel_calls=tf.data.AUTOTUNE)
    if spec.shuffle:
        dataset = dataset.shuffle(512, seed=seed)
    # Each example's seed, for its augmentation and the RPN's anchor minibatch: (run seed, its position
    # in the stream), so a seeded run repeats.
    base = seed if seed is not None else int(np.random.default_rng().integers(2**31))
    dataset = dataset.enumerate()

    @tf.autograph.experimental.do_not_convert  # graph code already: converting Model Garden's ops took 3 s
    def prepare(index, raw):
        drawn_from = tf.stack([tf.constant(base, tf.int64), index])
        augmented = augment(decoder.decode(raw), drawn_from)
        return label(augmented, drawn_from)

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = seed is not None or not spec.shuffle
    return dataset.with_options(options)
