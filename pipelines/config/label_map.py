"""Read and write ``label_map.pbtxt`` in the Object Detection API's text format.

The schema is the OD API's ``StringIntLabelMap`` (name, id, display_name), built here
from a descriptor so that protobuf's own text parser does the reading: its errors
carry line and column, and a field the schema lacks is rejected instead of ignored.
Id 0 is the background; class ids start at 1.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from pipelines.errors import OdliteError


def _build_schema():
    proto = descriptor_pb2.FileDescriptorProto(
        name="odlite/string_int_label_map.proto", package="object_detection.protos", syntax="proto2"
    )
    item = proto.message_type.add(name="StringIntLabelMapItem")
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    for number, (name, kind) in enumerate(
        [("name", "TYPE_STRING"), ("id", "TYPE_INT32"), ("display_name", "TYPE_STRING")], start=1
    ):
        item.field.add(
            name=name, number=number, label=optional, type=getattr(descriptor_pb2.FieldDescriptorProto, kind)
        )
    label_map = proto.message_type.add(name="StringIntLabelMap")
    label_map.field.add(
        name="item",
        number=1,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".object_detection.protos.StringIntLabelMapItem",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("object_detection.protos.StringIntLabelMap"))


StringIntLabelMap = _build_schema()


def parse_label_map(text: str, source: str = "<label map>") -> dict[int, str]:
    """``{id: name}`` sorted by id; rejects duplicate ids or names and ids below 1."""
    message = StringIntLabelMap()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        where = f"{exc.GetLine()}:{exc.GetColumn()}" if exc.GetLine() else ""
        reason = str(exc).split(" : ", 1)[-1]
        raise OdliteError.at(source, reason, where) from None
    labels: dict[int, str] = {}
    for index, item in enumerate(message.item):
        where = f"item[{index}]"
        if not item.HasField("id") or not item.HasField("name"):
            raise OdliteError.at(source, "every item needs both 'id' and 'name'", where)
        if item.id < 1:
            raise OdliteError.at(source, f"id {item.id} for '{item.name}': ids start at 1 (0 is background)", where)
        if item.id in labels:
            raise OdliteError.at(source, f"id {item.id} is used twice ('{labels[item.id]}', '{item.name}')", where)
        if not item.name.strip():
            raise OdliteError.at(source, "empty name", where)
        if item.name in labels.values():
            raise OdliteError.at(source, f"name '{item.name}' is used twice", where)
        labels[item.id] = item.name
    if not labels:
        raise OdliteError.at(source, "the label map has no items")
    return dict(sorted(labels.items()))


def read_label_map(path: str | Path) -> dict[int, str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OdliteError.at(path, f"cannot read label map: {exc}") from None
    return parse_label_map(text, str(path))


def format_label_map(labels: dict[int, str]) -> str:
    message = StringIntLabelMap()
    for class_id, name in sorted(labels.items()):
        message.item.add(id=class_id, name=name)
    return text_format.MessageToString(message)


def labels_by_name(labels: dict[int, str]) -> dict[str, int]:
    return {name: class_id for class_id, name in labels.items()}
