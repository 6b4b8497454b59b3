"""``pipeline.config``: read, check against what odlite honours, change settings, write back.

A config from the OD API model zoo must mean the same thing here as there, so every
field is either honoured or rejected with its line: a typo gets "unknown field" and a
suggestion, a real OD API field that odlite cannot honour gets "not supported" and why
(the table is in ``support.py``, the checks in ``checks.py``). Values read through ``get`` have the .proto
defaults applied, as the OD API would see them. Changes go through ``set`` (or
``patch_config`` / ``odlite config``), which re-checks the whole file, so a written
config always loads.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

from pipelines.atomic import write_text_atomically
from pipelines.config import textproto
from pipelines.config.checks import (
    BATCH_NORMS,
    COSINE,
    FRCNN,
    FRCNN_ANCHORS,
    FRCNN_NMS,
    SSD_NMS,
    BadValue,
    convert,
    find_problems,
    scalars_from_text,
    show,
)
from pipelines.config.schema import (
    ROOT,
    SEGMENT,
    MessageSpec,
    did_you_mean,
    join,
    message_spec,
    resolve,
    suggest_setting,
)
from pipelines.config.support import SUPPORTED
from pipelines.config.textproto import Field, Message
from pipelines.errors import OdliteError, Problem

PLACEHOLDER = "PATH_TO_BE_CONFIGURED"

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
    "iou_threshold": [f"{SSD_NMS}.iou_threshold", f"{FRCNN_NMS}.iou_threshold"],
    "score_threshold": [f"{SSD_NMS}.score_threshold", f"{FRCNN_NMS}.score_threshold"],
    "aspect_ratios": [
        "model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios",
        f"{FRCNN_ANCHORS}.aspect_ratios",
    ],
    "anchor_scale": [
        "model.ssd.anchor_generator.multiscale_anchor_generator.anchor_scale",
        f"{FRCNN_ANCHORS}.anchor_scale",
    ],
    "batch_norm_decay": [f"{b}.decay" for b in BATCH_NORMS]
    + [f"{FRCNN}.feature_extractor.conv_hyperparams.batch_norm.decay"],
    "batch_norm_epsilon": [f"{b}.epsilon" for b in BATCH_NORMS]
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
        steps = resolve(dotted)
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
        steps = resolve(dotted)
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
        steps = resolve(dotted)
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
                fpath = join(path, item.name)
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
        return find_problems(self)

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
            resolve(name)
        except KeyError:
            raise OdliteError(f"unknown setting '{name}'{suggest_setting(name, ALIASES)}") from None
        return [name]

    def _assign(self, path: str, value: str, name: str) -> None:
        steps = resolve(path)
        leaf, leaf_index, spec = steps[-1]
        if spec.kind == "message":
            raise OdliteError(f"{name}={value}: {path} is a block; set one of its fields")
        if leaf_index is not None:
            raise OdliteError(f"{name}={value}: set the whole list, {path.rsplit('[', 1)[0]}=a,b")
        scalars = scalars_from_text(spec, value, f"{name}={value}")
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

    def line_of(self, dotted: str) -> int:
        """The line of ``dotted``, or of the nearest enclosing block that is written."""
        node, line = self.root, 0
        for part in dotted.split("."):
            match = SEGMENT.fullmatch(part)
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
