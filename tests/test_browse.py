"""odlite browse: the cache of detections, and the page in a real browser (Debian's Chromium, headless)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import LEARNING_STEPS, copy_model, patched_config

from pipelines.browse import Browser, prepare, read_eval_images, served_in_thread
from pipelines.cli import main
from pipelines.reports.error_analysis import analyse_image
from pipelines.reports.report import DETECTIONS_FILE

CHROMIUM = Path("/usr/bin/chromium")
# As a root sandbox runs it; without the background-networking flags Chromium keeps calling out.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
CARIES, NORMAL = 2, 1


def crafted_detections(images, examples, seed: int) -> dict:
    """For each image: the first box found (score 0.9), the second seen as the other class (0.8), the rest
    found (0.7) in every other image and missed in the others, and a false alarm at 0.3 in a corner;
    ``seed`` moves the false alarm's score a little."""
    truth, found = [], []
    for image, example in zip(images.images, examples):
        w, h = image["width"], image["height"]
        corners = zip(*(example[f"image/object/bbox/{k}"] for k in ("xmin", "ymin", "xmax", "ymax")))
        for k, (label, (x0, y0, x1, y1)) in enumerate(zip(example["image/object/class/label"], corners)):
            box = [float(x0 * w), float(y0 * h), float(x1 * w), float(y1 * h)]
            truth.append({"image_id": image["id"], "box": box, "label": int(label)})
            if k < 2 or image["id"] % 2:
                found_label = 3 - int(label) if k == 1 else int(label)
                found.append({"image_id": image["id"], "box": box, "label": found_label, "score": 0.9 - min(k, 2) / 10})
        corner = [0.0, 0.0, w / 20, h / 20]
        found.append({"image_id": image["id"], "box": corner, "label": CARIES, "score": 0.3 + seed / 100})
    labels = {"1": "normal", "2": "caries"}
    return {"labels": labels, "images": images.images, "truth": truth, "found": found}


@pytest.fixture(scope="module")
def crafted(sample_converted, tmp_path_factory):
    """Two made-up models on the small sample's validation images: every count on the page is known."""
    from pipelines.data.tfrecord import read_examples

    root = tmp_path_factory.mktemp("browse")
    config = patched_config(root / "pipeline.config", sample_converted)
    images = read_eval_images(config)
    examples = list(read_examples([str(p) for p in sorted(sample_converted.glob("val-*.tfrecord"))]))
    parts = []
    for seed, name in enumerate(("model-a", "model-b")):
        report = root / name
        report.mkdir()
        content = crafted_detections(images, examples, seed)
        (report / DETECTIONS_FILE).write_text(json.dumps(content))
        (report / "metrics.json").write_text(json.dumps({"AP": 0.5 + seed / 10, "AP50": 0.7, "step": 10, "images": 6}))
        parts.append((name, report, content))
    return images, parts


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the page tests need Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def opened(chromium, url: str):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        yield page
        assert not errors, errors
    finally:
        page.close()


def at_threshold(page, value: str) -> None:
    """Move the slider with the keyboard, as a user would, until it shows ``value``."""
    slider = page.locator("#threshold")
    slider.focus()
    current = float(slider.input_value())
    key = "ArrowLeft" if float(value) < current else "ArrowRight"
    for _ in range(round(abs(float(value) - current) / 0.05)):
        page.keyboard.press(key)
    page.wait_for_selector(f"body[data-threshold='{value}']")


def test_page_draws_filters_and_opens_an_image(crafted, chromium):
    images, parts = crafted
    content = parts[0][2]
    browser = Browser.from_detections(images, parts[:1])
    truth_boxes = len(content["truth"])
    strong = sum(1 for d in content["found"] if d["score"] >= 0.5)
    assert 0 < strong < len(content["found"])
    with served_in_thread(browser) as url, opened(chromium, url) as page:
        assert page.locator(".card").count() == len(images.images)
        assert page.locator("rect.truth").count() == truth_boxes
        assert page.locator("rect.det").count() == strong
        at_threshold(page, "0.25")
        assert page.locator("rect.det").count() == len(content["found"])  # the false alarms join
        wrong = sum(
            o.kind != "correct" for im in images.images for o in _analysis(content, im["id"], 0.25).found.values()
        )
        assert page.locator("rect.det.error").count() == wrong

        page.select_option("#class-filter", label="caries")
        with_caries = {t["image_id"] for t in content["truth"] if t["label"] == CARIES}
        with_caries |= {d["image_id"] for d in content["found"] if d["label"] == CARIES}
        assert page.locator(".card").count() == len(with_caries)
        caries_boxes = sum(1 for t in content["truth"] if t["label"] == CARIES)
        caries_boxes += sum(1 for d in content["found"] if d["label"] == CARIES)
        assert page.locator("rect.truth, rect.det").count() == caries_boxes

        page.select_option("#class-filter", label="all classes")
        page.select_option("#kind-filter", value="missed")
        missed = [im for im in images.images if any(k == "missed" for k, *_ in _errors(content, im["id"], 0.25))]
        assert 0 < len(missed) < len(images.images)
        assert page.locator(".card").count() == len(missed)

        page.select_option("#kind-filter", value="")
        page.select_option("#sort", value="errors-0")
        errors = {im["id"]: len(_errors(content, im["id"], 0.25)) for im in images.images}
        first = int(page.locator(".card").first.get_attribute("data-id"))
        assert errors[first] == max(errors.values())

        page.locator(".card").nth(1).click()
        page.wait_for_selector("#viewer[open]")
        shown = int(page.locator(".card").nth(1).get_attribute("data-id"))
        boxes = sum(1 for t in content["truth"] if t["image_id"] == shown)
        boxes += sum(1 for d in content["found"] if d["image_id"] == shown)
        assert page.locator("#viewer table.boxes tbody tr").count() == boxes
        assert page.locator("#viewer-title").inner_text().startswith(images.images[shown - 1]["filename"])
        page.keyboard.press("Escape")
        page.wait_for_selector("#viewer", state="hidden")

        page.click("#tab-report")
        assert page.locator("#report-view table.metrics").first.is_visible()
        assert "0.500" in page.locator("#report-view").inner_text()


def _analysis(content, image_id, threshold):
    truth = [t for t in content["truth"] if t["image_id"] == image_id]
    found = [d for d in content["found"] if d["image_id"] == image_id]
    return analyse_image(truth, found, threshold)


def _errors(content, image_id, threshold):
    return _analysis(content, image_id, threshold).errors()


def test_two_models_side_by_side(crafted, chromium):
    images, parts = crafted
    browser = Browser.from_detections(images, parts)
    with served_in_thread(browser) as url, opened(chromium, url) as page:
        assert page.locator(".card").first.locator(".panel").count() == 2
        assert page.locator("table.counts").count() == 2
        assert page.locator("#sort option").count() == 4  # evaluation order, name, most errors of A, of B
        page.click("#tab-report")
        assert page.locator("#report-view .report-column").count() == 2


def test_evaluates_once_then_starts_from_the_cache(tiny_model, tmp_path, monkeypatch):
    import pipelines.evaluate as evaluate

    model = copy_model(tiny_model, tmp_path / "model")
    runs = []
    real = evaluate.evaluate
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: runs.append(a) or real(*a, **k))
    said = []
    browser = prepare([model], say=said.append, progress=False)
    report = model / "eval" / "step-2"
    assert len(runs) == 1 and (report / DETECTIONS_FILE).exists(), said
    assert len(browser.images.images) == 6 and browser.models[0].name == "model step 2"
    assert browser.models[0].metrics["step"] == 2

    again = prepare([model], say=said.append, progress=False)
    assert len(runs) == 1, "the second start evaluated again"
    assert f"detections from {report / DETECTIONS_FILE}" in said[-1]
    assert again.analysis(0.0) == browser.analysis(0.0)
    # What the page shows is what an evaluation of its own finds, box for box.
    real(None, model, out=tmp_path / "fresh", samples=0, progress=False)
    fresh = json.loads((tmp_path / "fresh" / DETECTIONS_FILE).read_text())["found"]
    shown = [d for image in browser.images.images for d in browser.models[0].found[image["id"]]]
    assert len(shown) == len(fresh)

    def rounded(found):  # the same checkpoint evaluated twice: the same numbers, in any order
        return sorted((d["image_id"], d["label"], round(d["score"], 5), *np.round(d["box"], 2)) for d in found)

    assert rounded(shown) == rounded(fresh)

    cached = json.loads((report / DETECTIONS_FILE).read_text())
    cached["images"] = cached["images"][1:]  # as if the validation split had changed since
    (report / DETECTIONS_FILE).write_text(json.dumps(cached))
    prepare([model], say=said.append, progress=False)
    assert len(runs) == 2 and any("other validation images" in line for line in said)

    (report / DETECTIONS_FILE).write_text('{"images": [')  # cut short, as by a full disk
    prepare([model], say=said.append, progress=False)
    assert len(runs) == 3 and any("cached detections are unreadable (JSONDecodeError" in line for line in said)

    steps = prepare([model / "ckpt-1", model], say=said.append, progress=False)  # two points of one run
    assert [m.name for m in steps.models] == ["model step 1", "model step 2"] and len(runs) == 4


def test_refuses_what_it_cannot_browse(tmp_path, capsys):
    assert main(["browse", str(tmp_path)]) == 1
    assert "not a model: expected a checkpoint folder, a .tflite or an export folder" in capsys.readouterr().err
    export = tmp_path / "frcnn-export"
    export.mkdir()
    (export / "export.json").write_text("{}")
    assert main(["browse", str(export)]) == 1
    assert "this export holds neither a .tflite nor a saved_model/" in capsys.readouterr().err
    assert main(["browse", str(tmp_path), str(tmp_path), str(tmp_path)]) == 1
    assert "one model, or two" in capsys.readouterr().err
    assert main(["browse", str(tmp_path), "--min-score", "1.5"]) == 1
    assert "--min-score 1.5 is not a score" in capsys.readouterr().err
    assert main(["browse", str(tmp_path), str(tmp_path), "--checkpoint", "x/ckpt-1"]) == 1
    assert "give each as DIR/ckpt-N" in capsys.readouterr().err


def test_a_checkpoint_beside_its_int8_export(trained_model, exported_model, tmp_path, chromium):
    """The real pair: the checkpoint is evaluated on first use, the export's own evaluation is reused."""
    said = []
    model = copy_model(trained_model, tmp_path / "model")  # browse writes the checkpoint's report into it
    browser = prepare([model, exported_model], say=said.append, progress=False)
    assert any(line.startswith(f"model step {LEARNING_STEPS}: evaluating") for line in said), said
    assert any("model_int8.tflite: detections from" in line for line in said), said
    with served_in_thread(browser) as url, opened(chromium, url) as page:
        assert page.locator(".card").first.locator(".panel").count() == 2
        drawn = page.locator("rect.det").count()
        at_threshold(page, "0.05")
        assert page.locator("rect.det").count() > drawn  # weaker detections join
        page.click("#tab-report")
        assert page.locator("#report-view img.plot").count() == 4  # PR curves and confusion matrix of each


def test_only_the_page_itself_may_call_its_api():
    """Same-origin requests (the page's own) are served; another page's, or one that reaches 127.0.0.1 through
    a name of its own (DNS rebinding), get 403 with the reason."""
    import asyncio
    import concurrent.futures
    from types import SimpleNamespace

    import httpx

    from pipelines.browse import create_app

    browser = SimpleNamespace(images=SimpleNamespace(images=[]), summary=lambda threshold: {"threshold": threshold})
    own, rebound = {"Host": "127.0.0.1:8080"}, {"Host": "attacker.example:8080"}

    async def answers(app, *requests):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
        ) as client:
            return [await client.get("/api/summary", headers=headers) for headers in requests]

    served = [own, {**own, "Origin": "http://127.0.0.1:8080"}, {"Host": "localhost:8080"}, {"Host": "[::1]:8080"}]
    refused = [
        {**own, "Origin": "http://attacker.example"},
        rebound,
        {**rebound, "Origin": "http://attacker.example:8080"},
    ]

    def run(coroutine):  # in a thread of its own: Playwright's sync API keeps an event loop running in this one
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, coroutine).result()

    results = run(answers(create_app(browser), *served, *refused))
    assert [r.status_code for r in results] == [200] * len(served) + [403] * len(refused)
    assert results[0].json() == {"threshold": 0.5}
    assert "Origin http://attacker.example is not allowed (only the page itself is)" in results[4].json()["detail"]
    assert "Host 'attacker.example:8080' is not a loopback name" in results[5].json()["detail"]
    # Listening on another address (--host 0.0.0.0), any name reaches it, and still only from the page itself.
    anywhere = create_app(browser, loopback_only=False)
    results = run(answers(anywhere, rebound, {**rebound, "Origin": "http://attacker.example:8080"}, refused[0]))
    assert [r.status_code for r in results] == [200, 200, 403]
