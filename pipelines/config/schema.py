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
