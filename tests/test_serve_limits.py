"""What a client or a web page can send the tag service, and what it holds for it: uploads counted as they
stream, images refused from their header, a bounded number of decodes, web pages refused by default. Run on
a stub .tflite (conftest), so that no model is trained."""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import jpeg_bytes, running_server
from made import png16

MAX_UPLOAD_MB = 2  # past the multipart parser's 1 MB in memory: the rest of an upload goes to a spool file
BODY_LIMIT = MAX_UPLOAD_MB * 2**20 + 64 * 1024  # serve.MULTIPART_FRAMING
ALLOWED = "http://allowed.example:3000"


@pytest.fixture(scope="module")
def spool(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(stub_tflite, spool):
    options = ("--max-upload-mb", str(MAX_UPLOAD_MB), "--allow-origin", f"{ALLOWED}/")
    with running_server(stub_tflite, *options, wait=60, env={"TMPDIR": str(spool)}) as url:
        yield url


def _tag(url: str, data: bytes, name: str = "photo.jpg", headers=None):
    files = {"file": (name, data, "image/jpeg")}
    return httpx.post(f"{url}/tag", files=files, params={"min_score": 0}, headers=headers, timeout=60)


def _answers(url: str) -> None:
    answer = _tag(url, jpeg_bytes(200, 150))
    assert answer.status_code == 200, answer.text
    assert [t["label"] for t in answer.json()["tags"]] == ["caries"]


def test_a_small_png_of_64_megapixels_gets_413_and_the_server_answers_the_next(server):
    bomb = png16(8000, 8000)  # 125 KB, 128 MB once decoded
    answer = _tag(server, bomb, name="bomb.png")
    assert answer.status_code == 413, answer.text
    detail = answer.json()["detail"]
    assert detail == "bomb.png: image too large: 8000x8000 is 64 megapixels, over the limit of 50 (--max-megapixels)"
    _answers(server)


def test_other_bad_uploads_are_told_apart_before_a_slot_is_taken(server):
    """The header is read before a slot is taken; what it cannot tell (truncation) is found when decoding."""
    photo = jpeg_bytes(200, 150)
    for data, status, reason in [
        (b"hello, not a picture", 415, "notes.txt: not an image"),
        (photo[: len(photo) // 3], 400, "notes.txt: corrupt or truncated image"),
        (b"", 400, "notes.txt: empty file"),
    ]:
        answer = _tag(server, data, name="notes.txt")
        assert (answer.status_code, answer.json()["detail"][: len(reason)]) == (status, reason)
    _answers(server)


def _server_pid(url: str) -> int:
    port = str(urlsplit(url).port)
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pipelines.cli" in arguments and b"serve" in arguments and port.encode() in arguments:
            return int(entry.name)
    raise AssertionError(f"no server process on port {port}")


def _spooled(pid: int, spool: Path) -> list[int]:
    """Sizes of the files the server holds open in ``spool`` (its multipart parser's, nameless once made)."""
    sizes = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(str(spool)):
                sizes.append(fd.stat().st_size)
        except OSError:  # closed meanwhile
            continue
    return sizes


def _chunked_upload(url: str, total: int, watch) -> bytes:
    """POST /tag a multipart body of ``total`` bytes in 64 KB chunks (no Content-Length), calling ``watch``
    after each, until the server answers; the raw answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(
            f"POST /tag HTTP/1.1\r\nHost: {parts.netloc}\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=odlite\r\n\r\n".encode()
        )
        head = b'--odlite\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'
        chunks = [head] + [b"\xff" * 65536] * (total // 65536)
        for chunk in chunks:
            if select.select([connection], [], [], 0.01)[0]:  # answered: stop sending, as a client should
                break
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            watch()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            received = connection.recv(65536)
            if not received:
                break
            answer += received
        return answer


def test_a_chunked_upload_past_the_limit_is_stopped_at_it(server, spool):
    """No Content-Length to refuse it by: the server counts the bytes as they come, answers 413 once past
    the limit, and its spool file never holds more than the limit."""
    pid, largest = _server_pid(server), [0]

    def watch():
        largest[0] = max([largest[0], *_spooled(pid, spool)])

    answer = _chunked_upload(server, 3 * BODY_LIMIT, watch)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert f"request body over the {MAX_UPLOAD_MB * 2**20} byte limit".encode() in answer
    assert 2**20 < largest[0] <= BODY_LIMIT  # it did spool to disk, and stopped at the limit
    deadline = time.monotonic() + 10
    while _spooled(pid, spool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _spooled(pid, spool) == [] and list(spool.iterdir()) == []  # nothing left behind
    _answers(server)


def test_a_declared_length_past_the_limit_is_refused_before_the_body_is_read(server):
    parts = urlsplit(server)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "multipart/form-data; boundary=odlite", "Content-Length": str(BODY_LIMIT + 1)}
    connection.putrequest("POST", "/tag")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()  # no body sent at all: the answer comes from the headers
    answer = connection.getresponse()
    assert answer.status == 413 and b"byte limit" in answer.read()
    connection.close()


def test_web_pages_are_refused_unless_their_origin_is_allowed(server):
    photo = jpeg_bytes(64, 64)
    refused = _tag(server, photo, headers={"Origin": "http://example.com"})
    assert refused.status_code == 403, refused.text
    assert "Origin http://example.com is not allowed (odlite serve --allow-origin)" in refused.json()["detail"]
    assert "access-control-allow-origin" not in refused.headers
    preflight = {"Origin": "http://example.com", "Access-Control-Request-Method": "POST"}
    assert httpx.options(f"{server}/tag", headers=preflight).status_code == 403
    assert httpx.get(f"{server}/labels", headers={"Origin": "null"}).status_code == 403  # a sandboxed page
    allowed = _tag(server, photo, headers={"Origin": ALLOWED})  # given with a trailing slash on the command line
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ALLOWED
    assert _tag(server, photo).status_code == 200  # clients without Origin: curl, apps


def test_a_malformed_allowed_origin_is_refused_at_start(stub_tflite, capsys):
    from pipelines.cli import main

    assert main(["serve", "--model", str(stub_tflite), "--allow-origin", "example.com"]) == 1
    assert "--allow-origin 'example.com': give an origin, scheme://host[:port]" in capsys.readouterr().err


class Concurrency:
    """Counts the calls of a function running at once, each made to last long enough for all to overlap."""

    def __init__(self, function, seconds: float = 0.2):
        self.function, self.seconds, self.now, self.most, self.lock = function, seconds, 0, 0, threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        try:
            return self.function(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def _post_at_once(app, n: int) -> list[int]:
    """``n`` uploads at once; the app runs its handlers in its own thread pool, as under uvicorn."""
    import asyncio

    async def post():
        files = {"file": ("p.jpg", jpeg_bytes(64, 64), "image/jpeg")}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://odlite") as client:
            return await asyncio.gather(*(client.post("/tag", files=files) for _ in range(n)))

    return [answer.status_code for answer in asyncio.run(post())]


def test_at_most_decoders_requests_decode_at_once(stub_tflite, monkeypatch):
    import pipelines.detect
    from pipelines.serve import create_app

    for decoders in (2, 3):
        reads = Concurrency(pipelines.detect.load_picture)
        monkeypatch.setattr(pipelines.detect, "load_picture", reads)
        assert _post_at_once(create_app(stub_tflite, pool_size=4, decoders=decoders), 8) == [200] * 8
        assert reads.most == decoders
        monkeypatch.undo()


def test_a_picture_still_large_after_decoding_keeps_its_slot_through_inference(stub_tflite, monkeypatch):
    """Brought to the model's scale, a picture waits for an interpreter without a slot (4 infer at once, one
    per interpreter); a large one (a panorama, a model of unknown input size) keeps it (2 at once)."""
    import numpy as np

    import pipelines.detect
    from pipelines.data.images import Picture
    from pipelines.serve import SMALL_PICTURE, create_app

    for side, most in ((64, 4), (int((SMALL_PICTURE / 3) ** 0.5) + 1, 2)):
        picture = Picture(np.zeros((side, side, 3), np.uint8), side, side)
        monkeypatch.setattr(pipelines.detect, "load_picture", lambda *args, picture=picture, **kwargs: picture)
        inferences = Concurrency(pipelines.detect.Model.__call__)
        infer = lambda model, image, count=inferences: count(model, image)  # noqa: E731 (a method: a function)
        monkeypatch.setattr(pipelines.detect.Model, "__call__", infer)
        assert _post_at_once(create_app(stub_tflite, pool_size=4, decoders=2), 8) == [200] * 8
        assert inferences.most == most
        monkeypatch.undo()
