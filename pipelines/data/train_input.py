"""The training input: TFRecords -> augmented, labelled batches of uint8 images, in tf.data.

Decoded with Model Garden's TfExampleDecoder, augmented as the config's
data_augmentation_options say (augment/), then labelled for the meta-architecture:
the SSD's anchors through Model Garden's AnchorLabeler, Faster R-CNN's through its RPN
labeller (models/faster_rcnn.py). Images stay uint8 to the device; the training step normalises.
A config with normalize_image or subtract_channel_mean sends float32 images (augment.FLOAT_RANGE).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from official.vision.dataloaders import tf_example_decoder
from official.vision.ops import anchor

from pipelines.artifacts import glob_inputs
from pipelines.data.augment import augmenter, needs_full_size
from pipelines.config.experiment import TrainSpec
from pipelines.models.faster_rcnn import rpn_labeller
from pipelines.data.resize import resize_to_input
from pipelines.data.tfrecord import decode_for_input


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


def anchor_labeller(spec: TrainSpec):
    """(decoded, augmented example) -> (uint8 image at the input size, anchor targets).

    Model Garden's AnchorLabeler on the OD API's anchors, as its RetinaNet parser uses it, without the
    parser's normalisation of the full-size photo: that was a third of the input pipeline's
    cost; the training step normalises the small uint8 batch instead (on a GPU, for free).
    """
    m = spec.model
    size = m.input_size
    anchors = m.anchors()  # the OD API's, built once
    labeller = anchor.AnchorLabeler(spec.matched_threshold, spec.unmatched_threshold, list(m.box_coder_weights))

    def label(data: dict):
        # Crowd regions are not trained on (Model Garden's skip_crowd_during_training); boxes that
        # augmentation left empty go; beyond max_number_of_boxes they are dropped, as in the OD API.
        # fixed_shape_resizer stretches, so pixels are size * normalised.
        boxes = data["groundtruth_boxes"] * float(size)
        keep = ~data["groundtruth_is_crowd"] & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)[: spec.max_boxes]
        classes = tf.expand_dims(tf.boolean_mask(data["groundtruth_classes"], keep)[: spec.max_boxes], 1)
        cls_targets, box_targets, _, cls_weights, box_weights = labeller.label_anchors(anchors, boxes, classes)
        targets = {
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "cls_weights": cls_weights,
            "box_weights": box_weights,
        }
        image = data["image"]
        if image.dtype != tf.uint8:  # normalize_image's values, unrounded (augment.FLOAT_RANGE)
            return tf.image.resize(image, [size, size], method="bilinear"), targets
        return resize_to_input(image, size), targets

    return label


def training_decoder(spec: TrainSpec) -> ReducedDecoder:
    """The decoder training reads records with: reduced to the SSD's input scale, unless the model
    (Faster R-CNN keeps the aspect ratio) or an augmentation measured in pixels needs the full picture."""
    full = spec.model.kind == "faster_rcnn" or needs_full_size(spec.augmentations)
    return ReducedDecoder(None if full else spec.model.input_size)


def train_dataset(spec: TrainSpec, batch_size: int, seed: int | None = None) -> tf.data.Dataset:
    """Augmented, anchor-labelled batches of uint8 images: shuffled unless the train_input_reader says
    ``shuffle: false``, endless unless it sets ``num_epochs``."""
    files = glob_inputs(spec.train_paths, "train_input_reader")
    two_stage = spec.model.kind == "faster_rcnn"
    decoder = training_decoder(spec)
    label = rpn_labeller(spec.model, spec.max_boxes) if two_stage else anchor_labeller(spec)
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
        return label(augmented, drawn_from) if two_stage else label(augmented)

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = seed is not None or not spec.shuffle
    return dataset.with_options(options)
