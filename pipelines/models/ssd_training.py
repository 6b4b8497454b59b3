"""The SSD's training targets and loss, as faster_rcnn.py holds Faster R-CNN's.

Targets: Model Garden's AnchorLabeler on the OD API's anchors, as its RetinaNet parser uses it.
Loss: the OD API's, focal classification loss and smooth-L1 box loss on faster-rcnn encoded
boxes, normalised by the number of matched anchors, with the config's classification and
localization weights (Model Garden has no such weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf
import tf_keras
from official.vision.losses import focal_loss, loss_utils
from official.vision.ops import anchor

from pipelines.data.resize import resize_to_input

if TYPE_CHECKING:
    from pipelines.config.experiment import TrainSpec

SSD_LOSSES = ("total_loss", "classification_loss", "localization_loss", "regularization_loss")


def anchor_labeller(spec: TrainSpec):
    """(decoded, augmented example) -> (uint8 image at the input size, anchor targets).

    Without the RetinaNet parser's normalisation of the full-size photo: that was a third of the
    input pipeline's cost; the training step normalises the small uint8 batch instead (on a GPU,
    for free).
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


def detection_losses(spec: TrainSpec, outputs: dict, labels: dict, regularization) -> dict:
    """Per-replica losses: focal + smooth-L1, each divided by the number of matched anchors (at least 1)
    when normalize_loss_by_num_matches, as the OD API's SSD does; otherwise summed over the batch."""
    num_classes = spec.model.num_classes + 1
    num_positives = tf.maximum(tf.reduce_sum(labels["box_weights"]), 1.0) if spec.normalize_by_matches else 1.0
    cls_true = tf.one_hot(loss_utils.multi_level_flatten(labels["cls_targets"], last_dim=None), num_classes)
    # encode_background_as_zeros: the background column's target is 0 for every anchor, as in the OD API.
    cls_true *= tf.one_hot(0, num_classes, on_value=0.0, off_value=1.0)
    cls_pred = loss_utils.multi_level_flatten(outputs["cls_outputs"], last_dim=num_classes)
    focal = focal_loss.FocalLoss(
        alpha=spec.focal_alpha, gamma=spec.focal_gamma, reduction=tf_keras.losses.Reduction.SUM
    )
    cls_loss = focal(cls_true, tf.cast(cls_pred, tf.float32), sample_weight=labels["cls_weights"] / num_positives)
    box_true = loss_utils.multi_level_flatten(labels["box_targets"], last_dim=4)
    box_pred = loss_utils.multi_level_flatten(outputs["box_outputs"], last_dim=4)
    # Keras' Huber averages over the 4 box codes: the OD API's normalize_loc_loss_by_codesize.
    huber = tf_keras.losses.Huber(spec.huber_delta, reduction=tf_keras.losses.Reduction.SUM)
    box_loss = huber(box_true, tf.cast(box_pred, tf.float32), sample_weight=labels["box_weights"] / num_positives)
    if not spec.loss_per_code:
        box_loss *= 4.0
    cls_loss, box_loss = spec.classification_weight * cls_loss, spec.localization_weight * box_loss
    reg_loss = tf.add_n(regularization) if regularization else tf.constant(0.0)
    return {
        "total_loss": cls_loss + box_loss + reg_loss,
        "classification_loss": cls_loss,
        "localization_loss": box_loss,
        "regularization_loss": reg_loss,
    }
