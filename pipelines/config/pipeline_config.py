"""``pipeline.config``: read, check against what odlite honours, change settings, write back.

A config from the OD API model zoo must mean the same thing here as there, so every
field is either honoured or rejected with its line: a typo gets "unknown field" and a
suggestion, a real OD API field that odlite cannot honour gets "not supported" and why
(the table is in ``support.py``). Values read through ``get`` have the .proto
defaults applied, as the OD API would see them. Changes go through ``set`` (or
``patch_config`` / ``odlite config``), which re-checks the whole file, so a written
config always loads.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections import Counter
from pathlib import Path

from pipelines.atomic import write_text_atomically
from pipelines.config import textproto
from pipelines.config.schema import ENUMS, MESSAGES, ROOT, FieldSpec, MessageSpec, message_spec
from pipelines.config.support import CHOICES, SUPPORTED, reason_not_supported
from pipelines.config.textproto import Field, Message, Scalar
from pipelines.errors import OdliteError, Problem

PLACEHOLDER = "PATH_TO_BE_CONFIGURED"

COSINE = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
_BATCH_NORMS = (
    "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams.batch_norm",
    "model.ssd.feature_extractor.conv_hyperparams.batch_norm",
)
_NMS = "model.ssd.post_processing.batch_non_max_suppression"
FRCNN = "model.faster_rcnn"
_FRCNN_NMS = f"{FRCNN}.second_stage_post_processing.batch_non_max_suppression"
_FRCNN_ANCHORS = f"{FRCNN}.first_stage_anchor_generator.multiscale_anchor_generator"
_FRCNN_HYPERPARAMS = (
    f"{FRCNN}.feature_extractor.conv_hyperparams",
    f"{FRCNN}.first_stage_box_predictor_conv_hyperparams",
    f"{FRCNN}.second_stage_box_predictor.mask_rcnn_box_predictor.fc_hyperparams",
)
_META_ARCHITECTURES = ("model.ssd", FRCNN)

# An alias sets its paths under the meta-architecture the file has (model.ssd or model.faster_rcnn).
ALIASES: dict[str, list[str]] = {
    "num_classes": ["model.ssd.num_classes", f"{FRCNN}.num_classes"],
    "batch_size": ["train_config.batch_size"],
    "num_steps": ["train_config.num_steps", f"{COSINE}.total_steps"],
    "learning_rate_base": [f"{COSINE}.learning_rate_base"],
    "warmup_learning_rate": [f"{COSINE}.warmup_learning_rate"],
    "warmup_steps": [f"{COSINE}.warmup_steps"],
    "classification_weight": [
        "model.ssd.loss.classification_weight",
        f"{FRCNN}.second_stage_classification_loss_weight",
    ],
    "localization_weight": ["model.ssd.loss.localization_weight", f"{FRCNN}.second_stage_localization_loss_weight"],
    "iou_threshold": [f"{_NMS}.iou_threshold", f"{_FRCNN_NMS}.iou_threshold"],
    "score_threshold": [f"{_NMS}.score_threshold", f"{_FRCNN_NMS}.score_threshold"],
    "aspect_ratios": [
        "model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios",
        f"{_FRCNN_ANCHORS}.aspect_ratios",
    ],
    "anchor_scale": [
        "model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale",
        f"{_FRCNN_ANCHORS}.anchor_scale",
    ],
    "batch_norm_decay": [f"{b}.decay" for b in _BATCH_NORMS]
    + [f"{FRCNN}.feature_extractor.conv_hyperparams.batch_norm.decay"],
    "batch_norm_epsilon": [f"{b}.epsilon" for b in _BATCH_NORMS]
    + [f"{FRCNN}.feature_extractor.conv_hyperparams.batch_norm.epsilon"],
    "backbone": [f"{FRCNN}.feature_extractor.type"],
    "min_dimension": [f"{FRCNN}.image_resizer.keep_aspect_ratio_resizer.min_dimension"],
    "max_dimension": [f"{FRCNN}.image_resizer.keep_aspect_ratio_resizer.max_dimension"],
    "rpn_nms_iou": [f"{FRCNN}.first_stage_nms_iou_threshold"],
    "proposals": [f"{FRCNN}.first_stage_max_proposals"],
    "crop_size": [f"{FRCNN}.initial_crop_size"],
    "rois_per_image": [f"{FRCNN}.second_stage_batch_size"],
    "roi_positive_fraction": [f"{FRCNN}.second_stage_balance_fraction"],
    "rpn_localization_weight": [f"{FRCNN}.first_stage_localization_loss_weight"],
    "rpn_objectness_weight": [f"{FRCNN}.first_stage_objectness_loss_weight"],
    "fine_tune_checkpoint": ["train_config.fine_tune_checkpoint"],
    "train_input_path": ["train_input_reader.tf_record_input_reader.input_path"],
    "eval_input_path": ["eval_input_reader.tf_record_input_reader.input_path"],
    "label_map_path": ["train_input_reader.label_map_path", "eval_input_reader.label_map_path"],
}
# Alias targets that are set only when the block holding them is in the file: num_steps
# moves the cosine schedule's end with it, but does not create a cosine schedule.
_ONLY_IF_PRESENT = {f"{COSINE}.total_steps": COSINE}

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38  # a float field holds float32: beyond this it reads as inf
_TRUE, _FALSE = ("true", "True", "t", "1"), ("false", "False", "f", "0")
_SEGMENT = re.compile(r"(\w+)(?:\[(\d+)\])?")


class BadValue(ValueError):
    """A value of the wrong type for its field; the message is the reason."""


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


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


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _resolve(dotted: str) -> list[tuple[str, int | None, FieldSpec]]:
    """The schema fields along ``dotted`` (``a.b[1].c``); ``KeyError`` for a path the OD API lacks."""
    steps = []
    spec = message_spec(ROOT)
    parts = dotted.split(".") if dotted else []
    for position, part in enumerate(parts):
        match = _SEGMENT.fullmatch(part)
        if match is None or not spec.declared or match[1] not in spec.fields:
            known = f"{spec.name} fields" if spec.declared else "nothing below it"
            raise KeyError(f"'{dotted}': no field '{part}' in {known}{did_you_mean(part, spec.fields)}")
        field = spec.fields[match[1]]
        index = int(match[2]) if match[2] is not None else None
        if index is not None and not field.repeated:
            raise KeyError(f"'{dotted}': '{field.name}' is not repeated")
        if field.kind != "message" and position < len(parts) - 1:
            raise KeyError(f"'{dotted}': '{field.name}' is a value, it has no fields")
        steps.append((field.name, index, field))
        spec = message_spec(field.type) if field.kind == "message" else spec
    return steps


class PipelineConfig:
    """A checked ``pipeline.config``: the tree as written plus the OD API's view of it."""

    def __init__(self, root: Message, source: str = "<config>", path: Path | None = None):
        self.root = root
        self.source = source
        self.path = path

    # --- reading ---------------------------------------------------------------------

    def get(self, dotted: str):
        """The value in effect at ``dotted``: .proto default when unset, a list for repeated values.

        A block gives a dict of its supported fields (defaults applied; blocks only when set).
        """
        steps = _resolve(dotted)
        node: Message | None = self.root
        for position, (name, index, spec) in enumerate(steps):
            last = position == len(steps) - 1
            fields = node.all(name) if node is not None else []
            if spec.kind != "message":
                values = [convert(spec, s) for f in fields for s in f.scalars]
                if not spec.repeated:
                    return values[0] if values else spec.default
                if index is None:
                    return values
                if index >= len(values):
                    raise KeyError(f"'{dotted}': {name} has {len(values)} value(s)")
                return values[index]
            if spec.repeated and index is None:
                if not last:
                    raise KeyError(f"'{dotted}': '{name}' is repeated; index it as {name}[0]")
                return [_as_dict(f.message, spec.type) for f in fields]
            if spec.repeated:
                if index >= len(fields):
                    raise KeyError(f"'{dotted}': {name} has {len(fields)} block(s)")
                node = fields[index].message
            else:
                node = fields[0].message if fields else None
        return _as_dict(node, steps[-1][2].type if steps else ROOT)

    def as_dict(self) -> dict:
        """Every supported value, defaults applied: what two configs that mean the same share."""
        return _as_dict(self.root, ROOT)

    def is_set(self, dotted: str) -> bool:
        """Whether the file writes ``dotted`` (a block counts when present, even empty)."""
        steps = _resolve(dotted)
        node: Message | None = self.root
        for name, index, spec in steps:
            if node is None:
                return False
            fields = node.all(name)
            if spec.kind != "message":
                count = sum(len(f.scalars) for f in fields)
                return count > (index or 0) if index is not None else count > 0
            if index is not None:
                node = fields[index].message if index < len(fields) else None
            else:
                node = fields[0].message if fields else None
        return node is not None

    def which(self, dotted: str) -> str | None:
        """The oneof member set in the block at ``dotted`` (``which("model.ssd.image_resizer")``)."""
        steps = _resolve(dotted)
        if not steps or steps[-1][2].kind != "message":
            raise KeyError(f"'{dotted}' is not a block")
        spec = message_spec(steps[-1][2].type)
        if not spec.oneofs:
            raise KeyError(f"'{dotted}' ({spec.name}) has no oneof")
        node = self._node(steps)
        if node is None:
            return None
        members = {m for names in spec.oneofs.values() for m in names}
        return next((f.name for f in node.fields if f.name in members), None)

    def view(self) -> View:
        """The whole config as typed attributes (``View``)."""
        return View(self.root, ROOT)

    def augmentations(self) -> list[tuple[str, dict]]:
        """``data_augmentation_options`` in order: (step name, its parameters with defaults applied)."""
        steps = []
        for item in self.get("train_config.data_augmentation_options"):
            for name, params in item.items():
                steps.append((name, params))
        return steps

    def unresolved_paths(self) -> list[str]:
        """Dotted paths whose string still holds the zoo's ``PATH_TO_BE_CONFIGURED``."""
        return [path for path, _, _ in self._placeholders()]

    def _placeholders(self) -> list[tuple[str, int, str]]:
        found = []

        def walk(node: Message, spec: MessageSpec, path: str) -> None:
            seen: Counter = Counter()
            for item in node.fields:
                fspec = spec.fields.get(item.name)
                if fspec is None:
                    continue
                fpath = _join(path, item.name)
                if item.message is not None and fspec.kind == "message":
                    where = f"{fpath}[{seen[item.name]}]" if fspec.repeated else fpath
                    seen[item.name] += 1
                    walk(item.message, message_spec(fspec.type), where)
                    continue
                for scalar in item.scalars:
                    where = f"{fpath}[{seen[item.name]}]" if fspec.repeated else fpath
                    seen[item.name] += 1
                    if scalar.kind == "string" and PLACEHOLDER in scalar.text:
                        found.append((where, scalar.line, scalar.text))

        walk(self.root, message_spec(ROOT), "")
        return found

    def to_text(self) -> str:
        return textproto.to_text(self.root)

    def problems(self) -> list[Problem]:
        """Everything odlite cannot honour, in file order."""
        return _Checker(self).run()

    # --- changing --------------------------------------------------------------------

    def set(self, dotted_or_alias: str, value: str) -> list[tuple[str, object, object]]:
        """Set a field (or every field an alias names) from text; (path, old, new) for each field set.

        Missing blocks are created. The whole config is checked again; on any problem
        nothing changes and ``OdliteError`` lists why.
        """
        return self.set_many([(dotted_or_alias, value)])

    def set_many(self, assignments: list[tuple[str, str]]) -> list[tuple[str, object, object]]:
        """``set`` for several settings checked together, so their order does not matter
        (num_steps=600 then warmup_steps=50 passes through no invalid state that counts)."""
        before = copy.deepcopy(self.root)
        changes = []
        try:
            for name, value in assignments:
                for path in self._targets(name):
                    old = self.get(path)
                    self._assign(path, value, name)
                    changes.append((path, old, self.get(path)))
        except OdliteError:
            self.root = before
            raise
        problems = self.problems()
        if problems:
            self.root = before
            shown = " ".join(f"{name}={value}" for name, value in assignments)
            raise OdliteError(f"cannot set {shown}", problems)
        return changes

    def _targets(self, name: str) -> list[str]:
        if name in ALIASES:
            arch = next((a for a in _META_ARCHITECTURES if self.is_set(a)), None)
            paths = [p for p in ALIASES[name] if not p.startswith("model.") or arch is None or p.startswith(arch + ".")]
            if not paths:
                raise OdliteError(f"'{name}' sets {', '.join(ALIASES[name])}: not a field of this {arch} config")
            return [p for p in paths if p not in _ONLY_IF_PRESENT or self.is_set(_ONLY_IF_PRESENT[p])]
        try:
            _resolve(name)
        except KeyError:
            raise OdliteError(f"unknown setting '{name}'{_suggest_setting(name)}") from None
        return [name]

    def _assign(self, path: str, value: str, name: str) -> None:
        steps = _resolve(path)
        leaf, leaf_index, spec = steps[-1]
        if spec.kind == "message":
            raise OdliteError(f"{name}={value}: {path} is a block; set one of its fields")
        if leaf_index is not None:
            raise OdliteError(f"{name}={value}: set the whole list, {path.rsplit('[', 1)[0]}=a,b")
        scalars = _scalars_from_text(spec, value, f"{name}={value}")
        for scalar in scalars:
            try:
                convert(spec, scalar)
            except BadValue as exc:
                raise OdliteError(f"{name}={value}: {path}: {exc}") from None
        node = self.root
        for segment, index, segment_spec in steps[:-1]:
            fields = node.all(segment)
            if index is not None:
                if index >= len(fields):
                    raise OdliteError(f"{name}={value}: {path}: the file has {len(fields)} '{segment}' block(s)")
                node = fields[index].message
            elif fields:
                node = fields[0].message
            elif segment_spec.repeated:
                raise OdliteError(f"{name}={value}: {path}: '{segment}' is repeated; index it as {segment}[0]")
            else:
                created = Field(segment, message=Message())
                node.fields.append(created)
                node = created.message
        existing = node.all(leaf)
        line = existing[0].line if existing else 0
        for scalar in scalars:
            scalar.line, scalar.col = line, 0
        made = Field(leaf, scalars=scalars)
        made.list_form = spec.repeated and (len(scalars) != 1 or any(f.list_form for f in existing))
        if existing:  # in place of the old value, keeping its comments and line (for messages)
            first = existing[0]
            made.comments, made.blank_before, made.trailing = first.comments, first.blank_before, first.trailing
            made.line, made.col = first.line, first.col
            position = node.fields.index(first)
            node.fields = [f for f in node.fields if all(f is not e for e in existing[1:])]
            node.fields[position] = made
        else:
            node.fields.append(made)
        if spec.repeated and not scalars:
            node.fields.remove(made)

    def _node(self, steps) -> Message | None:
        node: Message | None = self.root
        for name, index, _ in steps:
            if node is None:
                return None
            fields = node.all(name)
            position = index or 0
            node = fields[position].message if position < len(fields) else None
        return node

    def _line(self, dotted: str) -> int:
        """The line of ``dotted``, or of the nearest enclosing block that is written."""
        node, line = self.root, 0
        for part in dotted.split("."):
            match = _SEGMENT.fullmatch(part)
            fields = node.all(match[1]) if node is not None else []
            position = int(match[2]) if match[2] else 0
            if position >= len(fields):
                return line
            line = fields[position].line
            node = fields[position].message
        return line


class View:
    """A block of the config read by attribute, as the OD API's generated classes are read:
    ``config.view().model.ssd.num_classes``. Values have the .proto defaults applied; an
    absent block reads as all defaults; a repeated block is a list of views. A name the
    schema does not declare is an ``AttributeError`` at once, so a misspelt read cannot
    quietly return a default.
    """

    def __init__(self, node: Message | None, type_name: str):
        self._node = node
        self._spec = message_spec(type_name)

    def __getattr__(self, name: str):
        spec = self.__dict__.get("_spec")
        if spec is None or name not in spec.fields:
            where = spec.name if spec else "View"
            raise AttributeError(f"{where} has no field '{name}'{did_you_mean(name, spec.fields if spec else [])}")
        field = spec.fields[name]
        found = self._node.all(name) if self._node is not None else []
        if field.kind != "message":
            values = [convert(field, s) for f in found for s in f.scalars]
            return values if field.repeated else (values[0] if values else field.default)
        if field.repeated:
            return [View(f.message, field.type) for f in found]
        return View(found[0].message if found else None, field.type)

    def which(self) -> str | None:
        """The oneof member this block sets (``view.model.ssd.image_resizer.which()``)."""
        members = {m for names in self._spec.oneofs.values() for m in names}
        if self._node is None:
            return None
        return next((f.name for f in self._node.fields if f.name in members), None)

    def fields(self) -> dict:
        """The supported fields of this block, defaults applied (a plain dict, as ``get`` gives)."""
        return _as_dict(self._node, self._spec.name)


def _as_dict(node: Message | None, type_name: str) -> dict:
    spec = message_spec(type_name)
    out: dict = {}
    for name in SUPPORTED.get(type_name, {}):
        fspec = spec.fields[name]
        fields = node.all(name) if node is not None else []
        if fspec.kind != "message":
            values = [convert(fspec, s) for f in fields for s in f.scalars]
            out[name] = values if fspec.repeated else (values[0] if values else fspec.default)
        elif fspec.repeated:
            if fields:
                out[name] = [_as_dict(f.message, fspec.type) for f in fields]
        elif fields:
            out[name] = _as_dict(fields[0].message, fspec.type)
    return out


def _scalars_from_text(spec: FieldSpec, text: str, source: str) -> list[Scalar]:
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


def _all_paths() -> list[str]:
    """Every supported value's dotted path (repeated blocks left out), for suggestions."""
    paths = []

    def walk(type_name: str, path: str) -> None:
        for name in SUPPORTED.get(type_name, {}):
            spec = MESSAGES[type_name].fields[name]
            if spec.kind != "message":
                paths.append(_join(path, name))
            elif not spec.repeated:
                walk(spec.type, _join(path, name))

    walk(ROOT, "")
    return paths


def _suggest_setting(name: str) -> str:
    paths = _all_paths()
    by_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == name]
    if by_leaf:
        return f"; did you mean '{by_leaf[0]}'?"
    hint = did_you_mean(name, [*ALIASES, *paths])
    if hint:
        return hint
    leaves = {p.rsplit(".", 1)[-1]: p for p in paths}
    close = difflib.get_close_matches(name, leaves, n=1, cutoff=0.75)
    if close:
        return f"; did you mean '{leaves[close[0]]}'?"
    return f" (aliases: {', '.join(ALIASES)}; or a dotted path like train_config.batch_size)"


class _Checker:
    """Walks the tree against the schema and the support table, collecting every problem."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.found: list[tuple[int, Problem]] = []

    def run(self) -> list[Problem]:
        self.walk(self.config.root, message_spec(ROOT), "")
        for path, reason in _cross_checks(self.config):
            self.add(self.config._line(path), path, reason)
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
            item_path = _join(path, item.name)
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
                self.add(node.line, _join(path, name), "missing: odlite needs it")
            elif rule.check and not rule.set_only and field.kind != "message" and not field.repeated:
                reason = rule.check(field.default)
                if reason:
                    self.add(
                        node.line,
                        _join(path, name),
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
        (FRCNN, _FRCNN_ANCHORS),
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
    for index, item in enumerate(steps):
        for name, params in item.items():
            for low_name, high_name in (
                ("min_area", "max_area"),
                ("min_aspect_ratio", "max_aspect_ratio"),
                ("min_delta", "max_delta"),
            ):
                if low_name in params and params[low_name] > params[high_name]:
                    path = f"train_config.data_augmentation_options[{index}].{name}.{low_name}"
                    out.append((path, f"must be at most {high_name} ({params[high_name]}), got {params[low_name]}"))
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
    if value(f"{_FRCNN_NMS}.use_class_agnostic_nms"):
        out.append((f"{_FRCNN_NMS}.use_class_agnostic_nms", "not supported: Faster R-CNN's NMS is per class"))
    if present(_FRCNN_ANCHORS) and value(f"{_FRCNN_ANCHORS}.normalize_coordinates") is not False:
        out.append(
            (
                f"{_FRCNN_ANCHORS}.normalize_coordinates",
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
    for hyper in _FRCNN_HYPERPARAMS:
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


# --- entry points -------------------------------------------------------------------------


def parse_pipeline_config(text: str, source: str = "<config>") -> PipelineConfig:
    """The config in ``text``; ``OdliteError`` lists every problem (``source:line: path: reason``)."""
    config = PipelineConfig(textproto.parse(text, source), source)
    problems = config.problems()
    if problems:
        head = str(problems[0]) if len(problems) == 1 else f"{source}: {len(problems)} problems"
        raise OdliteError(head, problems)
    return config


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OdliteError.at(path, f"cannot read pipeline config: {exc}") from None
    config = parse_pipeline_config(text, str(path))
    config.path = path
    return config


def check_paths_resolved(config: PipelineConfig) -> None:
    """Raise when paths still say ``PATH_TO_BE_CONFIGURED``: training needs real files."""
    by_path = {p: alias for alias, paths in ALIASES.items() for p in paths}
    problems = []
    for path, line, text in config._placeholders():
        alias = by_path.get(path.split("[")[0], path.split("[")[0])
        hint = ' (or to "" to train from scratch)' if alias == "fine_tune_checkpoint" else ""
        reason = f"{path}: still {show(text)}; point it at a real file with odlite config --set {alias}=...{hint}"
        problems.append(Problem(config.source, reason, str(line)))
    if problems:
        head = str(problems[0]) if len(problems) == 1 else f"{config.source}: {len(problems)} paths to configure"
        raise OdliteError(head, problems)


def patch_config(
    base: str | Path, out: str | Path, assignments: list[str], overwrite: bool = False
) -> list[tuple[str, object, object]]:
    """Write ``base`` with each ``NAME=VALUE`` applied to ``out``; (path, old, new) for each field set.

    ``out`` appears whole or not at all (temporary file, then rename); an existing
    ``out`` is replaced only with ``overwrite``.
    """
    base, out = Path(base), Path(out)
    if out.exists() and not overwrite:
        raise OdliteError.at(out, "already exists; pass --overwrite to replace it")
    config = load_pipeline_config(base)
    pairs = []
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise OdliteError(f"--set {item}: expected NAME=VALUE")
        pairs.append((name.strip(), value))
    changes = config.set_many(pairs)
    text = config.to_text()
    parse_pipeline_config(text, str(out))  # what is written must load
    write_text_atomically(out, text)
    return changes
