"""Shared fixtures: small datasets written in each annotation format from one description."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One TensorFlow thread of each kind per worker (and per process a test starts): two workers already
    # keep both cores busy, and TensorFlow's thread pools, each sized for the whole machine, would spin
    # against each other.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

LABEL_MAP = Path(__file__).resolve().parents[1] / "label_maps" / "tooth_label_map.pbtxt"


# Tests that train or export, or that walk many networks, are marked slow: make test-fast leaves these out.
TRAINED_FIXTURES = {"tiny_model", "trained_model", "exported_model", "frcnn_model", "frcnn_export"}
# make test runs two pytest-xdist workers, each taking whole modules (--dist loadfile) in this order: the
# modules that build the two shared trained models first, one on each worker, then the longest. The other
# modules of the shared SSD come last, when it is built (built_once hands it from one worker to the other).
MODULE_ORDER = [
    "test_export",
    "test_faster_rcnn",
    "test_config_honesty",
    "test_training_scale",
    "test_train",
    "test_sweep",
    "test_zoo_checkpoint",
    "test_browse",
    "test_detect",
    "test_serve",
]


def pytest_collection_modifyitems(items: list) -> None:
    """Marks the slow tests and orders the modules as MODULE_ORDER says (the rest after, as collected)."""
    for item in items:
        if TRAINED_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)

    def rank(item) -> int:
        name = item.module.__name__
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=rank)


@dataclass
class Item:
    """An image to write and its boxes: (label, xmin, ymin, xmax, ymax) in pixels."""

    name: str
    width: int
    height: int
    boxes: list[tuple[str, float, float, float, float]]


ITEMS = [
    Item("a", 64, 48, [("normal", 4, 6, 20, 40), ("caries", 30, 8, 50, 44)]),
    Item("b", 80, 60, [("caries", 10, 10, 30, 50)]),
    Item("c", 50, 70, []),
    Item("d", 72, 40, [("normal", 1, 2, 71, 39), ("normal", 20, 5, 40, 30)]),
]


def jpeg_bytes(width: int, height: int, seed: int = 0, mode: str = "RGB", exif=None, fmt="JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(array, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def write_images(folder: Path, items=ITEMS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(items):
        (folder / f"{item.name}.jpg").write_bytes(jpeg_bytes(item.width, item.height, seed=i))


def seed_json(item: Item) -> dict:
    regions = [
        {
            "shape_attributes": {"name": "rect", "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0},
            "region_attributes": {"label": label},
        }
        for label, x0, y0, x1, y1 in item.boxes
    ]
    return {"annotation": {"regions": regions}}


def write_seed(root: Path, split: str = "train", items=ITEMS) -> Path:
    write_images(root / f"img_{split}", items)
    (root / f"json_{split}").mkdir(parents=True, exist_ok=True)
    for item in items:
        (root / f"json_{split}" / f"{item.name}.json").write_text(json.dumps(seed_json(item)))
    return root


def write_coco(path: Path, items=ITEMS) -> Path:
    write_images(path.parent, items)
    categories = [{"id": 1, "name": "normal"}, {"id": 2, "name": "caries"}]
    ids = {"normal": 1, "caries": 2}
    images, annotations = [], []
    for i, item in enumerate(items, start=1):
        images.append({"id": i * 10, "file_name": f"{item.name}.jpg", "width": item.width, "height": item.height})
        for label, x0, y0, x1, y1 in item.boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i * 10,
                    "category_id": ids[label],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                    "area": (x1 - x0) * (y1 - y0),
                }
            )
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_via(path: Path, items=ITEMS, project: bool = True) -> Path:
    write_images(path.parent, items)
    records = {}
    for item in items:
        data = (path.parent / f"{item.name}.jpg").read_bytes()
        regions = seed_json(item)["annotation"]["regions"]
        records[f"{item.name}.jpg{len(data)}"] = {
            "filename": f"{item.name}.jpg",
            "size": len(data),
            "regions": regions if project else {str(i): r for i, r in enumerate(regions)},
            "file_attributes": {},
        }
    content = {"_via_settings": {}, "_via_img_metadata": records} if project else records
    path.write_text(json.dumps(content))
    return path


def voc_xml(item: Item, filename: str | None = None) -> str:
    objects = "".join(
        f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for label, x0, y0, x1, y1 in item.boxes
    )
    return (
        f"<annotation><folder>JPEGImages</folder><filename>{filename or item.name + '.jpg'}</filename>"
        f"<size><width>{item.width}</width><height>{item.height}</height><depth>3</depth></size>{objects}</annotation>"
    )


def write_voc(root: Path, items=ITEMS) -> Path:
    write_images(root / "JPEGImages", items)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for item in items:
        (root / "Annotations" / f"{item.name}.xml").write_text(voc_xml(item))
    return root


def records(data_dir: Path, split: str | None = None) -> dict[str, dict]:
    """Every record of ``data_dir`` (one split or all) keyed by image file name."""
    from pipelines.data.inspect_data import find_record_files
    from pipelines.data.tfrecord import read_examples

    found = {}
    for name, paths in find_record_files(data_dir).items():
        if split in (None, name):
            for example in read_examples([str(p) for p in paths]):
                found[Path(example["image/filename"].decode()).name] = example
    return found


def expected_boxes(item: Item) -> list[tuple]:
    return [
        (label, x0 / item.width, y0 / item.height, x1 / item.width, y1 / item.height)
        for label, x0, y0, x1, y1 in item.boxes
    ]


def record_boxes(example: dict) -> list[tuple]:
    keys = ("xmin", "ymin", "xmax", "ymax")
    coords = zip(*[example[f"image/object/bbox/{k}"] for k in keys])
    labels = [t.decode() for t in example["image/object/class/text"]]
    return [(label, *c) for label, c in zip(labels, coords)]


def supported_leaves(types: tuple[str, ...] = ()) -> list[str]:
    """Every scalar field odlite accepts (of ``types`` only, when given), by dotted path; a repeated
    block's index is ``[*]``."""
    from pipelines.config.schema import MESSAGES, ROOT
    from pipelines.config.support import SUPPORTED

    leaves = []

    def walk(type_name: str, path: str) -> None:
        for name in SUPPORTED[type_name]:
            field = MESSAGES[type_name].fields[name]
            step = f"{path}.{name}" if path else name
            if field.kind != "message":
                if not types or field.type in types:
                    leaves.append(step)
            else:
                walk(field.type, f"{step}[*]" if field.repeated else step)

    walk(ROOT, "")
    return leaves


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The run's folder ``name``, shared by the session's processes (pytest-xdist's workers): the first to
    ask calls ``build(folder)``; the others wait for it to finish and reuse what it built."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's basetemp is a folder of the run's
    folder, done = root / name, root / f"{name}.complete"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt that failed half-way
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def sample_src(tmp_path_factory) -> Path:
    from pipelines.data.sample_data import generate

    return built_once(tmp_path_factory, "sample", lambda root: generate(root, seed=0, splits={"train": 16, "val": 6}))


@pytest.fixture(scope="session")
def sample_converted(sample_src, tmp_path_factory) -> Path:
    from pipelines.data.convert import convert

    return built_once(
        tmp_path_factory, "converted", lambda out: convert(sample_src, out, label_map_path=LABEL_MAP, progress=False)
    )


REPO = Path(__file__).resolve().parents[1]
TOOTH_CONFIG = REPO / "configs" / "ssd_mobilenet_v2_fpnlite_320x320.config"
FASTER_RCNN_CONFIG = REPO / "configs" / "faster_rcnn_resnet50_fpn_640.config"
# The shared trained model: the tooth config at LEARNING_SIZE px for LEARNING_STEPS steps, its schedule
# shortened to fit (LEARNING_RATE, 20 warmup steps). Two seeds here gave mAP@0.5 0.915 and 0.921
# (mAP@0.5:0.95 0.70 and 0.72), a third 0.81 in 150 steps; the config's own rate (0.04, 50 warmup steps)
# gave 0.68-0.87 in 200 steps, and 160 px for 300 steps 0.998 in twice the time. mAP@0.5:0.95 of such
# short runs moves with the machine's floating point (one CI machine scored 0.445 where this one scored
# 0.81), so tests that need a learned model check mAP@0.5.
LEARNING_SIZE = 128
LEARNING_STEPS = 200
LEARNING_RATE = 0.08
# A detection of the shared trained model to count on. On the former shared model (160 px, 300 steps)
# the best score on an image ranged from 0.48 to 0.9 across trainings (mAP@0.5 0.81-0.99), so 0.5 is not
# met on every image; the other side of a comparison is then asked down to CONFIDENT - 0.1, the score
# tolerance of assert_same_detections.
CONFIDENT = 0.3


def patched_config(out: Path, data_dir: Path, base: Path = TOOTH_CONFIG, **settings) -> Path:
    """A shipped tooth config pointed at ``data_dir``, with ``settings`` applied through the config verb."""
    from pipelines.config.pipeline_config import patch_config

    assignments = [
        f"train_input_path={data_dir}/train-*.tfrecord",
        f"eval_input_path={data_dir}/val-*.tfrecord",
        f"label_map_path={LABEL_MAP}",
    ] + [f"{k}={v}" for k, v in settings.items()]
    patch_config(base, out, assignments)
    return out


@pytest.fixture(scope="session")
def tooth_data(tmp_path_factory) -> Path:
    """The full sample dataset (240 train, 60 val images) as TFRecords, built once per run."""
    from pipelines.data.convert import convert
    from pipelines.data.sample_data import generate

    def build(root: Path) -> None:
        generate(root / "sample", seed=0)
        convert(root / "sample", root / "data", label_map_path=LABEL_MAP, progress=False)

    return built_once(tmp_path_factory, "tooth", build) / "data"


@pytest.fixture(scope="session")
def tiny_config(sample_converted, tmp_path_factory) -> Path:
    """A small, fast variant of the tooth config (128 px, batch 2) on the small sample (16 training and
    6 validation images, so each evaluation is quick), for tests of the training machinery."""
    size = "model.ssd.image_resizer.fixed_shape_resizer"
    settings = {f"{size}.height": 128, f"{size}.width": 128, "num_steps": 4, "warmup_steps": 1}

    def build(root: Path) -> None:
        root.mkdir()
        patched_config(root / "tiny.config", sample_converted, batch_size=2, **settings)

    return built_once(tmp_path_factory, "tiny", build) / "tiny.config"


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tmp_path_factory) -> Path:
    """tiny_config trained 2 steps, checkpoints at 1 and 2: a model directory for the tests of resuming,
    watching and sweeping. Tests that change it work on a copy (``copy_model``)."""
    from pipelines.train import train

    def build(out: Path) -> None:
        train(tiny_config, out, num_steps=2, checkpoint_every=1, keep_checkpoints=2, seed=0, progress=False)

    return built_once(tmp_path_factory, "tiny-model", build)


def copy_model(model_dir: Path, to: Path) -> Path:
    shutil.copytree(model_dir, to)
    return to


@pytest.fixture(scope="session")
def trained_model(tooth_data, tmp_path_factory) -> Path:
    """The tooth config at LEARNING_SIZE trained from scratch on the sample, once per run: shared by the
    learning and later-stage tests."""
    from pipelines.train import train

    size = "model.ssd.image_resizer.fixed_shape_resizer"
    settings = {f"{size}.height": LEARNING_SIZE, f"{size}.width": LEARNING_SIZE}
    settings.update(num_steps=LEARNING_STEPS, learning_rate_base=LEARNING_RATE, warmup_steps=20)

    def build(root: Path) -> None:
        root.mkdir()
        config = patched_config(root / "pipeline.config", tooth_data, **settings)
        train(config, root / "model", checkpoint_every=LEARNING_STEPS, seed=1, progress=False)

    return built_once(tmp_path_factory, "trained", build) / "model"


TOOLS_PYTHON = REPO / ".venv-tools" / "bin" / "python"
CALIBRATION_IMAGES = 100


@pytest.fixture(scope="session")
def exported_model(trained_model, tmp_path_factory) -> Path:
    """``trained_model`` exported (SavedModel, the three TFLite variants, report), checked by MediaPipe,
    once per run."""
    from pipelines.export.exporter import export

    if not TOOLS_PYTHON.exists():
        pytest.fail(f"{TOOLS_PYTHON} is missing: the MediaPipe checks need the tools venv (make tools)")

    def build(root: Path) -> None:
        root.mkdir()  # the export is named after its folder: tooth.tar.gz, tooth/ANDROID.md
        export(None, trained_model, root / "tooth", calibration_images=CALIBRATION_IMAGES,
               tools_python=TOOLS_PYTHON, progress=None)  # fmt: skip

    return built_once(tmp_path_factory, "exported", build) / "tooth"


@pytest.fixture(scope="session")
def stub_tflite(tmp_path_factory) -> Path:
    """A stub .tflite detector and its labelmap.txt (``made.write_stub_tflite``), built once per run."""
    from made import write_stub_tflite

    return built_once(tmp_path_factory, "stub-tflite", write_stub_tflite) / "model.tflite"


@contextlib.contextmanager
def running_server(model: Path, *options: str, wait: float = 180, env: dict | None = None):
    """``odlite serve --model MODEL OPTIONS`` on a free loopback port, up and answering /health; its URL.
    ``env``: variables to set for the server process."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--model", str(model), "--port", str(port), *options]
    environment = {**os.environ, **env} if env else None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited: {process.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not come up in {wait:.0f} s")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def assert_same_detections(expected, found: list, width: int, score: float = 0.1, box: float = 0.03) -> None:
    """Each of ``expected`` (Found) has a twin in ``found`` (dicts or Found): the label, the score within
    ``score``, each side within ``box`` x ``width``."""
    found = [got if isinstance(got, dict) else vars(got) for got in found]
    sides = ("xmin", "ymin", "xmax", "ymax")
    for want in expected:
        assert any(
            got["label"] == want.label
            and abs(got["score"] - want.score) < score
            and max(abs(got[side] - getattr(want, side)) for side in sides) < box * width
            for got in found
        ), (want, found[:5])


def in_two_processes(function, items: list, *args) -> list:
    """``function(half, *args)`` for each half of ``items``, in two fresh processes at once: for walks
    that build many small networks, which are Python-bound and would leave the second core idle.
    ``function`` must live at a test module's top level (the processes import it by name)."""
    halves = [items[0::2], items[1::2]]
    with ProcessPoolExecutor(len(halves), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(function, halves, *([arg] * len(halves) for arg in args)))
