"""Every pipeline.config leaf odlite accepts changes what is built or run, or is a listed no-op.

The walk covers every scalar field that ``support.SUPPORTED`` reaches from the root.
For each one it sets other values through ``PipelineConfig.set`` (the ``--set`` path) and
compares what odlite then builds and runs: the network's weights and outputs, batch-norm
statistics, detections, the losses, the training and evaluation inputs, the optimizer,
the TFLite post-processing, the label map and the loops' settings. A leaf passes when one
value changes one of those, when every other value is refused, or when ``NO_OPS`` lists it
with a reason (and then nothing may change). So "honoured or refused" cannot drift: a new
supported field that nothing reads fails here.

The leaves are walked in two processes, half each (building networks is Python-bound); the
references both compute for a base must agree, so the comparison itself is deterministic.

Faster R-CNN's leaves are walked on a Faster R-CNN base. Building its ResNet-50 for each of
them would cost minutes, so there the network is represented by what it is built from:
the FasterRcnnSpec (and the dtype policy); tests/test_faster_rcnn.py shows each spec field
changes the built network or what it computes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import FASTER_RCNN_CONFIG, LABEL_MAP, TOOTH_CONFIG, in_two_processes, supported_leaves

from pipelines.config.experiment import train_spec
from pipelines.config.label_map import read_label_map
from pipelines.config.pipeline_config import PipelineConfig, parse_pipeline_config
from pipelines.config.schema import ENUMS, ROOT, message_spec
from pipelines.config.support import NO_OPS
from pipelines.data.augment import augmenter
from pipelines.data.train_input import ReducedDecoder, train_dataset
from pipelines.detectors import pipeline_input_size
from pipelines.errors import OdliteError
from pipelines.evaluate import eval_dataset
from pipelines.export.exporter import tflite_post_processing
from pipelines.models.ssd import build_model, normalize_pixels
from pipelines.models.ssd_training import detection_losses
from pipelines.train import dtype_policy, dtype_policy_name, make_optimizer

INPUT_BATCHES = 12  # more than one epoch of the 16-image sample at batch 2: num_epochs shows
EVERY_AUGMENTATION = "every augmentation"
AUGMENTED = 4  # training examples the augmentations are applied to, eagerly (three seeds each)
SIZE = 128  # the smallest input odlite's SSD takes

# Fields that only make sense set together (the config's own cross-checks say so).
LINKED = {
    "model.ssd.image_resizer.fixed_shape_resizer.height": ["model.ssd.image_resizer.fixed_shape_resizer.width"],
    "model.ssd.image_resizer.fixed_shape_resizer.width": ["model.ssd.image_resizer.fixed_shape_resizer.height"],
    "model.ssd.feature_extractor.fpn.min_level": ["model.ssd.anchor_generator.multiscale_anchor_generator.min_level"],
    "model.ssd.feature_extractor.fpn.max_level": ["model.ssd.anchor_generator.multiscale_anchor_generator.max_level"],
    "model.ssd.anchor_generator.multiscale_anchor_generator.min_level": ["model.ssd.feature_extractor.fpn.min_level"],
    "model.ssd.anchor_generator.multiscale_anchor_generator.max_level": ["model.ssd.feature_extractor.fpn.max_level"],
    "train_input_reader.label_map_path": ["eval_input_reader.label_map_path"],
    "model.faster_rcnn.feature_extractor.fpn.min_level": [
        "model.faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.min_level"
    ],
    "model.faster_rcnn.feature_extractor.fpn.max_level": [
        "model.faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.max_level"
    ],
    "model.faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.min_level": [
        "model.faster_rcnn.feature_extractor.fpn.min_level"
    ],
    "model.faster_rcnn.first_stage_anchor_generator.multiscale_anchor_generator.max_level": [
        "model.faster_rcnn.feature_extractor.fpn.max_level"
    ],
}
FRCNN_SIZE = 128
_INITIALIZER_BLOCK = re.compile(r"initializer \{ \w+_initializer \{[^}]*\} \}")
_INITIALIZERS = {
    "truncated": "initializer { truncated_normal_initializer { mean: 0.0 stddev: 0.03 } }",
    "normal": "initializer { random_normal_initializer { mean: 0.0 stddev: 0.01 } }",
    "scaling": "initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } }",
}

INITIALIZER = """initializer {
            random_normal_initializer {
              stddev: 0.01
              mean: 0.0
            }
          }"""
COSINE_BLOCK = """cosine_decay_learning_rate {
          learning_rate_base: 0.04
          total_steps: 600
          warmup_learning_rate: 0.01
          warmup_steps: 50
        }"""
PAD_FIXED = "train_config.data_augmentation_options.ssd_random_crop_pad_fixed_aspect_ratio"
AUGMENTATION_STEPS = """data_augmentation_options { random_horizontal_flip { } }
  data_augmentation_options { random_crop_image { } }
  data_augmentation_options { ssd_random_crop { operations {
    min_object_covered: 0.3 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 min_area: 0.1 max_area: 1.0
    overlap_thresh: 0.3 random_coef: 0.15 } } }
  data_augmentation_options { random_adjust_brightness { } }
  data_augmentation_options { random_adjust_contrast { } }
  data_augmentation_options { random_adjust_hue { } }
  data_augmentation_options { random_adjust_saturation { } }
  data_augmentation_options { random_pixel_value_scale { minval: 0.8 maxval: 1.2 } }
  data_augmentation_options { random_rgb_to_gray { probability: 0.5 } }
  data_augmentation_options { random_distort_color { color_ordering: 1 } }
  data_augmentation_options { adjust_gamma { gamma: 0.8 gain: 1.1 } }
  data_augmentation_options { random_black_patches { max_black_patches: 4 probability: 0.6 size_to_image_ratio: 0.2 } }
  data_augmentation_options { random_jpeg_quality { random_coef: 0.2 min_jpeg_quality: 30 max_jpeg_quality: 90 } }
  data_augmentation_options { random_patch_gaussian { random_coef: 0.1 min_patch_size: 5 max_patch_size: 60
    min_gaussian_stddev: 0.1 max_gaussian_stddev: 0.5 } }
  data_augmentation_options { random_resize_method { target_height: 150 target_width: 170 } }
  data_augmentation_options { resize_image { new_height: 140 new_width: 160 method: AREA } }
  data_augmentation_options { drop_label_probabilistically { label: 1 drop_probability: 0.5 } }
  data_augmentation_options { remap_labels { original_labels: 2 new_label: 1 } }
  data_augmentation_options { normalize_image { original_minval: 0 original_maxval: 255 target_minval: -1
    target_maxval: 1 } }
  data_augmentation_options { subtract_channel_mean { means: [0.1, 0.2, 0.3] } }
  data_augmentation_options { random_vertical_flip { } }
  data_augmentation_options { random_rotation90 { } }
  data_augmentation_options { random_jitter_boxes { } }
  data_augmentation_options { random_pad_image { min_image_height: 720 min_image_width: 720 max_image_height: 800
    max_image_width: 800 } }
  data_augmentation_options { random_absolute_pad_image { max_height_padding: 40 max_width_padding: 40 } }
  data_augmentation_options { random_image_scale { min_scale_ratio: 0.4 max_scale_ratio: 0.6 } }
  data_augmentation_options { random_crop_pad_image { min_padded_size_ratio: [1.0, 1.0]
    max_padded_size_ratio: [2.0, 2.0] } }
  data_augmentation_options { random_crop_to_aspect_ratio { } }
  data_augmentation_options { random_self_concat_image { concat_vertical_probability: 0.5
    concat_horizontal_probability: 0.5 } }
  data_augmentation_options { random_scale_crop_and_pad_to_square { output_size: 300 scale_min: 0.5 scale_max: 1.5 } }
  data_augmentation_options { random_square_crop_by_scale { max_border: 64 scale_min: 0.6 scale_max: 1.3
    num_scales: 8 } }
  data_augmentation_options { ssd_random_crop_pad { operations { min_object_covered: 0.3 min_aspect_ratio: 0.5
    max_aspect_ratio: 2.0 min_area: 0.3 max_area: 0.9 overlap_thresh: 0.3 random_coef: 0.2
    min_padded_size_ratio: [1.0, 1.2] max_padded_size_ratio: [2.0, 1.5] pad_color_r: 50 pad_color_g: 100
    pad_color_b: 150 } } }
  data_augmentation_options { ssd_random_crop_fixed_aspect_ratio { aspect_ratio: 1.2 operations {
    min_object_covered: 0.1 min_area: 0.1 max_area: 0.3 overlap_thresh: 0.0 random_coef: 0.2 } } }
  data_augmentation_options { ssd_random_crop_pad_fixed_aspect_ratio { aspect_ratio: 0.8
    min_padded_size_ratio: [1.1, 1.2] max_padded_size_ratio: [1.6, 1.8] operations { min_object_covered: 0.3
    min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 min_area: 0.3 max_area: 0.9 overlap_thresh: 0.3
    random_coef: 0.2 } } }
  data_augmentation_options { random_downscale_to_target_pixels { random_coef: 0.2 min_target_pixels: 5000
    max_target_pixels: 8000 } }
  data_augmentation_options { autoaugment_image { policy_name: "v0" } }
  optimizer {"""


def _replace_all(text: str, old: str, new: str) -> str:
    flat = " ".join(text.split())
    assert " ".join(old.split()) in flat, f"the tooth config no longer has {old.split()[0]}"
    return flat.replace(" ".join(old.split()), new)


def _bases(data: Path) -> dict[str, str]:
    """The tooth config on the small sample, and variants that choose each other oneof member."""
    text = re.sub(r"#.*", "", TOOTH_CONFIG.read_text())  # no comments: variants are made on one line
    text = text.replace("data/tooth/train-*.tfrecord", f"{data}/train-*.tfrecord")
    text = text.replace("data/tooth/val-*.tfrecord", f"{data}/val-*.tfrecord")
    text = text.replace("label_maps/tooth_label_map.pbtxt", str(LABEL_MAP))
    text = text.replace("height: 320", f"height: {SIZE}").replace("width: 320", f"width: {SIZE}")
    text = text.replace("batch_size: 8", "batch_size: 2")
    scaling = "initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } }"
    # The base with every augmentation (random_crop_image at its defaults, where its knobs show), for
    # the augmentations' leaves alone (see _concrete); the rest choose other oneof members.
    return {
        EVERY_AUGMENTATION: " ".join(text.split()).replace(
            " ".join(text[text.index("data_augmentation_options") : text.index("optimizer {") + 11].split()),
            " ".join(AUGMENTATION_STEPS.split()),
        ),
        "tooth": text,
        "truncated normal": _replace_all(
            text, INITIALIZER, "initializer { truncated_normal_initializer { mean: 0.0 stddev: 0.03 } }"
        ),
        "variance scaling": _replace_all(text, INITIALIZER, scaling),
        "constant rate": _replace_all(text, COSINE_BLOCK, "constant_learning_rate { learning_rate: 0.01 }"),
        **_faster_rcnn_bases(data),
    }


def _faster_rcnn_bases(data: Path) -> dict[str, str]:
    """The Faster R-CNN tooth config, small, with each initializer kind in each of its three hyperparams
    (feature extractor, RPN, box head) across three bases, and one with the fixed-shape resizer."""
    text = re.sub(r"#.*", "", FASTER_RCNN_CONFIG.read_text())
    text = text.replace("data/tooth/train-*.tfrecord", f"{data}/train-*.tfrecord")
    text = text.replace("data/tooth/val-*.tfrecord", f"{data}/val-*.tfrecord")
    text = text.replace("label_maps/tooth_label_map.pbtxt", str(LABEL_MAP))
    text = " ".join(text.replace("dimension: 640", f"dimension: {FRCNN_SIZE}").split())
    text = text.replace("batch_size: 8", "batch_size: 2")

    def initializers(*kinds: str) -> str:
        found = iter(kinds)
        return _INITIALIZER_BLOCK.sub(lambda match: _INITIALIZERS[next(found)], text)

    fixed = f"fixed_shape_resizer {{ height: {FRCNN_SIZE} width: {FRCNN_SIZE} }}"
    keep = re.search(r"keep_aspect_ratio_resizer \{[^}]*\}", text).group(0)
    # Batch-norm blocks of their own for the RPN conv and the box head, so that their fields are walked.
    normed = parse_pipeline_config(initializers("truncated", "normal", "truncated"))
    frcnn = "model.faster_rcnn"
    heads = (
        f"{frcnn}.first_stage_box_predictor_conv_hyperparams",
        f"{frcnn}.second_stage_box_predictor.mask_rcnn_box_predictor.fc_hyperparams",
    )
    normed.set_many([(f"{head}.batch_norm.scale", "true") for head in heads])
    return {
        "faster_rcnn": text,
        "faster_rcnn swapped initializers, head batch norms": normed.to_text(),
        "faster_rcnn other initializers": initializers("normal", "scaling", "normal"),
        # (the shipped config: scaling, truncated, scaling; so each block meets each kind)
        "faster_rcnn fixed shape": text.replace(keep, fixed),
    }


def _field(path: str):
    spec = message_spec(ROOT)
    for part in path.replace("[*]", "").split("."):
        field = spec.fields[part]
        if field.kind == "message":
            spec = message_spec(field.type)
    return field


# Strings the config accepts only from a list of names: another accepted name to try.
NAMED_STRINGS = {"train_config.data_augmentation_options.autoaugment_image.policy_name": ["v1"]}


def _candidates(path: str, value, field, alternatives: dict) -> list[str]:
    """Other values for the leaf at ``path``, as ``--set`` text, most likely accepted first."""
    if path in alternatives:
        return alternatives[path]
    if field.repeated and field.type == "float":
        return [
            ",".join(str(v) for v in [*value, 3.0]),
            ",".join(str(v) for v in value[:-1] or [1.5]),
            ",".join(str(v + 1.0) for v in value),  # as many values, for a field that needs that many
        ]
    if field.repeated and field.type in ("int32", "int64"):
        return [",".join(str(v) for v in [*value, 3]), ",".join(str(v) for v in value[:-1] or [1])]
    if field.kind == "enum":
        return [name for name in ENUMS[field.type] if name != value]
    if field.type == "bool":
        return ["false" if value else "true"]
    if field.type in ("float", "double"):
        options = [value * 2, value / 2, value + 0.1, value - 0.1, 0.3, 0.7, 1.0, 1.5, 3.0, 0.01]
        return [repr(float(v)) for v in dict.fromkeys(options) if v != value]
    if field.type == "string":
        return NAMED_STRINGS.get(path, ["something else"])
    options = [value + 1, value - 1, value * 2, 1, 2, 4, 8]
    return [str(v) for v in dict.fromkeys(options) if v != value and v >= 0]


def _digest(*arrays) -> str:
    """A short hash of tensors; floats rounded to 6 decimals, below which only summation order speaks."""
    h = hashlib.sha256()
    for item in tf.nest.flatten(arrays):
        array = np.asarray(item)
        if array.dtype.kind == "f":
            array = np.round(array.astype(np.float64), 6)
        h.update(str(array.shape).encode() + np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


class Behaviour:
    """What odlite builds and runs for a config, as digests; the expensive parts are cached by their inputs."""

    def __init__(self):
        self.models: dict[str, tuple] = {}
        self.inputs: dict[str, tuple] = {}
        self.evals: dict[str, str] = {}
        self.passes: dict[tuple, tuple] = {}
        self.augmented: dict[str, str] = {}
        self.examples: list[dict] = []

    @staticmethod
    def _model_key(spec) -> str:
        return repr((spec.model, spec.use_bfloat16))

    def model(self, spec):
        key = self._model_key(spec)
        if key not in self.models:
            tf_keras.utils.set_random_seed(0)
            with dtype_policy(dtype_policy_name(spec, False)):
                model = build_model(spec.model)
            self.models[key] = (model, model.get_weights())
        return self.models[key]

    @staticmethod
    def _input_key(spec) -> str:
        m = spec.model
        if m.kind == "faster_rcnn":
            return repr((m, spec.max_boxes, spec.augmentations, spec.train_paths, spec.shuffle, spec.num_epochs,
                         spec.num_readers, spec.batch_size))  # fmt: skip
        return repr(
            (m.input_size, m.min_level, m.max_level, m.anchor_scale, m.aspect_ratios, m.scales_per_octave,
             m.box_coder_weights, m.num_classes, spec.matched_threshold, spec.unmatched_threshold,
             spec.max_boxes, spec.augmentations, spec.train_paths, spec.shuffle, spec.num_epochs,
             spec.num_readers, spec.batch_size)
        )  # fmt: skip

    def train_input(self, spec):
        key = self._input_key(spec)
        if key not in self.inputs:
            tf_keras.utils.set_random_seed(0)
            batches = list(train_dataset(spec, spec.batch_size, seed=0).take(INPUT_BATCHES))
            self.inputs[key] = (batches, _digest([b[0] for b in batches], [b[1] for b in batches]) + f"/{len(batches)}")
        return self.inputs[key]

    def passes_of(self, spec) -> tuple:
        """The network's training-mode pass on the first training batch (its outputs, the weights after it,
        the regularization losses) and its inference pass. The same network on the same batch computes the
        same, whatever else a leaf changes, so a leaf that changes only the losses or nothing reuses them."""
        key = (self._model_key(spec), self._input_key(spec))
        if key not in self.passes:
            model, weights = self.model(spec)
            model.set_weights(weights)
            images = normalize_pixels(self.train_input(spec)[0][0][0])
            outputs = model(images, training=True)
            regularization = [tf.identity(loss) for loss in model.losses]
            self.passes[key] = (outputs, model.get_weights(), regularization, model(images, training=False))
        return self.passes[key]

    def augmentation(self, spec) -> str:
        """Each configured data_augmentation_options step applied alone to a few decoded training examples,
        three seeds each: a leaf of a step changes that step's output, which shows here without tracing a
        training input, and without rerunning the other steps (their order is the training input's to show)."""
        if not self.examples:  # the first config's training examples, whichever leaf comes later
            files = sorted({f for p in spec.train_paths for f in tf.io.gfile.glob(p)})
            decoder = ReducedDecoder(None)
            self.examples = [decoder.decode(raw) for raw in tf.data.TFRecordDataset(files).take(AUGMENTED)]
        digests = []
        for step in spec.augmentations:
            key = repr(step)
            if key not in self.augmented:
                augment = augmenter([step])
                seeds = [(i, seed) for i in range(len(self.examples)) for seed in range(3)]
                out = [augment(self.examples[i], tf.constant([seed, i], tf.int64)) for i, seed in seeds]
                self.augmented[key] = _digest(
                    [[o["image"], o["groundtruth_boxes"], o["groundtruth_classes"]] for o in out]
                )
            digests.append(self.augmented[key])
        return "/".join(digests)

    def eval_input(self, spec) -> str:
        size = pipeline_input_size(spec)
        key = repr((spec.eval_paths, size, spec.eval_examples))
        if key not in self.evals:
            paths = sorted({f for p in spec.eval_paths for f in tf.io.gfile.glob(p)})
            batches = list(eval_dataset(paths, size, 4, spec.eval_examples))
            self.evals[key] = _digest([b[0] for b in batches], [b[1]["image/object/class/label"] for b in batches])
        return self.evals[key]

    def of(self, text: str) -> dict:
        """What is built and run, cheapest first, each as a function of nothing (so a caller can stop early)."""
        spec = train_spec(parse_pipeline_config(text))
        run = {}

        def model_run():
            if "run" not in run:
                outputs, after, regularization, detections = self.passes_of(spec)
                labels = self.train_input(spec)[0][0][1]
                losses = detection_losses(spec, outputs, labels, regularization)
                run["run"] = (outputs, after, losses, detections)
            return run["run"]

        def optimizer():
            made = make_optimizer(spec)
            rates = []
            for step in range(0, 2 * spec.num_steps, 7):
                made.iterations.assign(step)
                rates.append(float(made.learning_rate))
            return json.dumps(made.get_config(), default=str, sort_keys=True) + repr(rates)

        loops = (spec.num_steps, spec.max_evals, spec.fine_tune_checkpoint, spec.fine_tune_checkpoint_type)
        if spec.model.kind == "faster_rcnn":
            return {
                "loops": lambda: repr(loops),
                "label map": lambda: repr(read_label_map(spec.label_map_path)),
                "optimizer": optimizer,
                "network (FasterRcnnSpec) and dtype policy": lambda: repr((spec.model, spec.use_bfloat16)),
                "evaluation input": lambda: self.eval_input(spec),
                "augmentation": lambda: self.augmentation(spec),
                "training input": lambda: self.train_input(spec)[1],
            }
        return {
            "loops": lambda: repr(loops),
            "label map": lambda: repr(read_label_map(spec.label_map_path)),
            "TFLite post-processing": lambda: repr(tflite_post_processing(spec.model)),
            "optimizer": optimizer,
            "evaluation input": lambda: self.eval_input(spec),
            "augmentation": lambda: self.augmentation(spec),
            "training input": lambda: self.train_input(spec)[1],
            "initial weights": lambda: _digest(self.model(spec)[1]),
            "training-mode outputs": lambda: _digest(model_run()[0]["cls_outputs"], model_run()[0]["box_outputs"]),
            "batch-norm statistics after a step": lambda: _digest(model_run()[1]),
            "losses": lambda: _digest(*(model_run()[2][k] for k in sorted(model_run()[2]))),
            "detections": lambda: _digest(*(model_run()[3][k] for k in sorted(model_run()[3]))),
        }


class _Reference(dict):
    """A base's products, each computed the first time a comparison needs it: a base whose leaves all
    change an early product (an augmentation's) never runs its network or traces its training input."""

    def __init__(self, products: dict):
        super().__init__()
        self.products = products

    def __missing__(self, name: str) -> str:
        self[name] = self.products[name]()
        return self[name]


def _changes(products: dict, reference: dict[str, str], everything: bool) -> list[str]:
    """The products that differ from ``reference``: the first one found, or all when ``everything``."""
    changed = []
    for name, product in products.items():
        if product() != reference[name]:
            changed.append(name)
            if not everything:
                break
    return changed


def _concrete(path: str, bases: dict[str, PipelineConfig]) -> tuple[str, str]:
    """A base config and the leaf's path in it: the first base that writes the leaf's block (so a oneof
    member's fields are tried where that member is chosen); blocks no base writes are created by ``set``.
    An augmentation's leaf looks in EVERY_AUGMENTATION first (its knobs set where they show); the others
    never there: its chain can leave a batch with no box to match, where matcher and loss settings could
    not show."""
    parent = path.rsplit(".", 1)[0]
    augmenting = "data_augmentation_options" in path
    ordered = sorted(bases.items(), key=lambda item: (item[0] == EVERY_AUGMENTATION) != augmenting)
    for name, config in ordered:
        if name == EVERY_AUGMENTATION and not augmenting:
            continue
        for indices in itertools.product(range(48), repeat=parent.count("[*]")):  # 48: above the 39 operations
            concrete = parent
            for index in indices:
                concrete = concrete.replace("[*]", f"[{index}]", 1)
            if config.is_set(concrete):
                return name, concrete + path[len(parent) :]
    assert "[*]" not in path, f"no base config in this test writes the block of {path}: add one that does"
    return ordered[0][0], path


@pytest.fixture(scope="module")
def small_data(sample_src, tmp_path_factory) -> Path:
    """The 16-image sample in 4 shards per split, so that reading files in parallel shows."""
    from pipelines.data.convert import convert

    out = tmp_path_factory.mktemp("shards") / "tooth"
    convert(sample_src, out, label_map_path=LABEL_MAP, num_shards=4, progress=False)
    return out


@pytest.fixture(scope="module")
def alternatives(small_data, tmp_path_factory) -> dict[str, list[str]]:
    other_map = tmp_path_factory.mktemp("maps") / "other.pbtxt"
    other_map.write_text(LABEL_MAP.read_text().replace("caries", "lesion"))
    return {
        "train_input_reader.tf_record_input_reader.input_path": [f"{small_data}/val-*.tfrecord"],
        "eval_input_reader.tf_record_input_reader.input_path": [f"{small_data}/train-*.tfrecord"],
        "train_input_reader.label_map_path": [str(other_map)],
        "eval_input_reader.label_map_path": [str(other_map)],
        "train_config.fine_tune_checkpoint": ["zoo/checkpoint/ckpt-0"],
        "train_config.fine_tune_checkpoint_type": ["detection", "full"],
        "model.ssd.feature_extractor.type": ["ssd_mobilenet_v1_fpn_keras"],
        "model.faster_rcnn.feature_extractor.type": ["faster_rcnn_resnet101_fpn_keras"],
        # two values or none: dropping one or adding a third is refused
        f"{PAD_FIXED}.min_padded_size_ratio": ["1.3,1.2"],
        f"{PAD_FIXED}.max_padded_size_ratio": ["2.5,1.8"],
    }


def walk(leaves: list[str], bases: dict[str, str], alternatives: dict) -> tuple[dict, list, list, dict]:
    """Each leaf's outcome, the leaves accepted that change nothing, the NO_OPS that change something,
    and the reference behaviour of each base this walk needed."""
    behaviour = Behaviour()
    parsed = {name: parse_pipeline_config(text) for name, text in bases.items()}  # read only
    reference: dict[str, dict] = {}
    ignored, moved_no_ops, outcome = [], [], {}
    for leaf in leaves:
        base, path = _concrete(leaf, parsed)
        if base not in reference:
            reference[base] = _Reference(behaviour.of(bases[base]))
        value = parsed[base].get(path)
        changed = None
        tried = 0
        for candidate in _candidates(leaf.replace("[*]", ""), value, _field(leaf), alternatives):
            variant = parse_pipeline_config(bases[base])
            try:
                variant.set_many([(p, candidate) for p in [path, *LINKED.get(path, [])]])
            except OdliteError:
                continue
            tried += 1
            changed = _changes(behaviour.of(variant.to_text()), reference[base], everything=leaf in NO_OPS)
            if changed:
                break
        if leaf in NO_OPS:
            outcome[leaf] = "no-op"
            if changed:
                moved_no_ops.append(f"{leaf} changes {changed}")
        elif changed:
            outcome[leaf] = f"changes {changed[0]}"
        elif tried:
            ignored.append(f"{leaf} (tried {tried} value(s); {base} config)")
        else:
            outcome[leaf] = "refused"
    return outcome, ignored, moved_no_ops, {base: dict(computed) for base, computed in reference.items()}


@pytest.mark.slow
def test_every_leaf_is_honoured_refused_or_a_listed_no_op(small_data, alternatives):
    bases = _bases(small_data)
    leaves = supported_leaves()
    assert set(NO_OPS) <= {leaf.replace("[*]", "") for leaf in leaves}, "NO_OPS names a field odlite does not accept"
    walked = in_two_processes(walk, leaves, bases, alternatives)
    outcome = {leaf: said for half in walked for leaf, said in half[0].items()}
    ignored = [leaf for half in walked for leaf in half[1]]
    moved_no_ops = [leaf for half in walked for leaf in half[2]]
    # The comparison itself must be deterministic: two processes, nothing shared, the same references.
    (_, _, _, first), (_, _, _, second) = walked
    shared = set(first) & set(second)
    differing = {
        (base, key)
        for base in shared
        for key in set(first[base]) & set(second[base])
        if first[base][key] != second[base][key]
    }
    assert shared and not differing, differing
    print(json.dumps(outcome, indent=1))
    assert not ignored, "accepted but nothing changes; honour them, refuse them or add them to NO_OPS: " + (
        "; ".join(ignored)
    )
    assert not moved_no_ops, "NO_OPS lists fields that do change something: " + "; ".join(moved_no_ops)
