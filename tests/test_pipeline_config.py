"""pipeline.config: the zoo file loads, round-trips and patches; every rejection names file:line: path: reason."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import FASTER_RCNN_CONFIG, supported_leaves

from pipelines.config import textproto
from pipelines.config.checks import COSINE
from pipelines.config.pipeline_config import (
    ALIASES,
    check_paths_resolved,
    load_pipeline_config,
    parse_pipeline_config,
    patch_config,
)
from pipelines.errors import OdliteError

ZOO_NAME = "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config"
ZOO = Path(__file__).resolve().parent / "data" / ZOO_NAME  # a copy, so a clean clone has it
TOOTH = Path(__file__).resolve().parents[1] / "configs" / "ssd_mobilenet_v2_fpnlite_320x320.config"
ZOO_TEXT = ZOO.read_text(encoding="utf-8")
SRC = "zoo.config"
NMS = "model.ssd.post_processing.batch_non_max_suppression"
BOX_PREDICTOR = "model.ssd.box_predictor.weight_shared_convolutional_box_predictor"
BATCH_NORMS = (
    f"{BOX_PREDICTOR}.conv_hyperparams.batch_norm",
    "model.ssd.feature_extractor.conv_hyperparams.batch_norm",
)


def zoo(*replacements: tuple[str, str]) -> str:
    """The zoo text with each (old, new) replaced once; old must occur."""
    text = ZOO_TEXT
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def problems(text: str) -> list[str]:
    with pytest.raises(OdliteError) as caught:
        parse_pipeline_config(text, SRC)
    return [str(p) for p in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# --- the zoo file --------------------------------------------------------------------------


def test_the_zoo_copies_are_the_files_users_download():
    """tests/data/SHA256SUMS holds the digests of the zoo's own files (taken from the reference
    copies users bring); an edit to a copy, which would make the zoo tests test something
    else, fails here."""
    data = Path(__file__).resolve().parent / "data"
    sums = [line.split(maxsplit=1) for line in (data / "SHA256SUMS").read_text().splitlines() if line.strip()]
    assert {name.strip() for _, name in sums} >= {ZOO_NAME, f"zoo_{ZOO_NAME.removesuffix('.config')}/pipeline.config"}
    for digest, name in sums:
        assert hashlib.sha256((data / name.strip()).read_bytes()).hexdigest() == digest, name


def test_zoo_loads_unchanged_and_get_returns_its_values():
    config = load_pipeline_config(ZOO)
    assert config.path == ZOO
    assert config.get("model.ssd.num_classes") == 90
    assert config.get("model.ssd.feature_extractor.type") == "ssd_mobilenet_v2_fpn_keras"
    assert config.get("model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios") == [1.0, 2.0, 0.5]
    assert config.get(f"{BOX_PREDICTOR}.class_prediction_bias_init") == -4.6
    assert config.get(f"{BOX_PREDICTOR}.conv_hyperparams.activation") == "RELU_6"
    assert config.get(f"{BOX_PREDICTOR}.conv_hyperparams.regularizer.l2_regularizer.weight") == 0.00004
    assert config.get(f"{NMS}.score_threshold") == 1e-8
    assert config.get(f"{COSINE}.learning_rate_base") == 0.08
    assert config.get(f"{COSINE}.warmup_learning_rate") == 0.026666
    assert config.get("train_config.batch_size") == 128
    assert config.get("train_config.fine_tune_checkpoint_version") == "V2"
    assert config.get("train_config.sync_replicas") is True
    assert config.get("eval_config.metrics_set") == ["coco_detection_metrics"]
    assert config.get("eval_input_reader.num_epochs") == 1
    assert config.get("train_input_reader.tf_record_input_reader.input_path") == [
        "PATH_TO_BE_CONFIGURED/train2017-?????-of-00256.tfrecord"
    ]


def test_get_applies_proto_defaults():
    config = load_pipeline_config(ZOO)
    assert config.get("model.ssd.loss.localization_loss.weighted_smooth_l1.delta") == 1.0
    assert config.get(f"{NMS}.use_class_agnostic_nms") is False
    assert config.get(f"{BATCH_NORMS[0]}.center") is True
    assert config.get(f"{BATCH_NORMS[0]}.train") is True
    assert config.get("train_input_reader.shuffle") is True  # unset: the .proto default
    assert config.get("eval_input_reader.shuffle") is False  # set
    assert config.get(f"{COSINE}.hold_base_rate_steps") == 0
    assert not config.is_set(f"{COSINE}.hold_base_rate_steps")
    assert config.is_set(f"{COSINE}.total_steps")
    assert config.is_set("model.ssd.similarity_calculator.iou_similarity")  # an empty block counts
    assert not config.is_set("train_config.optimizer.momentum_optimizer.learning_rate.constant_learning_rate")
    assert config.get("train_config.optimizer.momentum_optimizer.learning_rate.constant_learning_rate") == {
        "learning_rate": 0.002
    }
    assert config.get("model.ssd.loss.classification_loss.weighted_sigmoid_focal") == {"alpha": 0.25, "gamma": 2.0}


def test_which_names_the_chosen_member():
    config = load_pipeline_config(ZOO)
    assert config.which("model") == "ssd"
    assert config.which("model.ssd.image_resizer") == "fixed_shape_resizer"
    assert config.which("model.ssd.box_coder") == "faster_rcnn_box_coder"
    assert config.which("model.ssd.matcher") == "argmax_matcher"
    assert config.which("train_config.optimizer") == "momentum_optimizer"
    assert config.which("train_config.optimizer.momentum_optimizer.learning_rate") == "cosine_decay_learning_rate"
    assert config.which("model.ssd.feature_extractor.conv_hyperparams.initializer") == "random_normal_initializer"
    assert config.which("train_config.data_augmentation_options[1]") == "random_crop_image"
    assert config.which("model.ssd.feature_extractor.conv_hyperparams") == "batch_norm"


def test_unknown_paths_raise_key_error():
    config = load_pipeline_config(ZOO)
    for path in ("model.ssd.num_clases", "train_config.batch_size.x", "nothing", "model.center_net.num_classes"):
        with pytest.raises(KeyError):
            config.get(path)
        with pytest.raises(KeyError):
            config.is_set(path)
    with pytest.raises(KeyError, match="did you mean 'num_classes'"):
        config.get("model.ssd.num_clases")
    with pytest.raises(KeyError):
        config.which("model.ssd.num_classes")


def test_augmentations_in_order_with_defaults():
    config = load_pipeline_config(ZOO)
    assert config.augmentations() == [
        ("random_horizontal_flip", {"probability": 0.5}),
        (
            "random_crop_image",
            {
                "min_object_covered": 0.0,
                "min_aspect_ratio": 0.75,
                "max_aspect_ratio": 3.0,
                "min_area": 0.75,
                "max_area": 1.0,
                "overlap_thresh": 0.0,
                "clip_boxes": True,
                "random_coef": 0.0,
            },
        ),
    ]


def test_supported_augmentations_and_ssd_random_crop_operations():
    text = zoo(
        (
            "  data_augmentation_options {\n    random_horizontal_flip {\n    }\n  }",
            "  data_augmentation_options { ssd_random_crop { } }\n"
            "  data_augmentation_options { ssd_random_crop { operations {\n"
            "    min_area: 0.1 max_area: 1.0 min_aspect_ratio: 0.5 max_aspect_ratio: 2.0 } } }\n"
            "  data_augmentation_options { random_adjust_brightness { max_delta: 0.1 } }\n"
            "  data_augmentation_options { random_adjust_contrast { } }\n"
            "  data_augmentation_options { random_adjust_hue { } }\n"
            "  data_augmentation_options { random_adjust_saturation { min_delta: 0.9 } }",
        )
    )
    steps = parse_pipeline_config(text, SRC).augmentations()
    assert [name for name, _ in steps] == [
        "ssd_random_crop",
        "ssd_random_crop",
        "random_adjust_brightness",
        "random_adjust_contrast",
        "random_adjust_hue",
        "random_adjust_saturation",
        "random_crop_image",
    ]
    assert steps[0][1] == {}
    assert steps[1][1]["operations"][0]["min_area"] == 0.1
    assert steps[1][1]["operations"][0]["clip_boxes"] is True
    assert steps[2][1] == {"max_delta": 0.1}
    assert steps[3][1] == {"min_delta": 0.8, "max_delta": 1.25}
    assert steps[5][1] == {"min_delta": 0.9, "max_delta": 1.25}
    # An operation's ranges have no .proto default: left out they are 0, which no crop can meet.
    found = problems(text.replace(" min_aspect_ratio: 0.5 max_aspect_ratio: 2.0", ""))
    assert any("operations[0].max_aspect_ratio: must be more than 0.0, got 0.0 (left out" in p for p in found)


def test_placeholder_paths_load_and_are_reported_when_training_needs_them():
    config = load_pipeline_config(ZOO)
    assert config.unresolved_paths() == [
        "train_config.fine_tune_checkpoint",
        "train_input_reader.label_map_path",
        "train_input_reader.tf_record_input_reader.input_path[0]",
        "eval_input_reader.label_map_path",
        "eval_input_reader.tf_record_input_reader.input_path[0]",
    ]
    assert config.get("eval_input_reader.tf_record_input_reader.input_path[0]").startswith("PATH_TO_BE_CONFIGURED/")
    with pytest.raises(OdliteError) as caught:
        check_paths_resolved(config)
    lines = [str(p) for p in caught.value.problems]
    assert len(lines) == 5
    assert lines[0] == (
        f"{ZOO}:{line_of(ZOO_TEXT, 'fine_tune_checkpoint:')}: train_config.fine_tune_checkpoint: still "
        '"PATH_TO_BE_CONFIGURED/mobilenet_v2.ckpt-1"; point it at a real file with odlite config '
        '--set fine_tune_checkpoint=... (or to "" to train from scratch)'
    )
    assert "--set train_input_path=..." in lines[2]


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_keeps_values_and_comments():
    first = parse_pipeline_config(ZOO_TEXT, SRC)
    text = first.to_text()
    second = parse_pipeline_config(text, SRC)
    assert second.as_dict() == first.as_dict()
    assert second.to_text() == text
    assert text.startswith("# SSD with Mobilenet v2 FPN-lite (go/fpn-lite) feature extractor, shared box\n")
    assert "#\n# Achieves 22.2 mAP on COCO17 Val\n\nmodel {\n  ssd {\n" in text
    assert "          activation: RELU_6\n" in text  # the trailing ',' is dropped, the value kept
    assert "        aspect_ratios: [1.0, 2.0, 0.5]\n" in text
    assert "          learning_rate_base: .08\n" in text  # numbers keep their spelling
    assert "      type: 'ssd_mobilenet_v2_fpn_keras'\n" in text
    assert "}\n\ntrain_config {\n" in text  # blank lines between top-level blocks survive


def test_comments_above_fields_inside_blocks_and_at_the_end_survive():
    text = (
        "# header\n\n"
        "a {  # opens a\n"
        "  # above b\n"
        "  b: 1  # after b\n"
        "\n"
        "  # above c, after a blank line\n"
        "  c: 'x'\n"
        "  # last in a\n"
        "}\n"
        "# the end\n"
    )
    tree = textproto.parse(text)
    assert textproto.to_text(tree) == text
    first = tree.fields[0]
    assert first.comments == ["# header", ""]
    assert first.message.open_comment == "# opens a"
    assert first.message.fields[0].comments == ["# above b"]
    assert first.message.fields[0].trailing == "# after b"
    assert first.message.fields[1].blank_before
    assert first.message.tail_comments == ["# last in a"]
    assert tree.tail_comments == ["# the end"]


def test_text_format_spellings():
    tree = textproto.parse(
        "a: { x: 1, y: -4.6; z: .08 }\n"
        'b < s: \'it\\\'s\' t: "tab\\there" u: "con" \'cat\' v: "\\x41\\101\\u00e9" >\n'
        "c: [1.0, 2.0, 0.5]\n"
        "c: 3\n"
        "d: RELU_6,\n"
        "e: 1e-8 f: true g: V2\n"
        "h: [{ k: 1 }, { k: 2 }]\n"
        "i: []\n"
    )
    a, b, c, c2, d, e, f, g, h1, h2, i = tree.fields
    assert [(x.name, x.scalars[0].raw) for x in a.message.fields] == [("x", "1"), ("y", "-4.6"), ("z", ".08")]
    texts = [x.scalars[0].text for x in b.message.fields]
    assert texts == ["it's", "tab\there", "concat", "AAé"]
    assert c.list_form and [s.raw for s in c.scalars] == ["1.0", "2.0", "0.5"]
    assert c2.name == "c" and not c2.list_form
    assert (d.scalars[0].kind, d.scalars[0].raw) == ("ident", "RELU_6")
    assert [(x.name, x.scalars[0].kind) for x in (e, f, g)] == [("e", "number"), ("f", "ident"), ("g", "ident")]
    assert (h1.name, h2.name) == ("h", "h") and h2.message.fields[0].scalars[0].raw == "2"
    assert i.list_form and i.scalars == []
    assert (a.line, a.col, b.line, b.message.fields[1].col) == (1, 1, 2, 16)
    again = textproto.parse(textproto.to_text(tree))
    assert textproto.to_text(again) == textproto.to_text(tree)
    assert [x.scalars[0].text for x in again.fields[1].message.fields] == texts


@pytest.mark.parametrize(
    "text, where, reason",
    [
        ("a {\n  b: 1\n", "3:1", "end of file inside the '{' opened on line 1:3"),
        ("a: 1\n}\n", "2:1", "unexpected '}'"),
        ("a {\n  b: 1 >\n", "2:8", "unexpected '>', expected '}'"),
        ("a: 'open\n", "1:4", "unterminated string (strings end on the line they start)"),
        ("a 1\n", "1:3", "expected ':' or '{' after 'a', got '1'"),
        ("a: [1, 2\n", "2:1", "expected ',' or ']' in the list, got end of file"),
        ("a: \n", "2:1", "expected a value, got end of file"),
        ("x {\n  a: 1.2.3\n}\n", "2:6", "unexpected character '1'"),
        ("[ext]: 1\n", "1:1", "expected a field name, got '[' (extension and Any fields are not supported)"),
        ("a: 'bad \\q'\n", "1:9", "unknown escape '\\q' in string"),
        ("a: 1 @\n", "1:6", "unexpected character '@'"),
    ],
)
def test_syntax_errors_name_line_and_column(text, where, reason):
    with pytest.raises(OdliteError) as caught:
        textproto.parse(text, "bad.config")
    assert str(caught.value) == f"bad.config:{where}: {reason}"


def test_syntax_error_in_a_pipeline_config_file(tmp_path):
    path = tmp_path / "broken.config"
    path.write_text(zoo(("      score_converter: SIGMOID", "      score_converter SIGMOID")))
    with pytest.raises(OdliteError) as caught:
        load_pipeline_config(path)
    line = line_of(ZOO_TEXT, "score_converter")
    assert str(caught.value) == f"{path}:{line}:23: expected ':' or '{{' after 'score_converter', got 'SIGMOID'"


# --- rejections ------------------------------------------------------------------------------


def test_unknown_field_with_did_you_mean():
    found = problems(zoo(("num_classes: 90", "num_clases: 90")))
    line = line_of(ZOO_TEXT, "num_classes")
    assert f"{SRC}:{line}: model.ssd: unknown field 'num_clases'; did you mean 'num_classes'?" in found
    assert f"{SRC}:{line_of(ZOO_TEXT, 'ssd {')}: model.ssd.num_classes: missing: odlite needs it" in found


def test_unknown_top_level_field():
    found = problems(zoo(("eval_config: {", "evaluation_config: {")))
    line = line_of(ZOO_TEXT, "eval_config")
    assert found == [f"{SRC}:{line}: unknown field 'evaluation_config'; did you mean 'eval_config'?"]


def test_real_od_api_field_that_odlite_does_not_support():
    text = zoo(("    num_classes: 90\n", "    num_classes: 90\n    add_background_class: false\n"))
    line = line_of(text, "add_background_class")
    assert problems(text) == [
        f"{SRC}:{line}: model.ssd.add_background_class: not supported: odlite's SSD has no equivalent"
    ]


def test_unsupported_oneof_member():
    text = zoo(
        (
            "fixed_shape_resizer {\n        height: 320\n        width: 320\n      }",
            "keep_aspect_ratio_resizer {\n        min_dimension: 320\n      }",
        )
    )
    line = line_of(text, "keep_aspect_ratio_resizer")
    assert problems(text) == [
        f"{SRC}:{line}: model.ssd.image_resizer.keep_aspect_ratio_resizer: "
        "not supported: only 'fixed_shape_resizer' for SSD"
    ]


def test_unsupported_value_of_a_supported_field():
    text = zoo(("type: 'ssd_mobilenet_v2_fpn_keras'", "type: 'ssd_mobilenet_v1_fpn_keras'"))
    line = line_of(text, "ssd_mobilenet_v1_fpn_keras")
    assert problems(text) == [
        f"{SRC}:{line}: model.ssd.feature_extractor.type: not supported: only 'ssd_mobilenet_v2_fpn_keras' "
        "(SSD MobileNetV2 FPNLite)"
    ]


def test_bad_enum_value_and_unsupported_enum_value():
    text = zoo(("activation: RELU_6,", "activation: RELU6,"), ("activation: RELU_6,", "activation: SWISH,"))
    first, second = line_of(text, "RELU6"), line_of(text, "SWISH")
    assert problems(text) == [
        f"{SRC}:{first}: {BOX_PREDICTOR}.conv_hyperparams.activation: expects one of NONE, RELU, RELU_6, SWISH, "
        "got RELU6; did you mean 'RELU_6'?",
        f"{SRC}:{second}: model.ssd.feature_extractor.conv_hyperparams.activation: not supported: "
        "only 'RELU_6', 'RELU', 'NONE'",
    ]


def test_two_members_of_a_oneof():
    text = zoo(("learning_rate: {\n", "learning_rate: {\n        constant_learning_rate { learning_rate: 0.01 }\n"))
    line = line_of(text, "cosine_decay_learning_rate")
    first = line_of(text, "constant_learning_rate")
    assert problems(text) == [
        f"{SRC}:{line}: train_config.optimizer.momentum_optimizer.learning_rate: 'constant_learning_rate' "
        f"(line {first}) and 'cosine_decay_learning_rate' are both set; learning_rate takes one of "
        "constant_learning_rate, exponential_decay_learning_rate, manual_step_learning_rate, "
        "cosine_decay_learning_rate"
    ]


@pytest.mark.parametrize(
    "old, new, reason",
    [
        ("batch_size: 128", 'batch_size: "eight"', 'train_config.batch_size: expects an integer, got "eight"'),
        ("batch_size: 128", "batch_size: 12.5", "train_config.batch_size: expects an integer, got 12.5"),
        ("batch_size: 128", "batch_size: -1", "train_config.batch_size: -1 is out of range for uint32"),
        ("sync_replicas: true", "sync_replicas: yes", "train_config.sync_replicas: expects true or false, got yes"),
        (
            'metrics_set: "coco_detection_metrics"',
            "metrics_set: coco_detection_metrics",
            "eval_config.metrics_set: expects a quoted string, got coco_detection_metrics",
        ),
        (
            "gamma: 2.0",
            "gamma: two",
            "model.ssd.loss.classification_loss.weighted_sigmoid_focal.gamma: expects a number, got two",
        ),
        ("num_classes: 90", "num_classes: [1, 2]", "model.ssd.num_classes: takes one value, not a list"),
        (
            "num_classes: 90",
            "num_classes { }",
            "model.ssd.num_classes: expects a value (num_classes: ...), not a block",
        ),
        (
            "iou_similarity {\n      }",
            "iou_similarity: 1",
            "model.ssd.similarity_calculator.iou_similarity: is a block: write iou_similarity { ... }",
        ),
    ],
)
def test_type_errors(old, new, reason):
    text = zoo((old, new))
    line = line_of(text, new)
    assert problems(text) == [f"{SRC}:{line}: {reason}"]


@pytest.mark.parametrize(
    "old, new, needle, reason",
    [
        ("num_classes: 90", "num_classes: 0", "num_classes", "model.ssd.num_classes: must be at least 1, got 0"),
        (
            "kernel_size: 3",
            "kernel_size: 5",
            "kernel_size",
            f"{BOX_PREDICTOR}.kernel_size: not supported: only 5".replace("only 5", "only 3"),
        ),
        (
            "ignore_thresholds: false",
            "ignore_thresholds: true",
            "ignore_thresholds",
            "model.ssd.matcher.argmax_matcher.ignore_thresholds: not supported: only false",
        ),
        (
            "use_moving_average: false",
            "use_moving_average: true",
            "use_moving_average: true",
            "train_config.optimizer.use_moving_average: not supported: only false "
            "(odlite keeps no moving average of the weights)",
        ),
        (
            "startup_delay_steps: 0",
            "startup_delay_steps: 15",
            "startup_delay_steps",
            "train_config.startup_delay_steps: not supported: only 0.0",
        ),
        (
            'fine_tune_checkpoint_type: "classification"',
            'fine_tune_checkpoint_type: "segmentation"',
            "fine_tune_checkpoint_type",
            "train_config.fine_tune_checkpoint_type: not supported: only 'classification', 'detection', 'full'",
        ),
        (
            "score_converter: SIGMOID",
            "score_converter: SOFTMAX",
            "score_converter",
            "model.ssd.post_processing.score_converter: not supported: only 'SIGMOID' for SSD "
            "(its classification loss is a sigmoid focal loss)",
        ),
        (
            'metrics_set: "coco_detection_metrics"',
            'metrics_set: "pascal_voc_detection_metrics"',
            "metrics_set",
            "eval_config.metrics_set: not supported: only 'coco_detection_metrics' (COCO mAP from pycocotools)",
        ),
    ],
)
def test_values_odlite_cannot_honour(old, new, needle, reason):
    text = zoo((old, new))
    assert problems(text) == [f"{SRC}:{line_of(text, needle)}: {reason}"]


def test_a_left_out_field_whose_default_odlite_cannot_honour():
    text = zoo(("        force_match_for_each_row: true\n", ""))
    line = line_of(text, "argmax_matcher")
    assert problems(text) == [
        f"{SRC}:{line}: model.ssd.matcher.argmax_matcher.force_match_for_each_row: not supported: only true "
        "(left out, so the OD API default false applies)"
    ]


def test_unsupported_augmentation():
    text = zoo(("random_horizontal_flip {\n    }", "scale_boxes_to_pixel_coordinates {\n    }"))
    line = line_of(text, "scale_boxes_to_pixel_coordinates")
    assert problems(text) == [
        f"{SRC}:{line}: train_config.data_augmentation_options[0].scale_boxes_to_pixel_coordinates: not supported: "
        "it turns boxes into pixel coordinates for the OD API's keypoint and mask heads; odlite's boxes stay "
        "normalised to [0, 1] from the records to the loss"
    ]


def test_keypoint_flip_permutation_is_not_supported():
    text = zoo(
        ("random_horizontal_flip {\n    }", "random_horizontal_flip {\n      keypoint_flip_permutation: 1\n    }")
    )
    line = line_of(text, "keypoint_flip_permutation")
    path = "train_config.data_augmentation_options[0].random_horizontal_flip.keypoint_flip_permutation"
    assert problems(text) == [f"{SRC}:{line}: {path}: not supported: odlite detects boxes, not keypoints"]


def test_levels_are_checked_against_each_other():
    text = zoo(
        (
            "min_level: 3\n        max_level: 7\n        additional",
            "min_level: 4\n        max_level: 7\n        additional",
        )
    )
    line = line_of(text, "multiscale_anchor_generator {\n        min_level: 3")
    anchors = "model.ssd.anchor_generator.multiscale_anchor_generator"
    assert problems(text) == [
        f"{SRC}:{line + 1}: {anchors}.min_level: must equal model.ssd.feature_extractor.fpn.min_level (4): "
        "anchors sit on the FPN levels"
    ]
    text = zoo(
        (
            "min_level: 3\n        max_level: 7\n        additional",
            "min_level: 2\n        max_level: 8\n        additional",
        )
    )
    found = problems(text)
    fpn_line = line_of(text, "min_level: 2")
    assert f"{SRC}:{fpn_line}: model.ssd.feature_extractor.fpn.min_level: must be between 3 and 5, got 2" in found
    assert f"{SRC}:{fpn_line + 1}: model.ssd.feature_extractor.fpn.max_level: must be between 2 and 7, got 8" in found


def test_input_size_must_suit_the_fpn():
    text = zoo(("height: 320\n        width: 320", "height: 300\n        width: 300"))
    line = line_of(text, "height: 300")
    reason = "not supported: must be a multiple of 32 from 128 to 1024 (the FPN halves it 5 times), got 300"
    resizer = "model.ssd.image_resizer.fixed_shape_resizer"
    assert problems(text) == [
        f"{SRC}:{line}: {resizer}.height: {reason}",
        f"{SRC}:{line + 1}: {resizer}.width: {reason}",
    ]


def test_non_square_input_is_rejected():
    text = zoo(("width: 320", "width: 384"))
    assert problems(text) == [
        f"{SRC}:{line_of(text, 'width: 384')}: model.ssd.image_resizer.fixed_shape_resizer.width: not supported: "
        "must equal height (320), got 384"
    ]


def test_missing_block_and_empty_choice():
    text = zoo(("eval_input_reader: {", "eval_input_reader_removed: {"))
    assert f"{SRC}: eval_input_reader: missing: odlite needs it" in problems(text)
    text = zoo(("      faster_rcnn_box_coder {\n", "      faster_rcnn_box_coder_x {\n"))
    found = problems(text)
    line = line_of(text, "box_coder {")
    assert f"{SRC}:{line}: model.ssd.box_coder: needs one of: faster_rcnn_box_coder" in found


def test_field_set_twice():
    text = zoo(("num_classes: 90\n", "num_classes: 90\n    num_classes: 3\n"))
    first = line_of(text, "num_classes: 90")
    assert problems(text) == [f"{SRC}:{first + 1}: model.ssd.num_classes: set more than once (first on line {first})"]


def test_checkpoint_needs_v2():
    text = zoo(("fine_tune_checkpoint_version: V2\n", ""))
    line = line_of(text, "train_config")
    assert problems(text) == [
        f"{SRC}:{line}: train_config.fine_tune_checkpoint_version: must be V2 when fine_tune_checkpoint is set "
        "(odlite reads TF2 checkpoints)"
    ]


def test_every_problem_is_reported_at_once():
    text = zoo(
        ("num_classes: 90", "num_classes: 0"),
        ("activation: RELU_6,", "activation: RELU6,"),
        ("batch_size: 128", "batch_size: 128\n  gradient_clipping_by_norm: 10.0"),
        ("shuffle: false", "shuffle: false\n  shuffle_buffer_size: 10"),
    )
    with pytest.raises(OdliteError) as caught:
        parse_pipeline_config(text, SRC)
    assert str(caught.value).startswith(f"{SRC}: 4 problems\n  {SRC}:13: model.ssd.num_classes")
    found = [str(p) for p in caught.value.problems]
    assert [p.split(": ")[1] for p in found] == [
        "model.ssd.num_classes",
        f"{BOX_PREDICTOR}.conv_hyperparams.activation",
        "train_config.gradient_clipping_by_norm",
        "eval_input_reader.shuffle_buffer_size",
    ]
    assert found[3].endswith("not supported: odlite's input pipeline has no equivalent")


# --- set and aliases ---------------------------------------------------------------------------


def test_aliases_point_at_supported_values():
    config = load_pipeline_config(ZOO)
    for alias, paths in ALIASES.items():
        for path in paths:
            config.get(path)  # resolves, and is not a block
            assert not isinstance(config.get(path), dict), (alias, path)


def test_batch_norm_decay_sets_both_batch_norms():
    config = load_pipeline_config(ZOO)
    changes = config.set("batch_norm_decay", "0.99")
    assert changes == [(f"{b}.decay", 0.997, 0.99) for b in BATCH_NORMS]
    assert config.set("batch_norm_epsilon", "1e-4") == [(f"{b}.epsilon", 0.001, 0.0001) for b in BATCH_NORMS]
    written = parse_pipeline_config(config.to_text())
    assert [(written.get(f"{b}.decay"), written.get(f"{b}.epsilon")) for b in BATCH_NORMS] == [(0.99, 0.0001)] * 2


def test_num_steps_moves_the_cosine_schedule_too():
    config = load_pipeline_config(ZOO)
    changes = config.set("num_steps", "20000")
    assert changes == [("train_config.num_steps", 50000, 20000), (f"{COSINE}.total_steps", 50000, 20000)]
    text = config.to_text()
    assert "  num_steps: 20000\n" in text and "          total_steps: 20000\n" in text


def test_num_steps_with_a_constant_schedule_sets_only_num_steps():
    text = zoo(
        (
            "cosine_decay_learning_rate {\n          learning_rate_base: .08\n          total_steps: 50000\n"
            "          warmup_learning_rate: .026666\n          warmup_steps: 1000\n        }",
            "constant_learning_rate { learning_rate: 0.01 }",
        )
    )
    config = parse_pipeline_config(text)
    assert config.which("train_config.optimizer.momentum_optimizer.learning_rate") == "constant_learning_rate"
    assert config.set("num_steps", "100") == [("train_config.num_steps", 50000, 100)]
    assert not config.is_set(COSINE)


def test_settings_applied_together_need_not_be_valid_one_by_one():
    config = load_pipeline_config(ZOO)
    with pytest.raises(OdliteError, match="warmup_steps: must be at most total_steps"):
        config.set("num_steps", "600")  # warmup_steps is still 1000
    changes = config.set_many([("num_steps", "600"), ("warmup_steps", "50")])
    assert [new for _, _, new in changes] == [600, 600, 50]


def test_aspect_ratios_take_a_list():
    config = load_pipeline_config(ZOO)
    path = ALIASES["aspect_ratios"][0]
    assert config.set("aspect_ratios", "1.0,2.0") == [(path, [1.0, 2.0, 0.5], [1.0, 2.0])]
    assert config.set("aspect_ratios", "[0.5, 1.0, 2.0, 3.0]")[0][2] == [0.5, 1.0, 2.0, 3.0]
    assert "aspect_ratios: [0.5, 1.0, 2.0, 3.0]\n" in config.to_text()
    with pytest.raises(OdliteError, match="aspect_ratios: expects a number, got wide"):
        config.set("aspect_ratios", "1.0,wide")


def test_paths_and_strings():
    config = load_pipeline_config(ZOO)
    changes = config.set("label_map_path", "label_maps/tooth label map.pbtxt")
    assert [c[0] for c in changes] == ["train_input_reader.label_map_path", "eval_input_reader.label_map_path"]
    assert changes[0][2] == "label_maps/tooth label map.pbtxt"
    config.set("train_input_path", "data/a-*.tfrecord,data/b-*.tfrecord")
    config.set("eval_input_path", "'data/val-*.tfrecord'")
    config.set("fine_tune_checkpoint", "")
    text = config.to_text()
    assert '  label_map_path: "label_maps/tooth label map.pbtxt"\n' in text
    assert '    input_path: ["data/a-*.tfrecord", "data/b-*.tfrecord"]\n' in text
    assert "    input_path: 'data/val-*.tfrecord'\n" in text
    assert '  fine_tune_checkpoint: ""\n' in text
    assert parse_pipeline_config(text).unresolved_paths() == []


def test_set_creates_missing_blocks_and_by_dotted_path():
    text = zoo(('eval_config: {\n  metrics_set: "coco_detection_metrics"\n  use_moving_averages: false\n}\n', ""))
    config = parse_pipeline_config(text)
    assert not config.is_set("eval_config")
    assert config.set("eval_config.include_metrics_per_category", "true") == [
        ("eval_config.include_metrics_per_category", False, True)
    ]
    assert config.to_text().endswith("eval_config {\n  include_metrics_per_category: true\n}\n")
    config.set("train_config.data_augmentation_options[1].random_crop_image.random_coef", "0.1")
    assert config.augmentations()[1][1]["random_coef"] == 0.1


def test_rejected_set_changes_nothing():
    config = load_pipeline_config(ZOO)
    before = config.to_text()
    with pytest.raises(OdliteError) as caught:
        config.set("model.ssd.feature_extractor.type", "ssd_resnet50_v1_fpn_keras")
    assert str(caught.value) == (
        "cannot set model.ssd.feature_extractor.type=ssd_resnet50_v1_fpn_keras\n"
        f"  {ZOO}:{line_of(ZOO_TEXT, 'type:')}: model.ssd.feature_extractor.type: not supported: only "
        "'ssd_mobilenet_v2_fpn_keras' (SSD MobileNetV2 FPNLite)"
    )
    with pytest.raises(OdliteError, match="batch_size=eight: train_config.batch_size: expects an integer, got eight"):
        config.set("batch_size", "eight")
    with pytest.raises(
        OdliteError, match=r"'cosine_decay_learning_rate' \(line 166\) and 'constant_learning_rate' are"
    ):
        config.set("train_config.optimizer.momentum_optimizer.learning_rate.constant_learning_rate.learning_rate", "1")
    with pytest.raises(OdliteError, match="model.ssd.box_coder is a block"):
        config.set("model.ssd.box_coder", "1")
    assert config.to_text() == before


def test_unknown_setting_did_you_mean():
    config = load_pipeline_config(ZOO)
    with pytest.raises(OdliteError) as caught:
        config.set("batchsize", "8")
    assert str(caught.value) == "unknown setting 'batchsize'; did you mean 'batch_size'?"
    with pytest.raises(
        OdliteError, match="did you mean 'train_config.optimizer.momentum_optimizer.momentum_optimizer_value'"
    ):
        config.set("momentum_optimizer_value", "0.8")
    with pytest.raises(OdliteError, match="did you mean 'learning_rate_base'"):
        config.set("learning_rate_bse", "0.1")


# --- non-finite numbers -------------------------------------------------------------------------

FLOAT_LEAVES = supported_leaves(("float", "double"))
FRCNN_TEXT = FASTER_RCNN_CONFIG.read_text(encoding="utf-8")


def _with_value(text: str, leaf: str, raw: str) -> str:
    """``text`` with the field at ``leaf`` written as ``raw``: its blocks made where missing (the first
    of a repeated block's), an earlier value replaced."""
    root = textproto.parse(text)
    node = root
    *blocks, name = leaf.replace("[*]", "").split(".")
    for block in blocks:
        found = node.first(block)
        if found is None:
            found = textproto.Field(block, message=textproto.Message())
            node.fields.append(found)
        node = found.message
    node.fields = [f for f in node.fields if f.name != name]
    node.fields.append(textproto.Field(name, scalars=[textproto.Scalar("ident", raw)]))
    return textproto.to_text(root)


@pytest.mark.parametrize("leaf", FLOAT_LEAVES)
def test_every_float_field_refuses_nan_and_infinity_with_its_line(leaf):
    base = FRCNN_TEXT if leaf.startswith("model.faster_rcnn.") else ZOO_TEXT
    name = leaf.rsplit(".", 1)[1]
    for raw in ("nan", "inf", "-inf"):
        text = _with_value(base, leaf, raw)
        line = text.splitlines().index(next(x for x in text.splitlines() if x.strip() == f"{name}: {raw}")) + 1
        expected = f"{SRC}:{line}: {leaf.replace('[*]', '[0]')}: must be a finite number, got {raw}"
        assert expected in problems(text)


def test_float_overflow_is_infinity_too():
    text = zoo(("iou_threshold: 0.6", "iou_threshold: 1e39"))
    assert problems(text) == [
        f"{SRC}:{line_of(text, '1e39')}: {NMS}.iou_threshold: must be a finite number, got 1e39, "
        "which is infinite as a 32-bit float"
    ]


@pytest.mark.parametrize("setting", ["learning_rate_base=nan", "batch_norm_decay=inf", "aspect_ratios=1.0,NaN"])
def test_set_refuses_nan_and_infinity(setting, tmp_path):
    out = tmp_path / "out.config"
    with pytest.raises(OdliteError, match=r"must be a finite number, got -?(nan|inf|NaN)") as caught:
        patch_config(ZOO, out, [setting])
    assert str(caught.value).startswith(setting)
    assert not out.exists()


def test_config_verb_refuses_a_nan_in_the_file(tmp_path, capsys):
    from pipelines.cli import main

    base = tmp_path / "base.config"
    base.write_text(zoo(("decay: 0.997", "decay: nan")))
    assert main(["config", str(base), "--out", str(tmp_path / "out.config")]) == 1
    line = line_of(base.read_text(), "decay: nan")
    path = f"{BATCH_NORMS[0]}.decay"
    assert f"{base}:{line}: {path}: must be a finite number, got nan" in capsys.readouterr().err
    assert not (tmp_path / "out.config").exists()


# --- patch_config and the CLI verb ----------------------------------------------------------------


def test_patch_config_writes_a_loadable_file(tmp_path):
    out = tmp_path / "sub" / "tooth.config"
    changes = patch_config(ZOO, out, ["batch_size=8", "num_classes=2", "label_map_path=label_maps/x.pbtxt"])
    assert changes[:2] == [("train_config.batch_size", 128, 8), ("model.ssd.num_classes", 90, 2)]
    written = load_pipeline_config(out)
    assert (written.get("train_config.batch_size"), written.get("model.ssd.num_classes")) == (8, 2)
    assert written.get("eval_input_reader.label_map_path") == "label_maps/x.pbtxt"
    assert out.read_text().startswith("# SSD with Mobilenet v2 FPN-lite")
    assert [p.name for p in out.parent.iterdir()] == ["tooth.config"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not a private temporary one


def test_patch_config_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out.config"
    out.write_text("keep me")
    with pytest.raises(OdliteError, match="already exists; pass --overwrite to replace it"):
        patch_config(ZOO, out, ["batch_size=8"])
    assert out.read_text() == "keep me"
    patch_config(ZOO, out, ["batch_size=8"], overwrite=True)
    assert load_pipeline_config(out).get("train_config.batch_size") == 8


def test_patch_config_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "out.config"
    out.write_text("old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        patch_config(ZOO, out, ["batch_size=8"], overwrite=True)
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.config"]  # no temporary file left behind


def test_patch_config_rejects_bad_assignments_and_writes_nothing(tmp_path):
    out = tmp_path / "out.config"
    with pytest.raises(OdliteError, match="unknown setting 'num_clases'; did you mean 'num_classes'"):
        patch_config(ZOO, out, ["batch_size=8", "num_clases=2"])
    with pytest.raises(OdliteError, match="--set batch_size: expected NAME=VALUE"):
        patch_config(ZOO, out, ["batch_size"])
    with pytest.raises(OdliteError, match="model.ssd.num_classes: must be at least 1, got 0"):
        patch_config(ZOO, out, ["num_classes=0"])
    assert not out.exists()


def _cli():
    from pipelines.cli import build_parser

    return build_parser()


def test_config_verb_end_to_end(tmp_path, capsys):
    out = tmp_path / "new.config"
    args = _cli().parse_args(
        ["config", str(ZOO), "--out", str(out), "--set", "batch_size=8", "--set", "aspect_ratios=1.0,2.0"]
    )
    assert args.run(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == [
        "train_config.batch_size: 128 -> 8",
        "model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios: [1.0, 2.0, 0.5] -> [1.0, 2.0]",
    ]
    assert "note: train_config.fine_tune_checkpoint still holds PATH_TO_BE_CONFIGURED; training needs it set" in printed
    assert printed[-1] == f"wrote {out}"
    assert load_pipeline_config(out).get("train_config.batch_size") == 8

    again = _cli().parse_args(["config", str(ZOO), "--out", str(out)])
    with pytest.raises(OdliteError, match="already exists"):
        again.run(again)
    again = _cli().parse_args(["config", str(ZOO), "--out", str(out), "--overwrite"])
    assert again.run(again) == 0
    assert load_pipeline_config(out).get("train_config.batch_size") == 128


# --- the tooth config ------------------------------------------------------------------------------


def test_tooth_config_loads_with_the_tooth_settings():
    config = load_pipeline_config(TOOTH)
    assert config.unresolved_paths() == []
    check_paths_resolved(config)
    assert config.get("model.ssd.num_classes") == 2
    assert config.get("train_input_reader.label_map_path") == "label_maps/tooth_label_map.pbtxt"
    assert config.get("eval_input_reader.label_map_path") == "label_maps/tooth_label_map.pbtxt"
    assert config.get("train_input_reader.tf_record_input_reader.input_path") == ["data/tooth/train-*.tfrecord"]
    assert config.get("eval_input_reader.tf_record_input_reader.input_path") == ["data/tooth/val-*.tfrecord"]
    assert config.get("train_config.fine_tune_checkpoint") == ""
    assert (config.get("train_config.batch_size"), config.get("train_config.num_steps")) == (8, 600)
    assert config.get(COSINE) == {
        "learning_rate_base": 0.04,
        "total_steps": 600,
        "warmup_learning_rate": 0.01,
        "warmup_steps": 50,
        "hold_base_rate_steps": 0,
    }
    assert (TOOTH.parents[1] / config.get("train_input_reader.label_map_path")).exists()
    zoo_config = load_pipeline_config(ZOO)
    zoo_config.set("batch_norm_decay", "0.9")  # the tooth config's one change to the network (see its header)
    assert config.get("model.ssd.feature_extractor") == zoo_config.get("model.ssd.feature_extractor")
    assert config.get("model.ssd.box_predictor") == zoo_config.get("model.ssd.box_predictor")
    assert config.augmentations() == zoo_config.augmentations()
    assert config.to_text() == TOOTH.read_text()  # written in the form odlite config writes
