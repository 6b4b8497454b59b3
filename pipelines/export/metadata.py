"""TFLite model metadata (labels, input normalisation, output names) for MediaPipe and the Task Library.

Written with the TFLite Support library's ``ObjectDetectorWriter``, the reference
writer of the metadata schema that MediaPipe Tasks and the TFLite Task Library read.
Its last release (tflite-support 0.4.4) pins protobuf < 4, which TensorFlow 2.20
cannot share, so ``make setup`` installs it with ``--no-deps``; the metadata writer
needs only flatbuffers and two compiled modules from it. Those modules link against
libusb-1.0, which many machines lack, so the ``libusb-package`` wheel's copy is loaded
first (the dynamic loader then finds it by its soname).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path

from pipelines.errors import OdliteError

_SETUP_HINT = "install it with: pip install --no-deps tflite-support==0.4.4 libusb-package (make setup does this)"


def _load_libusb() -> None:
    spec = importlib.util.find_spec("libusb_package")
    if spec is None or not spec.submodule_search_locations:
        return  # fall back to a system libusb-1.0, if any
    library = os.path.join(spec.submodule_search_locations[0], "libusb-1.0.so")
    if os.path.exists(library):
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)


def _writers():
    _load_libusb()
    try:
        from tensorflow_lite_support.metadata.python import metadata
        from tensorflow_lite_support.metadata.python.metadata_writers import object_detector
    except ImportError as error:
        raise OdliteError(f"the TFLite metadata writer is not available ({error}); {_SETUP_HINT}") from None
    return metadata, object_detector


def add_metadata(model: bytes, labels_file: Path) -> bytes:
    """``model`` with metadata: the input takes 0-255 pixels (mean 0, std 1) and classes index ``labels_file``."""
    _, object_detector = _writers()
    writer = object_detector.MetadataWriter.create_for_inference(bytearray(model), [0.0], [1.0], [str(labels_file)])
    return bytes(writer.populate())


def read_metadata(model_path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """The metadata as JSON and the embedded files by name (e.g. to read the labels back)."""
    metadata, _ = _writers()
    try:
        displayer = metadata.MetadataDisplayer.with_model_file(str(model_path))
    except ValueError as error:
        raise OdliteError.at(model_path, f"no TFLite metadata: {error}") from None
    import json

    files = {name: displayer.get_associated_file_buffer(name) for name in displayer.get_packed_associated_file_list()}
    return json.loads(displayer.get_metadata_json()), files
