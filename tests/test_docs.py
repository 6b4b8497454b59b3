"""README.md and docs/: every relative link and #anchor resolves, every page is reachable, the README stays short.

Only links are checked. Module paths named in inline code (`pipelines/...`) are not: they follow the code's layout,
which may move separately from these pages.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" follows) or ')'.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation dropped, spaces to '-'."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of each link outside code: fenced blocks and inline code spans are skipped."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)) or target.startswith("//")


def resolve(page: Path, target: str) -> tuple[Path, str]:
    """The file a relative link points at (the page itself for '#anchor') and its anchor, or ''."""
    file_part, _, anchor = target.partition("#")
    return ((page.parent / file_part).resolve() if file_part else page.resolve()), anchor


def broken_links(pages: list[Path]) -> list[str]:
    """'page:line: target: reason' for each relative link to a missing file or a missing heading."""
    problems = []
    for page in pages:
        for number, target in links(page):
            if is_external(target):
                continue
            file, anchor = resolve(page, target)
            where = f"{page.name}:{number}: {target}"
            if not file.exists():
                problems.append(f"{where}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
                problems.append(f"{where}: no heading with anchor #{anchor} in {file.name}")
    return problems


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(doc_pages()) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {resolve(README, target)[0] for _, target in links(README) if not is_external(target)}
    unlinked = [page.name for page in doc_pages()[1:] if page.resolve() not in linked]
    assert unlinked == [], "docs pages the README does not link to"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move reference text to a page under docs/"


def test_the_check_finds_a_broken_link_and_a_missing_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# The pixel budget: 50 MP\n\n## Same\n\n## Same\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/page.md#the-pixel-budget-50-mp) [ok](docs/page.md#same-1) [web](https://example.com)\n"
        "`[not a link](nowhere.md)`\n"
        "```\n[in code](nowhere.md)\n# not a heading\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#not-a-heading) [code](#not-a-heading)\n",
        encoding="utf-8",
    )
    assert broken_links(doc_pages(tmp_path)) == [
        "README.md:7: docs/missing.md: no such file",
        "README.md:7: docs/page.md#not-a-heading: no heading with anchor #not-a-heading in page.md",
        "README.md:7: #not-a-heading: no heading with anchor #not-a-heading in README.md",
    ]


def test_slug_follows_github():
    assert slug("convert: annotations -> TFRecords") == "convert-annotations---tfrecords"
    assert slug("`pipeline.config`") == "pipelineconfig"
    assert slug("Limits: nothing a client or a web page sends can exhaust the server") == (
        "limits-nothing-a-client-or-a-web-page-sends-can-exhaust-the-server"
    )
