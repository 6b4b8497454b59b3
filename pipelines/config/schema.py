"""What a ``pipeline.config`` may say: the OD API's schema, read from ``od_api.proto``.

``od_api.proto`` (beside this module, package data) is the Object Detection API's
``TrainEvalPipelineConfig`` for SSD and Faster R-CNN, taken from tensorflow/models
``research/object_detection/protos/*.proto`` (names, types, defaults, enums, oneofs;
comments and field numbers left out, as the text format names fields). Message types
odlite never descends into are left undeclared: a field of such a type is known by name
only, which is enough to say "not supported" rather than "unknown field".
What odlite honours of it is ``support.SUPPORTED``; the table checks at the end of this
module prove that table names only declared messages and fields.
To support a field, add it to ``support.SUPPORTED`` (and its message to ``od_api.proto``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib.resources import files

from pipelines.config.support import SUPPORTED

DECLARATIONS = files("pipelines.config").joinpath("od_api.proto").read_text(encoding="utf-8")

SCALAR_TYPES = {"int32", "int64", "uint32", "uint64", "float", "double", "bool", "string"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    owner: str
    type: str  # a scalar type, an enum or a message name
    kind: str  # "scalar", "enum" or "message"
    repeated: bool = False
    default: object = None
    oneof: str | None = None


@dataclass
class MessageSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    oneofs: dict[str, list[str]] = field(default_factory=dict)
    declared: bool = True


_DECLARATION = re.compile(
    r"(?P<label>optional|repeated)?\s*(?P<type>[\w.]+)\s+(?P<name>\w+)\s*(?:\[\s*default\s*=\s*(?P<default>[^\]]+)\])?;"
)


def _read_declarations(text: str) -> tuple[dict[str, MessageSpec], dict[str, tuple[str, ...]]]:
    """Messages and enums of ``text``; nested enums are named ``Outer.Inner``."""
    messages: dict[str, MessageSpec] = {}
    enums: dict[str, tuple[str, ...]] = {}
    pending: list[tuple[str, re.Match, str | None]] = []  # owner, declaration, oneof
    scope: list[tuple[str, str]] = []  # (kind, name)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        head = re.match(r"(message|enum|oneof)\s+(\w+)\s*\{$", line)
        if head:
            kind, name = head.groups()
            if kind == "message":
                messages[name] = MessageSpec(name)
            elif kind == "enum":
                owner = next((n for k, n in reversed(scope) if k == "message"), None)
                name = f"{owner}.{name}" if owner else name
                enums[name] = ()
            scope.append((kind, name))
            continue
        if line == "}":
            scope.pop()
            continue
        kind, name = scope[-1]
        if kind == "enum":
            enums[name] += (line.rstrip(";"),)
            continue
        owner = next(n for k, n in reversed(scope) if k == "message")
        match = _DECLARATION.fullmatch(line)
        if match is None:
            raise ValueError(f"cannot read declaration {line!r}")
        pending.append((owner, match, name if kind == "oneof" else None))
    for owner, match, oneof in pending:
        type_name = match["type"]
        if type_name in SCALAR_TYPES:
            kind = "scalar"
        elif f"{owner}.{type_name}" in enums:
            kind, type_name = "enum", f"{owner}.{type_name}"
        elif type_name in enums:
            kind = "enum"
        else:
            kind = "message"
        default = _default(type_name, kind, match["default"], enums)
        spec = FieldSpec(match["name"], owner, type_name, kind, match["label"] == "repeated", default, oneof)
        messages[owner].fields[spec.name] = spec
        if oneof:
            messages[owner].oneofs.setdefault(oneof, []).append(spec.name)
    return messages, enums


def _default(type_name: str, kind: str, text: str | None, enums: dict[str, tuple[str, ...]]):
    """The .proto default, or the type's zero value as proto2 gives when none is declared."""
    if kind == "message":
        return None
    if kind == "enum":
        return text.strip() if text else enums[type_name][0]
    if type_name == "bool":
        return text.strip() == "true" if text else False
    if type_name == "string":
        return text.strip()[1:-1] if text else ""
    if type_name in ("float", "double"):
        return float(text) if text else 0.0
    return int(text) if text else 0


MESSAGES, ENUMS = _read_declarations(DECLARATIONS)
ROOT = "TrainEvalPipelineConfig"


def message_spec(name: str) -> MessageSpec:
    """The declared message, or an empty undeclared one for types odlite knows by name only."""
    return MESSAGES.get(name) or MessageSpec(name, declared=False)


# --- paths through the declarations -------------------------------------------------------

SEGMENT = re.compile(r"(\w+)(?:\[(\d+)\])?")


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def resolve(dotted: str) -> list[tuple[str, int | None, FieldSpec]]:
    """The schema fields along ``dotted`` (``a.b[1].c``); ``KeyError`` for a path the OD API lacks."""
    steps = []
    spec = message_spec(ROOT)
    parts = dotted.split(".") if dotted else []
    for position, part in enumerate(parts):
        match = SEGMENT.fullmatch(part)
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


def supported_paths() -> list[str]:
    """Every supported value's dotted path (repeated blocks left out), for suggestions."""
    paths = []

    def walk(type_name: str, path: str) -> None:
        for name in SUPPORTED.get(type_name, {}):
            spec = MESSAGES[type_name].fields[name]
            if spec.kind != "message":
                paths.append(join(path, name))
            elif not spec.repeated:
                walk(spec.type, join(path, name))

    walk(ROOT, "")
    return paths


def suggest_setting(name: str, aliases) -> str:
    """A hint for an unknown setting: a supported path ending in ``name``, or a close alias or path."""
    paths = supported_paths()
    by_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == name]
    if by_leaf:
        return f"; did you mean '{by_leaf[0]}'?"
    hint = did_you_mean(name, [*aliases, *paths])
    if hint:
        return hint
    leaves = {p.rsplit(".", 1)[-1]: p for p in paths}
    close = difflib.get_close_matches(name, leaves, n=1, cutoff=0.75)
    if close:
        return f"; did you mean '{leaves[close[0]]}'?"
    return f" (aliases: {', '.join(aliases)}; or a dotted path like train_config.batch_size)"


def _check_tables() -> None:
    for message, rules in SUPPORTED.items():
        if message not in MESSAGES:
            raise AssertionError(f"SUPPORTED names undeclared message {message}")
        for name in rules:
            spec = MESSAGES[message].fields.get(name)
            if spec is None:
                raise AssertionError(f"SUPPORTED names undeclared field {message}.{name}")
            if spec.kind == "message" and spec.type not in SUPPORTED:
                raise AssertionError(f"{message}.{name} is supported but {spec.type} has no SUPPORTED entry")


_check_tables()
