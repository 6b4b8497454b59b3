"""The checks of a ``pipeline.config``: each value against its field, the tree against what odlite
honours (``support.SUPPORTED``), and the constraints between fields, SSD's and Faster R-CNN's own.

``find_problems`` walks a parsed config (``pipeline_config.PipelineConfig``) and returns every
problem in file order; ``convert`` reads one written value as its field's type.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from pipelines.config import textproto
from pipelines.config.augmentation_rules import augmentation_value_checks
from pipelines.config.schema import ENUMS, ROOT, FieldSpec, MessageSpec, did_you_mean, join, message_spec
from pipelines.config.support import CHOICES, SUPPORTED, reason_not_supported
from pipelines.config.textproto import Field, Message, Scalar
from pipelines.errors import OdliteError, Problem

if TYPE_CHECKING:
    from pipelines.config.pipeline_config import PipelineConfig

# Paths the cross-checks and the setting aliases (pipeline_config.ALIASES) name.
COSINE = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
BATCH_NORMS = (
    "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.batch_norm",
    "model.ssd.feature_extractor.conv_hyperparams.batch_norm",
)
SSD_NMS = "model.ssd.post_processing.batch_non_max_suppression"
FRCNN = "model.faster_rcnn"
FRCNN_NMS = f"{FRCNN}.second_stage_post_processing.batch_non_max_suppression"
FRCNN_ANCHORS = f"{FRCNN}.first_stage_anchor_generator.multiscale_anchor_generator"
FRCNN_HYPERPARAMS = (
    f"{FRCNN}.feature_extractor.conv_hyperparams",
    f"{FRCNN}.first_stage_box_predictor_conv_hyperparams",
    f"{FRCNN}.second_stage_box_predictor.mask_rcnn_box_predictor.fc_hyperparams",
)

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38  # a float field holds float32: beyond this it reads as inf
_TRUE, _FALSE = ("true", "True", "t", "1"), ("false", "False", "f", "0")


class BadValue(ValueError):
    """A value of the wrong type for its field; the message is the reason."""


def show(value) -> str:
    """A value as the text format writes it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return textproto.quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def convert(spec: FieldSpec, scalar: Scalar):
    """The Python value of one written value of field ``spec``; ``BadValue`` says why not."""
    kind, raw = spec.type, scalar.raw
    if spec.kind == "enum":
        names = ENUMS[kind]
        if scalar.kind == "ident" and raw in names:
            return raw
        raise BadValue(f"expects one of {', '.join(names)}, got {raw}{did_you_mean(raw, names)}")
    if kind == "string":
        if scalar.kind != "string":
            raise BadValue(f"expects a quoted string, got {raw}")
        return scalar.text
    if kind == "bool":
        if raw in _TRUE or raw in _FALSE:
            return raw in _TRUE
        raise BadValue(f"expects true or false, got {raw}")
    if kind in ("float", "double"):
        if scalar.kind == "number":
            try:
                value = float(_integer(raw)) if "x" in raw.lower() else float(raw.rstrip("fF"))
            except OverflowError:  # a hex integer past a double's range
                value = math.inf
            return _finite(kind, value, raw)
        if scalar.kind == "ident" and raw.lower().lstrip("-") in ("inf", "infinity", "nan"):
            return _finite(kind, float(raw.lower().replace("infinity", "inf")), raw)
        raise BadValue(f"expects a number, got {raw}")
    if scalar.kind == "number" and re.fullmatch(r"-?(0[xX][0-9a-fA-F]+|\d+)", raw):
        value = _integer(raw)
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise BadValue(f"{value} is out of range for {kind}")
        return value
    raise BadValue(f"expects an integer, got {raw}")


def _finite(kind: str, value: float, raw: str) -> float:
    """Every float field is refused NaN and infinity here, once: a comparison with NaN is false,
    so no range check catches it, and one NaN setting can turn every weight NaN."""
    if not math.isfinite(value):
        raise BadValue(f"must be a finite number, got {raw}")
    if kind == "float" and abs(value) > _FLOAT32_MAX:
        raise BadValue(f"must be a finite number, got {raw}, which is infinite as a 32-bit float")
    return value


def _integer(raw: str) -> int:
    body = raw.lstrip("-")
    value = int(body, 16) if body[:2].lower() == "0x" else int(body, 10)
    return -value if raw.startswith("-") else value


def scalars_from_text(spec: FieldSpec, text: str, source: str) -> list[Scalar]:
    """Values typed on a command line: ``0.5``, ``RELU_6``, ``a/b.record`` (quotes optional for strings).

    A repeated field takes ``1.0,2.0`` or ``[1.0, 2.0]``; an empty value clears it.
    """
    text = text.strip()
    if spec.repeated:
        if text.startswith("["):
            return textproto.parse_scalar_list(text, source)
        return [_scalar_from_text(spec, item.strip(), source) for item in text.split(",")] if text else []
    return [_scalar_from_text(spec, text, source)]


def _scalar_from_text(spec: FieldSpec, text: str, source: str) -> Scalar:
    if spec.type == "string":
        if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
            return textproto.parse_scalar(text, source)
        return Scalar("string", textproto.quote(text), text=text)
    try:
        return textproto.parse_scalar(text, source)
    except OdliteError:
        return Scalar("ident", text)  # convert() then says what the field expects


def find_problems(config: PipelineConfig) -> list[Problem]:
    """Everything odlite cannot honour in ``config``, in file order."""
    return _Checker(config).run()


class _Checker:
    """Walks the tree against the schema and the support table, collecting every problem."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.found: list[tuple[int, Problem]] = []

    def run(self) -> list[Problem]:
        self.walk(self.config.root, message_spec(ROOT), "")
        for path, reason in _cross_checks(self.config):
            self.add(self.config.line_of(path), path, reason)
        order = sorted(range(len(self.found)), key=lambda i: (self.found[i][0] or math.inf, i))
        return [self.found[i][1] for i in order]

    def add(self, line: int, path: str, reason: str) -> None:
        text = f"{path}: {reason}" if path else reason
        self.found.append((line, Problem(self.config.source, text, str(line) if line else "")))

    def walk(self, node: Message, spec: MessageSpec, path: str) -> None:
        rules = SUPPORTED.get(spec.name, {})
        seen: dict[str, Field] = {}
        count: Counter = Counter()
        for item in node.fields:
            field = spec.fields.get(item.name)
            item_path = join(path, item.name)
            if field is None:
                self.add(item.line, path, f"unknown field '{item.name}'{did_you_mean(item.name, spec.fields)}")
                continue
            if item.name in seen and not field.repeated:
                self.add(item.line, item_path, f"set more than once (first on line {seen[item.name].line})")
                continue
            seen.setdefault(item.name, item)
            index = count[item.name]
            count[item.name] += 1
            rule = rules.get(item.name)
            if rule is None and self.written_as_default(field, item):
                continue  # the OD API's own default changes nothing: exported configs spell them out
            if rule is None:
                self.add(item.line, item_path, "not supported: " + reason_not_supported(spec.name, item.name))
            elif field.kind == "message":
                if item.message is None:
                    self.add(item.line, item_path, f"is a block: write {item.name} {{ ... }}")
                else:
                    where = f"{item_path}[{index}]" if field.repeated else item_path
                    self.walk(item.message, message_spec(field.type), where)
            elif item.message is not None:
                self.add(item.line, item_path, f"expects a value ({item.name}: ...), not a block")
            elif item.list_form and not field.repeated:
                self.add(item.line, item_path, "takes one value, not a list")
            else:
                for scalar in item.scalars:
                    try:
                        value = convert(field, scalar)
                    except BadValue as exc:
                        self.add(scalar.line, item_path, str(exc))
                        continue
                    reason = rule.check(value) if rule.check else None
                    if reason:
                        self.add(scalar.line, item_path, reason)
        self.check_oneofs(spec, seen, path)
        self.check_missing(node, spec, seen, path)

    @staticmethod
    def written_as_default(field, item: Field) -> bool:
        """A single scalar written with its .proto default, as the OD API's exporter writes them all."""
        if field.kind == "message" or field.repeated or item.message is not None or len(item.scalars) != 1:
            return False
        try:
            return convert(field, item.scalars[0]) == field.default
        except BadValue:
            return False

    def check_oneofs(self, spec: MessageSpec, seen: dict[str, Field], path: str) -> None:
        for oneof, members in spec.oneofs.items():
            present = sorted((seen[m] for m in members if m in seen), key=lambda f: f.line or math.inf)
            if len(present) > 1:
                first, second = present[0], present[1]
                where = f" (line {first.line})" if first.line else ""
                self.add(
                    second.line or first.line,
                    path,
                    f"'{first.name}'{where} and '{second.name}' are both set; "
                    f"{oneof} takes one of {', '.join(members)}",
                )

    def check_missing(self, node: Message, spec: MessageSpec, seen: dict[str, Field], path: str) -> None:
        rules = SUPPORTED.get(spec.name, {})
        for name, rule in rules.items():
            field = spec.fields[name]
            if name in seen or (field.oneof and any(m in seen for m in spec.oneofs[field.oneof])):
                continue
            if rule.required:
                self.add(node.line, join(path, name), "missing: odlite needs it")
            elif rule.check and not rule.set_only and field.kind != "message" and not field.repeated:
                reason = rule.check(field.default)
                if reason:
                    self.add(
                        node.line,
                        join(path, name),
                        f"{reason} (left out, so the OD API default {show(field.default)} applies)",
                    )
        if spec.name in CHOICES:
            members = next(iter(spec.oneofs.values()))
            if not any(m in seen for m in members):
                supported = [m for m in members if m in rules]
                self.add(node.line, path, f"needs one of: {', '.join(supported)}")


def _cross_checks(config: PipelineConfig) -> list[tuple[str, str]]:
    """Constraints between fields: (path, reason) for each one broken."""

    def value(path: str):
        try:
            return config.get(path)
        except (KeyError, BadValue):
            return None

    def present(path: str) -> bool:
        try:
            return config.is_set(path)
        except KeyError:
            return False

    out = []
    for arch, anchors in (
        ("model.ssd", "model.ssd.anchor_generator.multiscale_anchor_generator"),
        (FRCNN, FRCNN_ANCHORS),
    ):
        fpn = f"{arch}.feature_extractor.fpn"
        low, high = value(f"{fpn}.min_level"), value(f"{fpn}.max_level")
        if present(fpn) and low is not None and high is not None and high < low:
            out.append((f"{fpn}.max_level", f"must be at least min_level ({low}), got {high}"))
        if present(fpn) and present(anchors):
            for level in ("min_level", "max_level"):
                mine, theirs = value(f"{anchors}.{level}"), value(f"{fpn}.{level}")
                if mine is not None and theirs is not None and mine != theirs:
                    out.append(
                        (f"{anchors}.{level}", f"must equal {fpn}.{level} ({theirs}): anchors sit on the FPN levels")
                    )
    out += _ssd_checks(value, present) + _faster_rcnn_checks(value, present)
    resizer = "model.ssd.image_resizer.fixed_shape_resizer"
    height, width = value(f"{resizer}.height"), value(f"{resizer}.width")
    if present(resizer) and height is not None and width is not None and height != width:
        out.append((f"{resizer}.width", f"not supported: must equal height ({height}), got {width}"))
    tower = "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.activation"
    if present(tower) and value(tower) not in (None, "RELU_6"):
        out.append((tower, "not supported: only RELU_6 (the OD API's weight-shared tower always applies ReLU6)"))
    matcher = "model.ssd.matcher.argmax_matcher"
    matched, unmatched = value(f"{matcher}.matched_threshold"), value(f"{matcher}.unmatched_threshold")
    if present(matcher) and matched is not None and unmatched is not None and unmatched > matched:
        out.append((f"{matcher}.unmatched_threshold", f"must be at most matched_threshold ({matched})"))
    if present(COSINE):
        total, warmup = value(f"{COSINE}.total_steps"), value(f"{COSINE}.warmup_steps")
        if total is not None and warmup is not None and warmup > total:
            out.append((f"{COSINE}.warmup_steps", f"must be at most total_steps ({total}), got {warmup}"))
        base, start = value(f"{COSINE}.learning_rate_base"), value(f"{COSINE}.warmup_learning_rate")
        if base is not None and start is not None and start > base:
            out.append((f"{COSINE}.warmup_learning_rate", f"must be at most learning_rate_base ({base}), got {start}"))
    if value("train_config.fine_tune_checkpoint"):
        if value("train_config.fine_tune_checkpoint_version") != "V2":
            out.append(
                (
                    "train_config.fine_tune_checkpoint_version",
                    "must be V2 when fine_tune_checkpoint is set (odlite reads TF2 checkpoints)",
                )
            )
        if not value("train_config.fine_tune_checkpoint_type"):
            out.append(
                (
                    "train_config.fine_tune_checkpoint_type",
                    "must be 'classification', 'detection' or 'full' when fine_tune_checkpoint is set",
                )
            )
    maps = value("train_input_reader.label_map_path"), value("eval_input_reader.label_map_path")
    if all(maps) and maps[0] != maps[1]:
        out.append(
            (
                "eval_input_reader.label_map_path",
                f"must equal train_input_reader.label_map_path ({show(maps[0])}): one label map names the classes",
            )
        )
    steps = value("train_config.data_augmentation_options") or []
    classes = value("model.ssd.num_classes") or value(f"{FRCNN}.num_classes")
    for index, item in enumerate(steps):
        for name, params in item.items():
            for low_name, high_name in (
                ("min_area", "max_area"),
                ("min_aspect_ratio", "max_aspect_ratio"),
                ("min_delta", "max_delta"),
                ("minval", "maxval"),
                ("min_gaussian_stddev", "max_gaussian_stddev"),
                ("min_scale_ratio", "max_scale_ratio"),
                ("scale_min", "scale_max"),
                ("min_target_pixels", "max_target_pixels"),
            ):
                if low_name in params and params[low_name] > params[high_name]:
                    path = f"train_config.data_augmentation_options[{index}].{name}.{low_name}"
                    out.append((path, f"must be at most {high_name} ({params[high_name]}), got {params[low_name]}"))
            path = f"train_config.data_augmentation_options[{index}].{name}"
            out += augmentation_value_checks(path, name, params, classes)
    return out


def _ssd_checks(value, present) -> list[tuple[str, str]]:
    """Where SSD takes less than the shared message types allow."""
    if not present("model.ssd"):
        return []
    out = []
    ssd = "model.ssd"
    low = value(f"{ssd}.feature_extractor.fpn.min_level")
    if present(f"{ssd}.feature_extractor.fpn") and low is not None and not 3 <= low <= 5:
        out.append((f"{ssd}.feature_extractor.fpn.min_level", f"must be between 3 and 5, got {low}"))
    for path, why in (
        (f"{ssd}.image_resizer.keep_aspect_ratio_resizer", "only 'fixed_shape_resizer' for SSD"),
        (f"{ssd}.box_predictor.mask_rcnn_box_predictor", "only 'weight_shared_convolutional_box_predictor' for SSD"),
    ):
        if present(path):
            out.append((path, f"not supported: {why}"))
    converter = f"{ssd}.post_processing.score_converter"
    if present(f"{ssd}.post_processing") and value(converter) != "SIGMOID":
        out.append(
            (converter, "not supported: only 'SIGMOID' for SSD (its classification loss is a sigmoid focal loss)")
        )
    normalized = f"{ssd}.anchor_generator.multiscale_anchor_generator.normalize_coordinates"
    if present(normalized) and value(normalized) is False:
        out.append((normalized, "not supported: odlite's SSD anchors are always normalised"))
    for hyper in (
        f"{ssd}.feature_extractor.conv_hyperparams",
        f"{ssd}.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams",
    ):
        if present(hyper) and not present(f"{hyper}.batch_norm"):
            out.append((f"{hyper}.batch_norm", "missing: every conv of odlite's SSD is batch-normalised"))
        if present(f"{hyper}.op") and value(f"{hyper}.op") != "CONV":
            out.append((f"{hyper}.op", "not supported: only CONV for conv_hyperparams"))
    return out


def _faster_rcnn_checks(value, present) -> list[tuple[str, str]]:
    """Where Faster R-CNN takes less than the shared message types allow."""
    if not present(FRCNN):
        return []
    out = []
    converter = f"{FRCNN}.second_stage_post_processing.score_converter"
    if present(f"{FRCNN}.second_stage_post_processing") and value(converter) != "SOFTMAX":
        out.append((converter, "not supported: only 'SOFTMAX' for Faster R-CNN (its classifier is a softmax)"))
    if value(f"{FRCNN_NMS}.use_class_agnostic_nms"):
        out.append((f"{FRCNN_NMS}.use_class_agnostic_nms", "not supported: Faster R-CNN's NMS is per class"))
    if present(FRCNN_ANCHORS) and value(f"{FRCNN_ANCHORS}.normalize_coordinates") is not False:
        out.append(
            (
                f"{FRCNN_ANCHORS}.normalize_coordinates",
                "must be false for Faster R-CNN: its anchors are in pixels (the OD API default true does not apply)",
            )
        )
    if present(f"{FRCNN}.second_stage_box_predictor.weight_shared_convolutional_box_predictor"):
        out.append(
            (
                f"{FRCNN}.second_stage_box_predictor.weight_shared_convolutional_box_predictor",
                "not supported: Faster R-CNN takes mask_rcnn_box_predictor",
            )
        )
    for hyper in FRCNN_HYPERPARAMS:
        wanted = "FC" if hyper.endswith("fc_hyperparams") else "CONV"
        if present(hyper) and value(f"{hyper}.op") != wanted:
            out.append((f"{hyper}.op", f"not supported: only {wanted} here"))
        norm = f"{hyper}.batch_norm"
        if present(norm):
            for name in ("scale", "center", "train"):
                if value(f"{norm}.{name}") is not True:
                    # Only scale's OD API default is false; centre and train default to true.
                    default = " (the OD API default false does not apply)" if name == "scale" else ""
                    why = "Model Garden's batch norms always scale, centre and train"
                    out.append((f"{norm}.{name}", f"must be true for Faster R-CNN: {why}{default}"))
    extractor_norm = f"{FRCNN}.feature_extractor.conv_hyperparams"
    if present(extractor_norm) and not present(f"{extractor_norm}.batch_norm"):
        out.append((f"{extractor_norm}.batch_norm", "missing: Model Garden's FPN is batch-normalised"))
    fixed = f"{FRCNN}.image_resizer.fixed_shape_resizer"
    top = value(f"{FRCNN}.feature_extractor.fpn.max_level") or 6
    if present(fixed):
        for side in ("height", "width"):
            size = value(f"{fixed}.{side}")
            if size is not None and size % 2**top:
                out.append((f"{fixed}.{side}", f"must be a multiple of {2**top} (2^max_level of the FPN), got {size}"))
    keep = f"{FRCNN}.image_resizer.keep_aspect_ratio_resizer"
    if present(keep) and value(f"{keep}.pad_to_max_dimension") is not True:
        out.append(
            (
                f"{keep}.pad_to_max_dimension",
                "not supported: only true (batches, anchors and the exported graph need one input size; "
                "the image is padded)",
            )
        )
    low, high = value(f"{keep}.min_dimension"), value(f"{keep}.max_dimension")
    if present(keep) and low is not None and high is not None and low > high:
        out.append((f"{keep}.min_dimension", f"must be at most max_dimension ({high}), got {low}"))
    return out
