"""odlite browse timings for make bench: the first and the cached start, the error analysis a slider
move asks for, and the page itself in Debian's Chromium (load, slider to redraw), on the evaluation's
images and on the same images repeated to a larger split."""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def _seconds(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def repeated(browser, times: int):
    """The browser's images, truth and detections ``times`` over: a larger split of the same content."""
    from pipelines.browse import Browsed, Browser, EvalImages

    count = len(browser.images.images)
    images = [{**im, "id": im["id"] + k * count} for k in range(times) for im in browser.images.images]
    jpegs = browser.images.jpegs * times
    truth = [{**t, "image_id": i + k * count} for k in range(times) for i, ts in browser.truth.items() for t in ts]
    models = [
        Browsed(
            m.name, m.report, m.metrics, {i + k * count: found for k in range(times) for i, found in m.found.items()}
        )
        for m in browser.models
    ]
    return Browser(EvalImages(browser.images.config, images, jpegs), browser.labels, truth, models)


def _analysis_ms(browser, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7)) -> float:
    """Median milliseconds of one threshold's analysis (uncached: each threshold is new)."""
    return round(1000 * statistics.median(_seconds(lambda t=t: browser.analysis(t))[0] for t in thresholds), 1)


def _page(browser) -> dict:
    """Seconds from opening the page to its first full draw, and from a slider move to the redraw."""
    from playwright.sync_api import sync_playwright

    from pipelines.browse import served_in_thread

    with served_in_thread(browser) as url, sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        load, _ = _seconds(lambda: (page.goto(url), page.wait_for_selector("body[data-ready=true]")))
        page.locator("#threshold").focus()
        moves = []
        for key, value in (("ArrowLeft", "0.45"), ("ArrowLeft", "0.40"), ("ArrowRight", "0.45")):
            seconds, _ = _seconds(
                lambda k=key, v=value: (
                    page.keyboard.press(k),
                    page.wait_for_selector(f"body[data-threshold='{v}']"),
                )
            )
            moves.append(seconds)
        chromium.close()
    # A move waits 0.12 s for the slider to settle before asking; that pause is counted.
    return {"load_s": round(load, 2), "slider_to_redraw_s": round(statistics.median(moves), 2)}


def bench_browse(model_dir: Path, work: Path) -> dict:
    from pipelines.browse import prepare

    model = work / "browse-model"
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("eval"))
    first, browser = _seconds(lambda: prepare([model], say=lambda _: None, progress=False))
    cached, browser = _seconds(lambda: prepare([model], say=lambda _: None, progress=False))
    images = len(browser.images.images)
    results = {
        "images": images,
        "first_start_s (evaluates)": round(first, 2),
        "cached_start_s": round(cached, 2),
        f"analysis_ms_{images}_images": _analysis_ms(browser),
        f"page_{images}_images": _page(browser),
    }
    larger = repeated(browser, 1000 // images + 1)
    count = len(larger.images.images)
    results[f"analysis_ms_{count}_images"] = _analysis_ms(larger)
    results[f"page_{count}_images"] = _page(larger)
    return results
