"""The tag service, run for real on loopback and sent real multipart requests."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest
import tensorflow as tf
from conftest import CONFIDENT, assert_same_detections, running_server

MAX_UPLOAD_MB = 0.2


@pytest.fixture(scope="module")
def server(exported_model):
    options = ("--interpreters", "2", "--max-upload-mb", str(MAX_UPLOAD_MB))
    with running_server(exported_model / "model_int8.tflite", *options, wait=120) as url:
        yield url


@pytest.fixture(scope="module")
def jpeg(exported_model) -> bytes:
    from pipelines.config.experiment import load_train_spec

    spec = load_train_spec(exported_model / "pipeline.config")
    records = [p for pattern in spec.eval_paths for p in tf.io.gfile.glob(pattern)]
    raw = next(iter(tf.data.TFRecordDataset(records)))
    return tf.io.parse_single_example(raw, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})[
        "image/encoded"
    ].numpy()


def _tag(server, data: bytes, name="photo.jpg", **params):
    return httpx.post(f"{server}/tag", files={"file": (name, data, "image/jpeg")}, params=params, timeout=60)


def test_tag_returns_labels_scores_and_pixel_boxes(server, jpeg):
    answer = _tag(server, jpeg, min_score=CONFIDENT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "model_int8.tflite" and body["latency_ms"] > 0
    assert body["tags"], "the trained model should tag a validation image"
    for tag in body["tags"]:
        assert tag["label"] in ("normal", "caries") and tag["score"] >= CONFIDENT
        assert 0 <= tag["box"]["xmin"] < tag["box"]["xmax"] and 0 <= tag["box"]["ymin"] < tag["box"]["ymax"]
    scores = [t["score"] for t in body["tags"]]
    assert scores == sorted(scores, reverse=True)


def test_query_options_filter_the_tags(server, jpeg):
    everything = _tag(server, jpeg, min_score=0.0).json()["tags"]
    caries = [t for t in everything if t["label"] == "caries"]
    assert len(caries) > 2 and len(caries) < len(everything)  # down to score 0 both filters bite
    assert _tag(server, jpeg, min_score=0.0, classes="caries", max_boxes=2).json()["tags"] == caries[:2]
    above = _tag(server, jpeg, min_score=0.2).json()["tags"]
    assert above == [t for t in everything if t["score"] >= 0.2] and len(above) < len(everything)


def test_health_labels_and_docs(server):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    assert httpx.get(f"{server}/labels").json() == {"labels": ["normal", "caries"]}
    assert httpx.get(f"{server}/docs").status_code == 200
    assert "/tag" in httpx.get(f"{server}/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("no file", 422, "file"),
        ("text", 415, "not an image"),
        ("truncated", 400, "truncated"),
        ("empty", 400, "empty"),
        ("too large", 413, "limit"),
        ("unknown class", 400, "unknown class"),
        ("bad min_score", 422, "min_score"),
    ],
)
def test_bad_requests_get_a_4xx_with_the_reason(server, jpeg, case, status, words):
    if case == "no file":
        answer = httpx.post(f"{server}/tag", data={"other": "x"})
    elif case == "text":
        answer = _tag(server, b"hello, not a picture", name="notes.txt")
    elif case == "truncated":
        answer = _tag(server, jpeg[: len(jpeg) // 3])
    elif case == "empty":
        answer = _tag(server, b"")
    elif case == "too large":
        answer = _tag(server, jpeg + b"\0" * int(MAX_UPLOAD_MB * 2**20 * 2))
    elif case == "unknown class":
        answer = _tag(server, jpeg, classes="molar")
    else:
        answer = _tag(server, jpeg, min_score=2)
    assert answer.status_code == status, answer.text
    assert words in answer.text
    assert httpx.get(f"{server}/health").status_code == 200  # the worker survived


def test_concurrent_requests_all_succeed_with_the_same_answer(server, jpeg):
    expected = _tag(server, jpeg, min_score=0.0).json()["tags"]
    assert expected
    with concurrent.futures.ThreadPoolExecutor(16) as workers:
        answers = list(workers.map(lambda _: _tag(server, jpeg, min_score=0.0), range(48)))
    assert [a.status_code for a in answers] == [200] * 48
    assert all(a.json()["tags"] == expected for a in answers)


def test_a_larger_photo_is_tagged_in_its_own_pixels(server, jpeg, exported_model):
    """A photo several times the picture's size (read reduced) is tagged as its full decode would be,
    in its own pixels."""
    import io

    import numpy as np
    from PIL import Image

    from pipelines.detect import load_model

    small = Image.open(io.BytesIO(jpeg)).convert("RGB")
    factor = 4 if min(small.size) < 320 else 2  # at least 640 px a side: read at half scale or less
    large = small.resize((small.width * factor, small.height * factor), Image.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, "JPEG", quality=75)
    assert len(buffer.getvalue()) < MAX_UPLOAD_MB * 2**20
    full = load_model(exported_model / "model_int8.tflite")(np.asarray(Image.open(buffer).convert("RGB")))
    want = [f for f in full if f.score >= CONFIDENT]
    got = [
        {"label": t["label"], "score": t["score"], **t["box"]}
        for t in _tag(server, buffer.getvalue(), min_score=0.2).json()["tags"]
    ]
    assert want
    assert_same_detections(want, got, large.width)
