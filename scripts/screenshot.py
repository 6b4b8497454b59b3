"""The pictures of odlite browse in docs/browse.md: python scripts/screenshot.py URL OUT_PREFIX (a running browse).

Drives Debian's Chromium headless through Playwright, as the page tests do; writes OUT_PREFIX-grid.jpg
(sorted by errors) and OUT_PREFIX-image.jpg (the image with the most errors, opened).
"""

from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out_prefix")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(args.url)
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.select_option("#sort", index=2)  # most errors first (of the first model)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=f"{args.out_prefix}-grid.jpg", type="jpeg", quality=80)
        page.locator(".card").first.click()
        page.wait_for_selector("#viewer[open]")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=f"{args.out_prefix}-image.jpg", type="jpeg", quality=80)
        browser.close()


if __name__ == "__main__":
    main()
